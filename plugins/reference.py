"""The reference rows of every table: real data (the ceiling), scored exactly like a
method's samples, and the untrained generator (the paper's "Random" row, the floor)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import hookimpl
from harness.config import require
from harness.training import new_generator


@hookimpl
def register_methods(register):
    register(RealData())
    register(RandomGenerator())


@dataclass
class RealDataConfig:
    pass                        # nothing to set: the data are what they are


class TrainingSentences:
    """'Samples' drawn without replacement from the training set, which the test
    references do not contain; it has no likelihood to give."""

    def __init__(self, sentences: torch.Tensor):
        self.sentences = sentences

    def sample(self, n, temperature=1.0, generator=None):
        order = torch.randperm(len(self.sentences), generator=generator)
        return self.sentences[order[:n]]

    def log_likelihood(self, tokens, temperature=1.0):
        raise NotImplementedError("real text has no model likelihood")


class RealData:
    """Real data: the ceiling, real sentences (not the references) scored like samples."""

    name = "real"
    Config = RealDataConfig
    profiles: dict = {}

    def train(self, ctx):
        # Synthetic data: the oracle itself, so NLL-oracle is its entropy rate (~5.76).
        if ctx.corpus.oracle is not None:
            return ctx.corpus.oracle
        return TrainingSentences(ctx.corpus.train)


@dataclass
class RandomConfig:
    emb_dim: int = 32           # the shared generator's sizes, as the authors
    hidden_dim: int = 32

    def __post_init__(self):
        require(self, at_least_one=("emb_dim", "hidden_dim"))


class RandomGenerator:
    """The shared LSTM generator as initialised (N(0, 0.1)), before any training."""

    name = "random"
    Config = RandomConfig
    profiles: dict = {}

    def train(self, ctx):
        generator = new_generator(ctx.corpus, ctx.config.emb_dim, ctx.config.hidden_dim, ctx.device)
        ctx.record(generator, phase="init", epoch=0)
        return generator
