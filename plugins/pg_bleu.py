"""PG-BLEU: the SeqGAN policy-gradient loop with BLEU against real data as the reward
instead of a discriminator (the paper's baseline)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import hookimpl
from harness.config import require
from harness.adversarial import PolicyGradientSettings, train_policy_gradient
from harness.metrics import BleuReferences
from harness.training import MleSettings, new_generator, pretrain_mle


@hookimpl
def register_methods(register):
    register(PgBleu())


@dataclass
class PgBleuConfig:
    # The authors' first-commit pg_bleu/pg_bleu.py (LantaoYu/SeqGAN @4152436): unsmoothed
    # BLEU-3 against a random ~40% of the real data, 1 rollout per prefix, 800 adversarial
    # batches after 200 MLE epochs at Adam's default rate. The paper profile keeps their
    # reward and rollout count but shares the 120-epoch MLE pre-training with the other
    # methods, so every adversarial method starts from the very same generator.
    pretrain_epochs: int = 15         # MLE pre-training (shared with the mle method's run)
    batch_size: int = 64
    lr: float = 0.01                  # generator Adam, both phases
    grad_clip: float = 5.0
    emb_dim: int = 32
    hidden_dim: int = 32
    shuffle: bool = True
    eval_every: int = 5               # MLE epochs between curve points
    bleu_order: int = 3               # BLEU-n reward, uniform weights (the authors: 3)
    bleu_smoothing: bool = False      # the authors' reward was unsmoothed
    reference_fraction: float = 0.4   # share of the training data used as references
    adv_batches: int = 40             # adversarial batches (paper: 200, as SeqGAN's)
    g_steps: int = 1
    n_rollouts: int = 1               # Monte-Carlo completions per prefix (the authors: 1)
    rollout_update_rate: float = 0.8
    adv_eval_every: int = 5

    def __post_init__(self):
        require(self, positive=("grad_clip",),
                fractions=("reference_fraction", "rollout_update_rate"),
                at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every", "bleu_order",
                              "g_steps", "n_rollouts", "adv_eval_every"))


class PgBleu:
    """PG-BLEU: SeqGAN's policy-gradient loop rewarded by BLEU against real data."""

    name = "pg-bleu"
    Config = PgBleuConfig
    after = ("mle",)  # starts from the MLE run's generator: executors run that first
    profiles = {"paper": {"pretrain_epochs": 120, "adv_batches": 200}}

    def train(self, ctx):
        cfg = ctx.config
        corpus = ctx.corpus
        picked = torch.rand(len(corpus.train), generator=ctx.rng("bleu_references"))
        references = BleuReferences(corpus.sentences(corpus.train[picked < cfg.reference_fraction]),
                                    cfg.bleu_order)

        def score(sequences: torch.Tensor) -> torch.Tensor:
            scores = references.sentence_scores(corpus.sentences(sequences.cpu()),
                                                smoothing=cfg.bleu_smoothing)
            return torch.from_numpy(scores).float().to(sequences.device)

        saved = ctx.load_checkpoint()
        if saved is not None and saved["phase"] == "adversarial":
            generator = new_generator(corpus, cfg.emb_dim, cfg.hidden_dim, ctx.device)
        else:
            generator = pretrain_mle(ctx, MleSettings.of(cfg, epochs="pretrain_epochs"))
            saved = None
        settings = PolicyGradientSettings(
            batches=cfg.adv_batches, g_steps=cfg.g_steps, batch_size=cfg.batch_size,
            n_rollouts=cfg.n_rollouts, lr=cfg.lr, grad_clip=cfg.grad_clip,
            rollout_update_rate=cfg.rollout_update_rate, eval_every=cfg.adv_eval_every)
        return train_policy_gradient(ctx, generator, score, settings,
                                     epoch_offset=cfg.pretrain_epochs, saved=saved)
