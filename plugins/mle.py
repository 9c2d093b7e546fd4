"""MLE: teacher-forced maximum-likelihood training of the shared LSTM generator.

Its training is also the pre-training of the methods that start from MLE
(``ctx.start_from("mle", **settings)``): ``pretrain_mle`` trains once per data set, seed
and settings and every such run reuses the result, so the MLE row and their starting point
are the very same generator.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from harness import Method, hookimpl, store
from harness.api import RunContext
from harness.config import require
from harness.generator import Decoder
from harness.training import (GeneratorSettings, batch_order_stream, build_generator,
                              require_generator_settings, rng_states, set_rng_states,
                              train_by_mle)

PHASE = "mle"  # the curve rows and checkpoints of MLE training
INITIAL_WEIGHTS = "mle: initial weights"  # the random stream they are drawn from


@hookimpl
def register_methods(register):
    register(Mle())


@dataclass
class MleConfig(GeneratorSettings):
    epochs: int = 8             # passes over the training set (the paper: 120)
    batch_size: int = 64        # as the authors
    lr: float = 0.01            # Adam, as the authors' later code (their 2016 code: 0.001)
    grad_clip: float = 5.0      # gradient-norm clip, as the authors
    emb_dim: int = 32           # generator embedding, as the authors
    hidden_dim: int = 32        # generator LSTM units, as the authors
    shuffle: bool = True        # the authors' loader does not shuffle: 9.09 instead of 9.00
    eval_every: int = 5         # epochs between learning-curve points (the authors: 5)
    lstm_biases: int = 2        # LSTM biases per gate: 2 as nn.LSTM, 1 as the authors' LSTM
                                # (bias_hh zero and frozen)

    def __post_init__(self):
        require(self, at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every"),
                positive=("grad_clip",))
        require_generator_settings(self)


# The authors' code as published with the paper (LantaoYu/SeqGAN @4152436,
# MLE_SeqGAN/pretrain_experiment.py): PRE_EPOCH_NUM = 350; PoemGen's g_optimizer returns
# tf.train.AdamOptimizer() "# ignore learning rate", i.e. Adam's default 1e-3; the loader
# walks the file in order every epoch; NLL-oracle every 5 epochs, the last one reported.
# Their LSTM has one bias per gate (model.py create_recurrent_unit, lines 142-163).
AUTHORS = {"epochs": 350, "lr": 0.001, "shuffle": False, "lstm_biases": 1}


class Mle(Method):
    """MLE: teacher-forced maximum-likelihood training of the shared generator."""

    name = "mle"
    Config = MleConfig
    # paper: the authors' later code (LantaoYu/SeqGAN @e2b52fb, dataloader.py 4-27): 120
    # epochs over the file in order, as every method's paper profile pre-trains.
    profiles = {"paper": {"epochs": 120, "shuffle": False}, "authors": AUTHORS}

    def train(self, ctx):
        # The result is cached, so the methods that start from MLE start from this very
        # generator.
        return pretrain_mle(ctx, ctx.config)

    def start(self, ctx, **settings):
        """The generator a run with ``settings`` (the rest MleConfig's defaults) trains,
        for ``ctx.start_from("mle", ...)``: reused when another run trained it."""
        return pretrain_mle(ctx, MleConfig(**settings))


def snapshot_path(ctx: RunContext, settings: MleConfig, epoch: int) -> Path:
    """Where MLE training with these settings (the number of epochs aside) keeps its
    generator after ``epoch`` epochs, for the runs that start from it."""
    key = {"settings": {**asdict(settings), "epochs": None}, "corpus": ctx.corpus.info,
           "dataset": ctx.corpus.name, "seed": ctx.seed, **ctx.snapshot_key}
    return store.snapshot_path(ctx.shared_dir, PHASE, key, epoch)


def pretrain_mle(ctx: RunContext, settings: MleConfig) -> Decoder:
    """MLE-train the shared generator, or reuse the result of an earlier run that trained
    with the same data set, seed and settings (the MLE run and SeqGAN's pre-training
    are then the very same generator, trained once). A longer run with otherwise equal
    settings serves too: training keeps its generator at every learning-curve point, and
    the first k epochs of a longer run are exactly a k-epoch run."""
    cached = snapshot_path(ctx, settings, settings.epochs)
    # This draw advances the caller's random state as it always has, so results that reused
    # a snapshot stay as they were.
    generator = build_generator(ctx.corpus, settings, ctx.device)
    if settings.shuffle:
        ctx.rng(batch_order_stream(PHASE))  # train_mle's order, listed when reused too
    if cached.exists():
        saved = ctx.read_shared(cached)
        generator.load_state_dict(saved["generator"])
        ctx.curve.clear()  # a resumed run may hold the rows already: pre-training comes first
        for row in saved["curve"]:
            ctx.record(**row)
        ctx.log.info("reusing the MLE pre-training in %s", cached)
        return generator
    # Whatever follows (dropout in SeqGAN's discriminator) draws from the global random
    # state: leave it as it was, so a run that trains the pre-training here and one that
    # reuses it (or resumes after it) go on identically.
    # The weights MLE starts from are drawn from the run's seed, as the MLE run draws them,
    # whatever the caller drew first (SeqGAN builds its discriminator first): a run that
    # trains the pre-training itself starts from the very generator it would have reused.
    generator.load_state_dict(initial_weights(ctx, settings))
    states = rng_states()
    train_mle(ctx, generator, settings)
    set_rng_states(states)
    return generator


def initial_weights(ctx: RunContext, settings: MleConfig) -> dict:
    """The shared generator's initial weights for the run's seed (the global random state
    left as it was)."""
    with ctx.seeded(INITIAL_WEIGHTS):
        return build_generator(ctx.corpus, settings, torch.device("cpu")).state_dict()


def train_mle(ctx: RunContext, generator: torch.nn.Module, settings: MleConfig) -> None:
    """MLE-train the shared generator in place, keeping its state at every curve point
    for the runs that start from it."""
    def keep_snapshot(epoch: int) -> None:
        ctx.write_shared(snapshot_path(ctx, settings, epoch), {
            "generator": generator.state_dict(),
            "curve": [row for row in ctx.curve if row.get("phase") == PHASE]})

    train_by_mle(ctx, generator, PHASE, epochs=settings.epochs, batch_size=settings.batch_size,
                 lr=settings.lr, grad_clip=settings.grad_clip, shuffle=settings.shuffle,
                 eval_every=settings.eval_every, at_curve_point=keep_snapshot)
