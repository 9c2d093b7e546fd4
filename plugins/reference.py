"""The reference rows of every table: real data (the ceiling), scored exactly like a
method's samples, and the Random row (the floor)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import Generator, Method, hookimpl
from harness.config import require
from harness.training import (GeneratorSettings, build_generator, generator_settings,
                              require_generator_settings)


@hookimpl
def register_methods(register):
    register(RealData())
    register(RandomGenerator())


@dataclass
class RealDataConfig:
    pass                        # nothing to set: the data are what they are


class RealSentences(Generator):
    """Real sentences as 'samples', always from outside the reference set they are scored
    against: training sentences against the held-out references, held-out sentences
    against the training references. They have no likelihood to give."""

    def __init__(self, train: torch.Tensor, test: torch.Tensor):
        self.splits = {"train": train, "test": test}

    def sample(self, n, temperature=1.0, generator=None):
        return self.samples_outside("test", n, generator)

    def samples_outside(self, split: str, n: int, generator: torch.Generator | None = None):
        """``n`` sentences drawn without replacement from the other split (at most all)."""
        other = self.splits["train" if split == "test" else "test"]
        return other[torch.randperm(len(other), generator=generator)[:n]]

    def log_likelihood(self, tokens, temperature=1.0):
        raise NotImplementedError("real text has no model likelihood")


class RealData(Method):
    """Real data: the ceiling, real sentences (not the references) scored like samples."""

    name = "real"
    Config = RealDataConfig
    reference = "ceiling"

    def train(self, ctx):
        # Synthetic data: the oracle itself, so NLL-oracle is its entropy rate (~5.76).
        if ctx.corpus.oracle is not None:
            return ctx.corpus.oracle
        return RealSentences(ctx.corpus.train, ctx.corpus.test)


@dataclass
class RandomConfig(GeneratorSettings):
    emb_dim: int = 32           # the shared generator's sizes, as the authors
    hidden_dim: int = 32
    mle_epochs: int = 0         # MLE epochs before it is scored (0: as initialised)
    lr: float = 0.001           # their Adam rate, when mle_epochs > 0
    batch_size: int = 64
    shuffle: bool = False       # the authors' loader order
    lstm_biases: int = 2        # LSTM biases per gate: 2 as nn.LSTM, 1 as the authors' LSTM
                                # (bias_hh zero and frozen)

    def __post_init__(self):
        require(self, at_least_one=("emb_dim", "hidden_dim", "batch_size"), positive=("lr",))
        require_generator_settings(self)


class RandomGenerator(Method):
    """The Random row: the shared LSTM generator as initialised (N(0, 0.1)), before any
    training; under ``authors``, after its first MLE epoch (what the paper's Random
    figure fits: the authors logged their first NLL-oracle after one epoch)."""

    name = "random"
    Config = RandomConfig
    # authors: their generator (one bias per LSTM gate, MLE_SeqGAN/model.py lines 142-163)
    # after its first MLE epoch.
    profiles = {"authors": {"mle_epochs": 1, "lstm_biases": 1}}
    reference = "floor"

    def train(self, ctx):
        cfg = ctx.config
        if cfg.mle_epochs == 0:
            generator = build_generator(ctx.corpus, cfg, ctx.device)
            ctx.record(generator, phase="init", epoch=0)
            return generator
        ctx.note(f"random: the generator after {cfg.mle_epochs} MLE epoch(s) at Adam "
                 f"{cfg.lr:g}, not an untrained one")
        return ctx.start_from(
            "mle", epochs=cfg.mle_epochs, batch_size=cfg.batch_size, lr=cfg.lr, grad_clip=5.0,
            emb_dim=cfg.emb_dim, hidden_dim=cfg.hidden_dim, shuffle=cfg.shuffle, eval_every=1,
            lstm_biases=cfg.lstm_biases, **generator_settings(cfg))
