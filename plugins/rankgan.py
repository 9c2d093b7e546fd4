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

The authors' code (cookielee77/RankGan-NIPS2017 @912b3b3) computes something else; the
``authors`` profile (``ranking="authors"``, ``pg_loss="sum"``) follows it:

| | the paper's text | the authors' code | ours: default, paper | ours: authors |
| --- | --- | --- | --- | --- |
| a row's score | mean over u of log P(s given u, C) | gamma * sum over u of cos(y_s, y_u) (ranker.py 141-142) | the paper's | the code's |
| comparison set | C + {s}, per reference | the whole 64-row mini-batch, real and generated mixed, one softmax (ranker.py 143, dataloader.py 37-56) | the paper's: C real rows for a generated s, C generated for a real one | the code's |
| ranker loss | -(E log R(real) - E log R(generated)) | -(mean log softmax over the batch's real rows - over its generated rows) (ranker.py 151-157) | the paper's | the code's |
| generator reward | log R(s given U, C+), C+ real rows | softmax over the batch's own completions of the same prefix length and rollout, then the mean over rollouts (ranker.py 147-148, rollout.py 100-109) | the paper's | the code's |
| policy-gradient loss | an expectation | summed over batch and tokens, clip 5.0 (generator.py 117-119) | averaged | summed |
| ranker initialisation | not stated | embedding, convolutions and their biases U(-0.1, 0.1) (ranker.py 85, 93, 103-104); the highway's matrices and biases TF's default, Glorot uniform: U(+-sqrt(3 / n)) for n features (ranker.py 30-31); no output layer (ranker.py 141) | SeqGAN's discriminator's (``adversarial.Discriminator``) | the code's (``ranker_init``) |
| MLE pre-training order | not stated | the file in order, every epoch (dataloader.py 64-90) | shuffled | in order (``shuffle``) |
| LSTM gate biases | not stated | one per gate (generator.py 141-157) | two, as nn.LSTM | one (``lstm_biases``) |

The code's reward sums to 1 over the batch: a completion is rewarded by how it ranks
among its batch-mates, never against real text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from harness import Method, hookimpl
from harness.config import require
from harness.training import GeneratorSettings, require_generator_settings, train_step
from harness_plugins import adversarial as adv

PHASE = "ranker"  # the ranker's pre-training: its checkpoints and curve row


@hookimpl
def register_methods(register):
    register(RankGan())


@dataclass
class RankGanConfig(GeneratorSettings):
    pretrain_epochs: int = 8          # MLE pre-training (shared with the mle method's run)
    batch_size: int = 64              # generator batch in MLE pre-training (the authors: 64)
    lr: float = 0.01                  # generator Adam, both phases (the authors: 0.01)
    grad_clip: float = 5.0            # generator gradient-norm clip, as SeqGAN's authors
    emb_dim: int = 32                 # the shared generator's sizes (the authors: 32, 32)
    hidden_dim: int = 32
    lstm_biases: int = 2              # LSTM biases per gate: 2 as nn.LSTM, 1 as the authors'
                                      # LSTM (bias_hh zero and frozen)
    shuffle: bool = True              # MLE pre-training shuffles (see the mle method)
    eval_every: int = 5               # MLE epochs between curve points
    ranker_size: str = "small"        # CNN sizes: "small" (CPU) or "paper" (the authors'
                                      # 1,720 filters over 64-dim embeddings, as SeqGAN's)
    ranker_init: str = "seqgan"       # "seqgan": SeqGAN's discriminator's initialisation;
                                      # "authors": their ranker's (ranker.py 85, 93, 103-104:
                                      # U(-0.1, 0.1); the highway 30-31: Glorot uniform)
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
    ranking: str = "paper"            # "paper": the formulas above; "authors": their code's
                                      # batch softmax and reward (the table above)
    pg_loss: str = "mean"             # the policy-gradient loss over the batch: "mean" (the
                                      # paper's expectation) or "sum" (the authors' code; see
                                      # adversarial.PG_LOSSES)

    def __post_init__(self):
        require(self, positive=("grad_clip", "gamma"), fractions=("rollout_update_rate",),
                choices={"pg_loss": adv.PG_LOSSES, "ranking": RANKINGS,
                         "ranker_size": ("small", "paper"), "ranker_init": RANKER_INITS},
                at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every", "ref_size",
                              "comparison_size", "ranker_negatives", "ranker_pretrain_epochs",
                              "adv_batch_size", "g_steps", "n_rollouts", "adv_eval_every"))
        require_generator_settings(self)


# The authors' main.py and opt.py (cookielee77/RankGan-NIPS2017 @374e2d9): 120 MLE epochs,
# 50 ranker rounds of 3 epochs on 10,000 fresh samples, 200 adversarial epochs of 1
# generator step (batch 32, 16 rollouts) and 5 ranker rounds of 1 epoch each, reference
# sets of 16, gamma 1, SeqGAN's discriminator sizes for the ranker, Adam 0.01 / 1e-4.
PAPER = {"pretrain_epochs": 120, "ranker_size": "paper", "ranker_negatives": 10_000,
         "ranker_pretrain_rounds": 50, "ranker_pretrain_epochs": 3, "adv_batches": 200,
         "d_steps": 5, "n_rollouts": 16, "shuffle": False}  # MLE in file order: dataloader.py 64-90
# Their code as it ran (@912b3b3): the same settings, their ranking and reward, the loss
# summed; generate_samples writes int(10,000 / 32) * 32 = 9,984 negatives a round; their
# ranker's initialisation (ranker.py 85-104, 30-31); MLE over the file in order
# (dataloader.py 64-90); one bias per LSTM gate (generator.py 141-157).
AUTHORS = {**PAPER, "ranking": "authors", "pg_loss": "sum", "ranker_negatives": 9_984,
           "ranker_init": "authors", "shuffle": False, "lstm_biases": 1}
RANKER_INITS = ("seqgan", "authors")  # RankGanConfig.ranker_init
# What a run's ``ranking`` was, as its conditions and the published figures say it.
RANKINGS = {"paper": "the paper's formula (a softmax per reference)",
            "authors": "the authors' code (one softmax over the whole batch and the reward "
                       "a rank among the batch's own completions)"}


class Ranker(nn.Module):
    """The feature extractor y_s: SeqGAN's CNN discriminator up to its output layer, which
    stays unused; in training mode with its dropout, which the authors' ranker applies to
    references and candidates alike. ``init`` "seqgan" keeps SeqGAN's initialisation;
    "authors" redraws it as the authors' ranker.py (``init_like_authors``)."""

    def __init__(self, vocab_size: int, seq_len: int, size: str, init: str = "seqgan"):
        super().__init__()
        sizes = adv.PAPER if size == "paper" else adv.SMALL
        self.cnn = adv.Discriminator(vocab_size, seq_len, **sizes)
        if init == "authors":
            self.init_like_authors()
        elif init != "seqgan":
            raise ValueError(f"ranker init must be one of {', '.join(RANKER_INITS)}, not {init!r}")

    @torch.no_grad()
    def init_like_authors(self) -> None:
        """The authors' build_ranker: the embedding, each convolution's weight and bias from
        U(-0.1, 0.1) (ranker.py 85, 93, 103-104); the highway's Matrix [n, n] and Bias [n]
        get_variable'd with no initializer (ranker.py 30-31), so TF's default Glorot uniform,
        U(+-sqrt(6 / (fan_in + fan_out))): sqrt(3 / n) for both (a 1-D shape's fans are both
        n). Their ranker has no output layer (the features go to the cosine, ranker.py 141);
        ours, unused, keeps its draw."""
        cnn = self.cnn
        nn.init.uniform_(cnn.embedding.weight, -0.1, 0.1)
        for conv in cnn.convs:
            nn.init.uniform_(conv.weight, -0.1, 0.1)
            nn.init.uniform_(conv.bias, -0.1, 0.1)
        for layer in (cnn.highway.transform, cnn.highway.gate):
            bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
            nn.init.uniform_(layer.weight, -bound, bound)
            if layer.bias is not None:
                nn.init.uniform_(layer.bias, -math.sqrt(3.0 / layer.out_features),
                                 math.sqrt(3.0 / layer.out_features))

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


def batch_scores(candidates: torch.Tensor, references: torch.Tensor, gamma: float) -> torch.Tensor:
    """The authors' score of each row [B]: gamma times the sum over references [U, F] of the
    cosine of its features [B, F] to theirs (ranker.py 141-142)."""
    return gamma * (F.normalize(candidates, dim=1) @ F.normalize(references, dim=1).T).sum(dim=1)


def authors_ranker_loss(ranker: Ranker, rows: torch.Tensor, is_real: torch.Tensor,
                        references: torch.Tensor, gamma: float) -> torch.Tensor:
    """The authors' ranker loss on one mixed mini-batch: one log-softmax of ``batch_scores``
    over all its rows, -(the mean over its real rows - the mean over its generated rows)
    (ranker.py 143-144, 151-157)."""
    features = ranker(torch.cat([rows, references]))
    log_rank = torch.log_softmax(batch_scores(features[:len(rows)], features[len(rows):], gamma),
                                 dim=0)
    return -(log_rank[is_real].mean() - log_rank[~is_real].mean())


def train_ranker(ranker: Ranker, optimizer: torch.optim.Optimizer, real: torch.Tensor,
                 fake: torch.Tensor, data: torch.Tensor, epochs: int, cfg: RankGanConfig,
                 rng: torch.Generator) -> float:
    """``epochs`` passes over ``real`` and ``fake``, with ``ref_size`` references drawn from
    ``data`` for each mini-batch; the mean loss. The paper's ranking: mini-batches of
    ``comparison_size`` rows of each kind; the authors': of twice that many rows, the two
    kinds shuffled together."""
    ranker.train()
    device = ranker.cnn.output.weight.device
    batches = _mixed_batches if cfg.ranking == "authors" else _paired_batches
    total, count = 0.0, 0
    for rows in batches(real, fake, epochs, cfg.comparison_size, rng):
        references = _draw(data, cfg.ref_size, rng).to(device)
        if cfg.ranking == "authors":
            loss = authors_ranker_loss(ranker, rows[0].to(device), rows[1].to(device),
                                       references, cfg.gamma)
        else:
            loss = ranker_loss(ranker, rows[0].to(device), rows[1].to(device), references,
                               cfg.gamma)
        total += train_step(loss, optimizer, "the ranker loss")
        count += 1
    return total / max(count, 1)


def _paired_batches(real: torch.Tensor, fake: torch.Tensor, epochs: int, size: int,
                    rng: torch.Generator):
    """(real rows, generated rows), ``size`` of each, both reshuffled every epoch."""
    for _ in range(epochs):
        real_order = torch.randperm(len(real), generator=rng)
        fake_order = torch.randperm(len(fake), generator=rng)
        for start in range(0, min(len(real), len(fake)), size):
            yield real[real_order[start:start + size]], fake[fake_order[start:start + size]]


def _mixed_batches(real: torch.Tensor, fake: torch.Tensor, epochs: int, size: int,
                   rng: torch.Generator):
    """(rows, is_real) of ``2 * size`` rows of both kinds, as the authors' Rank_Data_loader
    gives them: shuffled once a round and passed over in that same order every epoch, the
    remainder dropped (dataloader.py 11-56, main.py 84-88)."""
    rows = torch.cat([real, fake])
    is_real = torch.arange(len(rows)) < len(real)
    order = torch.randperm(len(rows), generator=rng)
    for _ in range(epochs):
        for start in range(0, len(rows) - 2 * size + 1, 2 * size):
            pick = order[start:start + 2 * size]
            if is_real[pick].all() or not is_real[pick].any():
                continue  # one kind only: their loss divides by zero (never at 64 rows)
            yield rows[pick], is_real[pick]


def rank_reward(ranker: Ranker, data: torch.Tensor, cfg: RankGanConfig,
                rng: torch.Generator) -> tuple[adv.Score, adv.AcrossBatch | None]:
    """The generator's reward for completed sequences, and how it is taken across the batch.

    The paper's: log R(s | U, C+), U and C+ real rows of ``data``. The authors': a softmax
    of ``batch_scores`` across the batch's completions of the same prefix length and
    rollout, U real rows. U and C+ are drawn afresh for each call; Rollout.rewards scores a
    batch's completions in one call, so they share one draw, as in the authors' get_reward."""

    def paper_score(sequences: torch.Tensor) -> torch.Tensor:
        references = ranker.eval_features(_draw(data, cfg.ref_size, rng))
        comparison = ranker.eval_features(_draw(data, cfg.comparison_size, rng))
        return log_rank(ranker.eval_features(sequences), references, comparison, cfg.gamma)

    def authors_score(sequences: torch.Tensor) -> torch.Tensor:
        references = ranker.eval_features(_draw(data, cfg.ref_size, rng))
        return batch_scores(ranker.eval_features(sequences), references, cfg.gamma)

    if cfg.ranking == "authors":
        return authors_score, lambda scores: torch.softmax(scores, dim=1)
    return paper_score, None


class RankGan(Method):
    """RankGAN: MLE pre-training, then policy gradient rewarded by an adversarial ranker."""

    name = "rankgan"
    best_so_far_phase = adv.PHASE
    Config = RankGanConfig
    profiles = {"paper": PAPER, "authors": AUTHORS}
    starts_from = ("mle",)  # executors run the MLE run first and this run reuses its generator
    published = (resources.files("harness_plugins") / "published" / "rankgan2017.csv",)

    def conditions(self, config: dict) -> dict[str, str]:
        """Which ranking and policy-gradient loss a run used (its authors' figures: theirs)."""
        return {"algorithm": RANKINGS[config.get("ranking", "paper")],
                **adv.pg_conditions(config)}

    def train(self, ctx):
        cfg = ctx.config
        corpus = ctx.corpus
        ranker = Ranker(corpus.vocab_size, corpus.seq_len, cfg.ranker_size,
                        cfg.ranker_init).to(ctx.device)
        ranker_opt = torch.optim.Adam(ranker.parameters(), lr=cfg.ranker_lr)
        negatives_rng = ctx.rng("ranker_negatives", ctx.device)
        real_rng = ctx.rng("ranker_real_and_shuffle")
        reference_rng = ctx.rng("reward_references")
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

        generator = adv.start_from_mle(ctx, adv.Pretraining(
            PHASE, cfg.ranker_pretrain_rounds,
            lambda generator: ranker_round(generator, cfg.ranker_pretrain_epochs), parts,
            "ranker_loss"))

        def between(batch: int) -> dict:
            losses = [ranker_round(generator, cfg.ranker_epochs) for _ in range(cfg.d_steps)]
            return {"ranker_loss": losses[-1]} if losses else {}

        settings = adv.PolicyGradientSettings(
            batches=cfg.adv_batches, g_steps=cfg.g_steps, batch_size=cfg.adv_batch_size,
            n_rollouts=cfg.n_rollouts, lr=cfg.lr, grad_clip=cfg.grad_clip,
            rollout_update_rate=cfg.rollout_update_rate, eval_every=cfg.adv_eval_every,
            pg_loss=cfg.pg_loss)
        reward, across_batch = rank_reward(ranker, corpus.train, cfg, reference_rng)
        return adv.train_policy_gradient(
            ctx, generator, reward, settings, epoch_offset=cfg.pretrain_epochs,
            between=between, extra=parts, across_batch=across_batch)
