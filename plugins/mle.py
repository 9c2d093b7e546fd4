"""MLE: teacher-forced maximum-likelihood training of the shared LSTM generator."""
from __future__ import annotations

from dataclasses import dataclass

from harness import hookimpl
from harness.config import require
from harness.training import MleSettings, pretrain_mle


@hookimpl
def register_methods(register):
    register(Mle())


@dataclass
class MleConfig:
    epochs: int = 15            # passes over the training set (the paper: 120)
    batch_size: int = 64        # as the authors
    lr: float = 0.01            # Adam, as the authors
    grad_clip: float = 5.0      # gradient-norm clip, as the authors
    emb_dim: int = 32           # generator embedding, as the authors
    hidden_dim: int = 32        # generator LSTM units, as the authors
    shuffle: bool = True        # the authors' loader does not shuffle: 9.09 instead of 9.00
    eval_every: int = 5         # epochs between learning-curve points (the authors: 5)

    def __post_init__(self):
        require(self, at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every"),
                positive=("grad_clip",))


class Mle:
    """MLE: teacher-forced maximum-likelihood training of the shared generator."""

    name = "mle"
    Config = MleConfig
    profiles = {"paper": {"epochs": 120}}

    def train(self, ctx):
        # The result is cached, so SeqGAN and PG-BLEU start from this very generator.
        return pretrain_mle(ctx, MleSettings.of(ctx.config))
