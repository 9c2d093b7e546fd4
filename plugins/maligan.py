"""MaliGAN (Che et al. 2017, arXiv 1702.07983): the MLE-pre-trained generator trained
towards the distribution the discriminator implies, by importance-weighted maximum
likelihood instead of a policy gradient on D's raw score.

If D is optimal against the generator p_theta', D(y) / (1 - D(y)) = p_data(y) / p_theta'(y),
so r_D(y) = D / (1 - D) re-weights the generator's own samples into samples of the data
distribution. The generator's update (the paper's Algorithm 1) for m samples y_1..y_m is

    grad = sum_j ( r_D(y_j) / sum_j' r_D(y_j') - b ) grad log p_theta(y_j),

self-normalised importance sampling with a baseline b (here b = 1/m, the mean normalised
weight, so a group's weights sum to zero).

The sequential version with mixed MLE training (the paper's Algorithm 2), which this module
runs: for each of n real sequences x_i, keep its first N tokens and sample the other T - N
tokens m times from the generator; normalise r_D over the m completions of the same x_i
(the variance reduction: samples sharing a prefix are compared with each other, not with
samples from elsewhere); train the kept real tokens by MLE. N starts at T - K and falls by
K ("stages") until it reaches 0, where the update is Algorithm 1 with groups of m samples:

    loss = -(1/n) sum_i [ sum_j w_ij log p(y_ij,>N | x_i,<=N) + log p(x_i,<=N) ],
    w_ij = r_D(y_ij) / sum_j' r_D(y_ij') - 1/m.

The discriminator is SeqGAN's CNN, trained as SeqGAN trains it: real rows against fresh,
freely generated sequences.

Peers differ: Texygen's maligan_basic normalises D itself (not D / (1 - D)) over a batch
of free samples; TextGAN-PyTorch normalises D / (1 - D) over a batch of free samples. Both
are Algorithm 1 only, without the real prefixes and the per-prefix groups.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import Method, hookimpl
from harness.config import require
from harness.generator import Decoder, LSTMGenerator, TeacherForced, sample_from_logits
from harness.training import GeneratorSettings, require_generator_settings, train_step
from harness_plugins import adversarial as adv


@hookimpl
def register_methods(register):
    register(MaliGan())


@dataclass
class MaliGanConfig(GeneratorSettings):
    pretrain_epochs: int = 8          # MLE pre-training (shared with the mle method's run)
    batch_size: int = 64              # MLE pre-training batch (shared with the mle run)
    lr: float = 0.01                  # generator Adam, both phases (the paper's optimiser is
                                      # not known to us; SeqGAN's, so the rows compare)
    grad_clip: float = 5.0            # generator gradient-norm clip, as SeqGAN's authors
    emb_dim: int = 32                 # the shared generator's sizes
    hidden_dim: int = 32
    lstm_biases: int = 2              # LSTM biases per gate: 2 as nn.LSTM, 1 as the authors'
                                      # LSTM (bias_hh zero and frozen)
    shuffle: bool = True              # MLE pre-training shuffles (see the mle method)
    eval_every: int = 5               # MLE epochs between curve points
    disc_size: str = "small"          # SeqGAN's CNN: "small" (CPU) or "paper" (1,720 filters)
    disc_lr: float = 1e-4             # discriminator Adam, as SeqGAN
    disc_l2: float = 0.2              # L2 on the discriminator's output layer, as SeqGAN
    disc_batch_size: int = 64
    disc_negatives: int = 2000        # generated sequences per discriminator round
    disc_pretrain_rounds: int = 2     # discriminator rounds before adversarial training
    disc_epochs: int = 1              # epochs per discriminator round
    adv_batches: int = 10             # adversarial batches (generator updates + D rounds)
    prefixes: int = 32                # n: real sequences per generator update
    samples_per_prefix: int = 16      # m: completions of each real prefix, the group over
                                      # which r_D is normalised (m = 1 would give every
                                      # sample weight 1 - 1 = 0: at least 2)
    step_size: int = 5                # K: the generated suffix grows by K tokens a stage,
                                      # N = T - K, T - 2K, ..., 0 real tokens kept (Algorithm
                                      # 2); K >= T is Algorithm 1 (MaliGAN-basic) throughout
    stage_batches: int = 2            # adversarial batches per stage; after ceil(T / K)
                                      # stages N stays 0 for the remaining batches (length
                                      # 20: N = 0 from batch 7 of 10; obama's 40: never)
    g_steps: int = 1                  # generator updates per adversarial batch
    d_steps: int = 1                  # discriminator rounds per adversarial batch
    adv_eval_every: int = 5           # adversarial batches between curve points

    def __post_init__(self):
        require(self, positive=("grad_clip",), choices={"disc_size": ("small", "paper")},
                at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every",
                              "disc_batch_size", "disc_negatives", "prefixes", "step_size",
                              "stage_batches", "g_steps", "adv_eval_every"))
        require_generator_settings(self)
        if self.samples_per_prefix < 2:
            raise ValueError(f"samples_per_prefix must be at least 2, not "
                             f"{self.samples_per_prefix}")


# The MaliGAN paper's own hyper-parameters (n, m, K, optimiser, batches per stage) were
# not readable from the sources at hand (only its abstract), so this profile is the SeqGAN
# paper's adversarial setting as seqgan's "paper" profile has it (LantaoYu/SeqGAN
# sequence_gan.py: 120 MLE epochs, 50 discriminator rounds of 3 epochs on 10,000
# negatives, 200 adversarial batches with 5 discriminator rounds each), so the two rows
# compare. The 200 batches are spread over the sequential schedule (ours, not the
# paper's: 40 batches a stage, N = 15, 10, 5 real tokens, then 0 from batch 160 at length 20).
PAPER = {"pretrain_epochs": 120, "disc_size": "paper", "disc_negatives": 10_000,
         "disc_pretrain_rounds": 50, "disc_epochs": 3, "adv_batches": 200, "d_steps": 5,
         "stage_batches": 40, "shuffle": False}  # MLE: the paper profiles' file order


def kept_tokens(batch: int, seq_len: int, step_size: int, stage_batches: int) -> int:
    """N, the real tokens kept before adversarial batch ``batch`` (0-based): T - K in the
    first stage, K fewer each stage after, never below 0."""
    return max(seq_len - step_size * (1 + batch // stage_batches), 0)


@torch.no_grad()
def complete_prefixes(generator: Decoder, real: torch.Tensor, kept: int, samples: int,
                      rng: torch.Generator | None = None) -> torch.Tensor:
    """[n * m, T]: each of the n ``real`` rows' first ``kept`` tokens, then the rest sampled
    by the generator, ``samples`` = m times; rows i*m .. i*m + m - 1 complete row i. The
    LSTM reads the prefixes in one call; any other ``Decoder`` steps through them."""
    tokens = real.to(generator.device).repeat_interleave(samples, dim=0)
    length = tokens.shape[1]
    if kept >= length:
        return tokens
    if not isinstance(generator, LSTMGenerator):
        return _complete_by_steps(generator, real.to(generator.device), tokens, kept, samples, rng)
    # Read start, x_1..x_N once per real row; its m completions start from that state.
    logits, (h, c) = generator(generator.shifted_inputs(real.to(generator.device))[:, :kept + 1])
    logits = logits[:, -1].repeat_interleave(samples, dim=0)
    state = (h.repeat_interleave(samples, dim=1), c.repeat_interleave(samples, dim=1))
    for t in range(kept, length):
        tokens[:, t] = sample_from_logits(logits, generator=rng)[0]
        if t + 1 < length:
            out, state = generator(tokens[:, t:t + 1], state)
            logits = out[:, -1]
    return tokens


def _complete_by_steps(generator: Decoder, real: torch.Tensor, tokens: torch.Tensor, kept: int,
                       samples: int, rng: torch.Generator | None) -> torch.Tensor:
    """``complete_prefixes`` through the decoding contract: read start, x_1..x_N, pick each
    state m times over, then draw the rest into ``tokens``."""
    inputs, state = generator.shifted_inputs(real), generator.start_state(len(real))
    for t in range(kept + 1):
        logits, state = generator.step(inputs[:, t], state)
    rows = torch.arange(len(real), device=real.device).repeat_interleave(samples)
    logits, state = logits[rows], generator.select_state(state, rows)
    for t in range(kept, tokens.shape[1]):
        tokens[:, t] = sample_from_logits(logits, generator=rng)[0]
        if t + 1 < tokens.shape[1]:
            logits, state = generator.step(tokens[:, t], state)
    return tokens


@torch.no_grad()
def log_odds(disc: adv.Discriminator, tokens: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """log r_D = log D(y) / (1 - D(y)) [B] in eval mode: the difference of D's two logits,
    which stays finite where D(y) rounds to 1 and D / (1 - D) would not."""
    was_training = disc.training
    disc.eval()
    try:
        device = disc.output.weight.device
        logits = torch.cat([disc(tokens[i:i + batch].to(device))
                            for i in range(0, len(tokens), batch)])
    finally:
        disc.train(was_training)
    return logits[:, 1] - logits[:, 0]


def importance_weights(log_r: torch.Tensor) -> torch.Tensor:
    """w [n, m] = r_D / sum over the group of r_D - 1/m, for log r_D [n, m] (a group a row).

    r_j / sum_j' r_j' is a softmax of log r over the group; the baseline 1/m is the mean
    normalised weight, so samples better than their group's average are pushed up."""
    return torch.softmax(log_r, dim=1) - 1.0 / log_r.shape[1]


def maligan_loss(generator: TeacherForced, sequences: torch.Tensor, weights: torch.Tensor,
                 kept: int) -> torch.Tensor:
    """-(1/n) sum_i [sum_j w_ij log p(suffix_ij | prefix_i) + log p(prefix_i)] for
    ``sequences`` [n * m, T] grouped as ``complete_prefixes`` makes them and ``weights``
    [n, m]: the weighted generated suffixes, plus MLE on the real prefixes (all m rows of a
    group hold the same prefix, so their mean is that prefix's log-likelihood)."""
    n, m = weights.shape
    log_probs = generator.token_log_probs(sequences)
    suffix = log_probs[:, kept:].sum(dim=1).view(n, m)
    prefix = log_probs[:, :kept].sum(dim=1).view(n, m)
    return -((weights.to(suffix.device) * suffix).sum() + prefix.mean(dim=1).sum()) / n


class MaliGan(Method):
    """MaliGAN: MLE pre-training, then generator updates weighted by the normalised D/(1-D)
    over completions of real prefixes, against SeqGAN's CNN discriminator."""

    name = "maligan"
    best_so_far_phase = adv.PHASE
    Config = MaliGanConfig
    profiles = {"paper": PAPER}
    starts_from = ("mle",)  # executors run the MLE run first and this run reuses its generator

    def train(self, ctx):
        cfg = ctx.config
        corpus = ctx.corpus
        discriminator = adv.DiscriminatorRounds(ctx, cfg)
        generator = adv.start_from_mle(ctx, adv.Pretraining(
            "discriminator", cfg.disc_pretrain_rounds, discriminator, discriminator.parts,
            "disc_loss"))
        optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.lr)
        sampling = ctx.rng("maligan_sampling", ctx.device)
        picking = ctx.rng("real_prefixes")
        phase = ctx.phase(adv.PHASE, cfg.adv_batches,
                          {"generator": generator, "optimizer": optimizer,
                           "sampling_rng": sampling, "prefix_rng": picking,
                           **discriminator.parts},
                          unit="batch", record_every=cfg.adv_eval_every,
                          desc=f"maligan {corpus.name}")
        for batch in phase:
            kept = kept_tokens(batch, corpus.seq_len, cfg.step_size, cfg.stage_batches)
            for _ in range(cfg.g_steps):
                real = corpus.train[torch.randint(len(corpus.train), (cfg.prefixes,),
                                                  generator=picking)]
                sequences = complete_prefixes(generator, real, kept, cfg.samples_per_prefix,
                                              sampling)
                log_r = log_odds(discriminator.disc, sequences)
                weights = importance_weights(log_r.view(cfg.prefixes, cfg.samples_per_prefix))
                generator.train()
                loss = train_step(maligan_loss(generator, sequences, weights, kept), optimizer,
                                  "the MaliGAN loss", generator.parameters(), cfg.grad_clip)
            losses = [discriminator(generator) for _ in range(cfg.d_steps)]
            info = {"disc_loss": losses[-1]} if losses else {}
            phase.record(generator, phase=adv.PHASE, epoch=cfg.pretrain_epochs + batch + 1,
                         g_loss=loss, real_tokens=kept,
                         mean_disc_prob=torch.sigmoid(log_r).mean().item(), **info)
        return generator
