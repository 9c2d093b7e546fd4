"""MLE: teacher-forced maximum-likelihood training of the shared LSTM generator."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import hookimpl
from harness.training import mle_epoch, new_generator, rng_states, set_rng_states


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


class Mle:
    name = "mle"
    Config = MleConfig
    profiles = {"paper": {"epochs": 120}}

    def train(self, ctx):
        cfg = ctx.config
        generator = new_generator(ctx.corpus, cfg.emb_dim, cfg.hidden_dim, ctx.device)
        optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.lr)
        shuffle_rng = torch.Generator().manual_seed(ctx.seed) if cfg.shuffle else None
        first_epoch = 0
        if (saved := ctx.load_checkpoint()) is not None:
            generator.load_state_dict(saved["generator"])
            optimizer.load_state_dict(saved["optimizer"])
            if shuffle_rng is not None:
                shuffle_rng.set_state(saved["shuffle_rng"])
            set_rng_states(saved["rng"])
            first_epoch = saved["epoch"]
        else:
            ctx.record(generator, phase="mle", epoch=0)
        for epoch in ctx.progress(range(first_epoch, cfg.epochs), total=cfg.epochs - first_epoch,
                                  desc=f"mle {ctx.corpus.name}"):
            loss = mle_epoch(generator, ctx.corpus.train, optimizer, cfg.batch_size,
                             cfg.grad_clip, shuffle_rng)
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                ctx.record(generator, phase="mle", epoch=epoch + 1, train_nll=loss)
            ctx.save_checkpoint({
                "generator": generator.state_dict(), "optimizer": optimizer.state_dict(),
                "shuffle_rng": shuffle_rng.get_state() if shuffle_rng is not None else None,
                "rng": rng_states(), "epoch": epoch + 1})
        return generator
