"""SeqGAN (Yu et al. 2017): the MLE-pre-trained generator improved by policy gradient,
rewarded by a CNN discriminator through Monte-Carlo rollout."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import discriminator as D
from harness import hookimpl
from harness.config import require
from harness.adversarial import PolicyGradientSettings, train_policy_gradient
from harness.training import (MleSettings, new_generator, pretrain_mle, rng_states,
                              set_rng_states)


@hookimpl
def register_methods(register):
    register(SeqGan())


@dataclass
class SeqGanConfig:
    # The paper profile follows LantaoYu/SeqGAN sequence_gan.py @e2b52fb: PRE_EPOCH_NUM 120,
    # 50 discriminator pre-training rounds of 3 epochs on 10,000 fresh negatives,
    # TOTAL_BATCH 200 with 1 generator step, 16 rollouts and 5 x 3 discriminator epochs,
    # rollout update rate 0.8, Adam 0.01 for the generator and 1e-4 for the discriminator.
    pretrain_epochs: int = 15         # MLE pre-training (shared with the mle method's run)
    batch_size: int = 64              # generator batch, for MLE and policy gradient
    lr: float = 0.01                  # generator Adam, both phases, as the authors
    grad_clip: float = 5.0            # generator gradient-norm clip, as the authors
    emb_dim: int = 32                 # the shared generator's sizes, as the authors
    hidden_dim: int = 32
    shuffle: bool = True              # MLE pre-training shuffles (see the mle method)
    eval_every: int = 5               # MLE epochs between curve points
    disc_size: str = "small"          # "small" (CPU) or "paper" (the authors' 1,720 filters)
    disc_lr: float = 1e-4             # discriminator Adam, as the authors
    disc_l2: float = 0.2              # L2 on the discriminator's output layer, as the authors
    disc_batch_size: int = 64
    disc_negatives: int = 5000        # generated sequences per discriminator round (paper: 10,000)
    disc_pretrain_rounds: int = 5     # discriminator pre-training rounds (paper: 50)
    disc_epochs: int = 1              # epochs per discriminator round, k (paper: 3)
    adv_batches: int = 40             # adversarial batches (paper: 200)
    g_steps: int = 1                  # generator updates per adversarial batch, g
    d_steps: int = 1                  # discriminator rounds per adversarial batch, d (paper: 5)
    n_rollouts: int = 8               # Monte-Carlo completions per prefix (paper: 16)
    rollout_update_rate: float = 0.8  # the rollout policy's delay, as the authors
    adv_eval_every: int = 5           # adversarial batches between curve points (the authors: 5)

    def __post_init__(self):
        require(self, positive=("grad_clip",), fractions=("rollout_update_rate",),
                choices={"disc_size": ("small", "paper")},
                at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every",
                              "disc_batch_size", "disc_negatives", "g_steps", "n_rollouts",
                              "adv_eval_every"))


PAPER = {"pretrain_epochs": 120, "disc_size": "paper", "disc_negatives": 10_000,
         "disc_pretrain_rounds": 50, "disc_epochs": 3, "adv_batches": 200, "d_steps": 5,
         "n_rollouts": 16}


class SeqGan:
    """SeqGAN: MLE pre-training, then policy gradient rewarded by a CNN discriminator."""

    name = "seqgan"
    Config = SeqGanConfig
    profiles = {"paper": PAPER}
    after = ("mle",)  # starts from the MLE run's generator: executors run that first

    def train(self, ctx):
        cfg = ctx.config
        corpus = ctx.corpus
        sizes = D.PAPER if cfg.disc_size == "paper" else D.SMALL
        disc = D.Discriminator(corpus.vocab_size, corpus.seq_len, **sizes).to(ctx.device)
        disc_opt = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr)
        rng = ctx.rng("disc_negatives", 2, ctx.device)
        shuffle = ctx.rng("disc_real_and_shuffle", 3)

        # The discriminator's state, checkpointed beside the generator in both phases.
        extra = {"discriminator": disc, "disc_optimizer": disc_opt,
                 "disc_rng": _GeneratorState(rng), "shuffle_rng": _GeneratorState(shuffle)}

        def discriminator_round(generator) -> float:
            """Fresh negatives against as many real rows, k epochs; the mean loss."""
            fake = generator.sample(cfg.disc_negatives, generator=rng).cpu()
            real = corpus.train[torch.randperm(len(corpus.train), generator=shuffle)
                                [:cfg.disc_negatives]]
            return D.train_discriminator(disc, disc_opt, real, fake, cfg.disc_epochs,
                                         cfg.disc_batch_size, cfg.disc_l2, shuffle)

        saved = ctx.load_checkpoint()
        phase = saved["phase"] if saved is not None else None
        if phase == "adversarial":
            generator = new_generator(corpus, cfg.emb_dim, cfg.hidden_dim, ctx.device)
        else:
            generator = pretrain_mle(ctx, MleSettings.of(cfg, epochs="pretrain_epochs"))
            _pretrain_discriminator(ctx, lambda: discriminator_round(generator), extra,
                                    saved if phase == "discriminator" else None)
            saved = None

        def between(batch: int) -> dict:
            losses = [discriminator_round(generator) for _ in range(cfg.d_steps)]
            return {"disc_loss": losses[-1]} if losses else {}

        settings = PolicyGradientSettings(
            batches=cfg.adv_batches, g_steps=cfg.g_steps, batch_size=cfg.batch_size,
            n_rollouts=cfg.n_rollouts, lr=cfg.lr, grad_clip=cfg.grad_clip,
            rollout_update_rate=cfg.rollout_update_rate, eval_every=cfg.adv_eval_every)
        return train_policy_gradient(
            ctx, generator, disc.prob_real, settings, epoch_offset=cfg.pretrain_epochs,
            between=between, extra=extra, saved=saved)


def _pretrain_discriminator(ctx, one_round, extra: dict, saved: dict | None) -> None:
    """The discriminator's pre-training rounds, checkpointed after each one."""
    cfg = ctx.config
    first = 0
    if saved is not None:
        for name, obj in extra.items():
            obj.load_state_dict(saved[name])
        set_rng_states(saved["rng"])
        first = saved["round"]
    for number in range(first, cfg.disc_pretrain_rounds):
        loss = one_round()
        if number + 1 == cfg.disc_pretrain_rounds:
            ctx.record(phase="discriminator", epoch=cfg.pretrain_epochs, disc_loss=loss)
        ctx.save_checkpoint({"phase": "discriminator", "round": number + 1, "rng": rng_states(),
                             **{name: obj.state_dict() for name, obj in extra.items()}})


class _GeneratorState:
    """A torch.Generator seen as something with a state_dict, for the checkpoint."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self):
        return self.generator.get_state()

    def load_state_dict(self, state):
        self.generator.set_state(state)
