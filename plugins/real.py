"""Real data: the ceiling row, real sequences scored exactly like a method's samples."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import hookimpl


@hookimpl
def register_methods(register):
    register(RealData())


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
    name = "real"
    Config = RealDataConfig
    profiles: dict = {}

    def train(self, ctx):
        # Synthetic data: the oracle itself, so NLL-oracle is its entropy rate (~5.76).
        if ctx.corpus.oracle is not None:
            return ctx.corpus.oracle
        return TrainingSentences(ctx.corpus.train)
