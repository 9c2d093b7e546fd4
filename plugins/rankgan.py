"""RankGAN (Lin et al. 2017, "Adversarial Ranking for Language Generation"): SeqGAN's
policy-gradient loop with a ranker in place of the binary discriminator.

The ranker embeds a sequence s as a feature vector y_s: SeqGAN's CNN discriminator up to
its output layer (``adversarial.Discriminator.features``). It ranks s among a comparison
set C against a reference u drawn from real data:

    alpha(s|u)  = cos(y_s, y_u)
    P(s|u, C)   = exp(gamma alpha(s|u)) / sum over s' in C + {s} of exp(gamma alpha(s'|u))
    log R(s|U, C) = mean over u in U of log P(s|u, C)

The ranker maximises log R(real | U, C-) - log R(generated | U, C+), where C- holds
generated and C+ real sequences: it learns to rank real sequences above generated ones. The
generator's reward is log R(s | U, C+), its sequences ranked among real ones, turned into
per-token rewards by SeqGAN's Monte-Carlo rollout (``adversarial.Rollout``).

The authors' code (cookielee77/RankGan-NIPS2017, ranker.py) differs in two ways kept out
here for the paper's formula: it sums the reference cosines before one softmax over the
whole mini-batch (so the comparison set is the batch, mixed real and generated, and
gamma acts on a sum of 16), and it rewards the generator with the rank probability among
its own batch's completions rather than the log-rank among real sequences.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from harness import hookimpl
from harness.config import require
from harness.training import train_step
from harness_plugins import adversarial as adv

PHASE = "ranker"  # the ranker's pre-training: its checkpoints and curve row


@hookimpl
def register_methods(register):
    register(RankGan())


@dataclass
class RankGanConfig:
    pretrain_epochs: int = 8          # MLE pre-training (shared with the mle method's run)
    batch_size: int = 64              # generator batch in MLE pre-training (the authors: 64)
    lr: float = 0.01                  # generator Adam, both phases (the authors: 0.01)
    grad_clip: float = 5.0            # generator gradient-norm clip, as SeqGAN's authors
    emb_dim: int = 32                 # the shared generator's sizes (the authors: 32, 32)
    hidden_dim: int = 32
    shuffle: bool = True              # MLE pre-training shuffles (see the mle method)
    eval_every: int = 5               # MLE epochs between curve points
    ranker_size: str = "small"        # CNN sizes: "small" (CPU) or "paper" (the authors'
                                      # 1,720 filters over 64-dim embeddings, as SeqGAN's)
    ranker_lr: float = 1e-4           # ranker Adam (the authors: 1e-4)
    gamma: float = 1.0                # temperature gamma of the ranking softmax (the authors: 1)
    ref_size: int = 16                # reference set U, real rows drawn afresh for every
                                      # ranker mini-batch and every reward (the authors: 16)
    comparison_size: int = 32         # comparison set C; a ranker mini-batch holds this many
                                      # real and as many generated rows, each side the other's
                                      # comparison set (the authors: 64-row mixed batches)
    ranker_negatives: int = 2000      # generated rows per ranker round (the authors: 10,000)
    ranker_pretrain_rounds: int = 2   # ranker pre-training rounds (the authors: 50)
    ranker_pretrain_epochs: int = 1   # epochs per pre-training round (the authors: 3)
    ranker_epochs: int = 1            # epochs per adversarial ranker round (the authors: 1)
    adv_batch_size: int = 32          # sequences per policy-gradient update (the authors: 32)
    adv_batches: int = 10             # adversarial batches (the authors: 200)
    g_steps: int = 1                  # generator updates per adversarial batch (the authors: 1)
    d_steps: int = 1                  # ranker rounds per adversarial batch (the authors: 5)
    n_rollouts: int = 4               # Monte-Carlo completions per prefix (the authors: 16)
    rollout_update_rate: float = 0.0  # 0: the rollout policy is the generator; the authors'
                                      # rollout.py, like SeqGAN's, reads the live generator
                                      # whatever its 0.8 (see adversarial.Rollout)
    adv_eval_every: int = 5           # adversarial batches between curve points (the authors: 5)

    def __post_init__(self):
        require(self, positive=("grad_clip", "gamma"), fractions=("rollout_update_rate",),
                choices={"ranker_size": ("small", "paper")},
                at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every", "ref_size",
                              "comparison_size", "ranker_negatives", "ranker_pretrain_epochs",
                              "adv_batch_size", "g_steps", "n_rollouts", "adv_eval_every"))


# The authors' main.py and opt.py (cookielee77/RankGan-NIPS2017 @374e2d9): 120 MLE epochs,
# 50 ranker rounds of 3 epochs on 10,000 fresh samples, 200 adversarial epochs of 1
# generator step (batch 32, 16 rollouts) and 5 ranker rounds of 1 epoch each, reference
# sets of 16, gamma 1, SeqGAN's discriminator sizes for the ranker, Adam 0.01 / 1e-4.
PAPER = {"pretrain_epochs": 120, "ranker_size": "paper", "ranker_negatives": 10_000,
         "ranker_pretrain_rounds": 50, "ranker_pretrain_epochs": 3, "adv_batches": 200,
         "d_steps": 5, "n_rollouts": 16}


class Ranker(nn.Module):
    """The feature extractor y_s: SeqGAN's CNN discriminator up to its output layer, which
    stays unused; in training mode with its dropout, which the authors' ranker applies to
    references and candidates alike. It keeps SeqGAN's initialisation (the authors'
    ranker.py draws every weight uniformly from [-0.1, 0.1])."""

    def __init__(self, vocab_size: int, seq_len: int, size: str):
        super().__init__()
        sizes = adv.PAPER if size == "paper" else adv.SMALL
        self.cnn = adv.Discriminator(vocab_size, seq_len, **sizes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Features [B, F] of int64 tokens [B, T]."""
        return self.cnn.features(tokens)

    @torch.no_grad()
    def eval_features(self, tokens: torch.Tensor, batch: int = 1024) -> torch.Tensor:
        """Features in eval mode (no dropout), in chunks of ``batch`` rows."""
        was_training = self.training
        self.eval()
        try:
            device = self.cnn.output.weight.device
            return torch.cat([self(tokens[i:i + batch].to(device))
                              for i in range(0, len(tokens), batch)])
        finally:
            self.train(was_training)


def log_rank(candidates: torch.Tensor, references: torch.Tensor, comparison: torch.Tensor,
             gamma: float) -> torch.Tensor:
    """log R(s|U, C) [B] for candidate features [B, F]: the mean over references [U, F] of
    log P(s|u, C), each candidate ranked by a softmax at temperature ``gamma`` over the
    cosine similarities of itself and the comparison set [C, F] (C + {s}, not the other
    candidates) to u."""
    s, u, c = (F.normalize(x, dim=1) for x in (candidates, references, comparison))
    own = gamma * s @ u.T                             # [B, U]: gamma alpha(s|u)
    rivals = torch.logsumexp(gamma * c @ u.T, dim=0)  # [U]: log sum over s' in C
    return (own - torch.logaddexp(own, rivals)).mean(dim=1)


def _draw(rows: torch.Tensor, n: int, rng: torch.Generator) -> torch.Tensor:
    return rows[torch.randint(len(rows), (n,), generator=rng)]


def ranker_loss(ranker: Ranker, real: torch.Tensor, fake: torch.Tensor,
                references: torch.Tensor, gamma: float) -> torch.Tensor:
    """The paper's ranker objective, negated: -(mean log R(real | U, C-) - mean log R(fake |
    U, C+)), the generated rows the real rows' comparison set C- and the real rows the
    generated rows' C+."""
    features = ranker(torch.cat([real, fake, references]))
    real_f, fake_f, ref_f = features.split([len(real), len(fake), len(references)])
    return -(log_rank(real_f, ref_f, fake_f, gamma).mean()
             - log_rank(fake_f, ref_f, real_f, gamma).mean())


def train_ranker(ranker: Ranker, optimizer: torch.optim.Optimizer, real: torch.Tensor,
                 fake: torch.Tensor, data: torch.Tensor, epochs: int, cfg: RankGanConfig,
                 rng: torch.Generator) -> float:
    """``epochs`` passes over ``real`` and ``fake`` in mini-batches of ``comparison_size``
    rows of each, with ``ref_size`` references drawn from ``data`` for each; the mean loss."""
    ranker.train()
    device = ranker.cnn.output.weight.device
    total, batches = 0.0, 0
    for _ in range(epochs):
        real_order = torch.randperm(len(real), generator=rng)
        fake_order = torch.randperm(len(fake), generator=rng)
        for start in range(0, min(len(real), len(fake)), cfg.comparison_size):
            stop = start + cfg.comparison_size
            rows = (real[real_order[start:stop]], fake[fake_order[start:stop]],
                    _draw(data, cfg.ref_size, rng))
            loss = ranker_loss(ranker, *(r.to(device) for r in rows), cfg.gamma)
            total += train_step(loss, optimizer, "the ranker loss")
            batches += 1
    return total / max(batches, 1)


def rank_reward(ranker: Ranker, data: torch.Tensor, cfg: RankGanConfig,
                rng: torch.Generator) -> adv.Score:
    """The generator's reward log R(s | U, C+) for completed sequences, U and C+ real rows of
    ``data`` drawn afresh for each call (Rollout.rewards scores a batch's completions in one
    call, so they share one draw, as in the authors' get_reward)."""

    def score(sequences: torch.Tensor) -> torch.Tensor:
        references = ranker.eval_features(_draw(data, cfg.ref_size, rng))
        comparison = ranker.eval_features(_draw(data, cfg.comparison_size, rng))
        return log_rank(ranker.eval_features(sequences), references, comparison, cfg.gamma)

    return score


class RankGan:
    """RankGAN: MLE pre-training, then policy gradient rewarded by an adversarial ranker."""

    name = "rankgan"
    Config = RankGanConfig
    profiles = {"paper": PAPER}
    starts_from = ("mle",)  # executors run the MLE run first and this run reuses its generator
    published = (resources.files("harness_plugins") / "published" / "rankgan2017.csv",)
    # The paper's formula, not the authors' code (see the module's docstring).
    conditions = {"algorithm": "the paper's formula (a softmax per reference)"}

    def train(self, ctx):
        cfg = ctx.config
        corpus = ctx.corpus
        ranker = Ranker(corpus.vocab_size, corpus.seq_len, cfg.ranker_size).to(ctx.device)
        ranker_opt = torch.optim.Adam(ranker.parameters(), lr=cfg.ranker_lr)
        negatives_rng = ctx.rng("ranker_negatives", 2, ctx.device)
        real_rng = ctx.rng("ranker_real_and_shuffle", 3)
        reference_rng = ctx.rng("reward_references", 4)
        # The ranker's state, checkpointed beside the generator in both phases.
        parts = {"ranker": ranker, "ranker_optimizer": ranker_opt,
                 "negatives_rng": negatives_rng, "real_rng": real_rng,
                 "reference_rng": reference_rng}

        def ranker_round(generator, epochs: int) -> float:
            """Fresh generated rows against as many real rows, ``epochs`` epochs; the loss."""
            fake = generator.sample(cfg.ranker_negatives, generator=negatives_rng).cpu()
            real = corpus.train[torch.randperm(len(corpus.train), generator=real_rng)
                                [:cfg.ranker_negatives]]
            return train_ranker(ranker, ranker_opt, real, fake, corpus.train, epochs, cfg,
                                real_rng)

        generator, saved = adv.start_from_mle(ctx, adv.Pretraining(
            PHASE, cfg.ranker_pretrain_rounds,
            lambda generator: ranker_round(generator, cfg.ranker_pretrain_epochs), parts,
            "ranker_loss"))

        def between(batch: int) -> dict:
            losses = [ranker_round(generator, cfg.ranker_epochs) for _ in range(cfg.d_steps)]
            return {"ranker_loss": losses[-1]} if losses else {}

        settings = adv.PolicyGradientSettings(
            batches=cfg.adv_batches, g_steps=cfg.g_steps, batch_size=cfg.adv_batch_size,
            n_rollouts=cfg.n_rollouts, lr=cfg.lr, grad_clip=cfg.grad_clip,
            rollout_update_rate=cfg.rollout_update_rate, eval_every=cfg.adv_eval_every)
        reward = rank_reward(ranker, corpus.train, cfg, reference_rng)
        return adv.train_policy_gradient(
            ctx, generator, reward, settings, epoch_offset=cfg.pretrain_epochs,
            between=between, extra=parts, saved=saved)
