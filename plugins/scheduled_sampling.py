"""Scheduled sampling (Bengio et al. 2015): teacher forcing that feeds the model's own
samples more and more often as training goes on.

Where the paper's text and the authors' code (LantaoYu/SeqGAN @4152436, schedule_sampling/)
differ:

| | the paper's text | the authors' code | ours: default, paper | ours: authors |
| --- | --- | --- | --- | --- |
| the coin between true and sampled token | per token | drawn once when the graph is built (0.3975 with their seed, below every rate of their schedule: only true tokens fed) | per token | per token |
| oracle | SeqGAN's | drawn afresh in TensorFlow (seed 66) | SeqGAN's | SeqGAN's (the figure: not comparable) |
| LSTM gate biases | not stated | one per gate, N(0, 0.1) (model.py 152-173) | two (``nn.LSTM``'s) | one (``lstm_biases=1``) |
| batch order | not stated | the file in order, int(N / 64) whole batches (gen_dataloader.py) | shuffled, every row | the file in order, whole batches |
| NLL-oracle kept | the result | the best of every epoch, on fresh samples (schedule_sampling.py 128-130) | final, the best labelled | the same, every point on fresh samples |

So their SS row is MLE trained longer; ``authors`` keeps real scheduled sampling with their
schedule, and docs/reproduction.md compares their figure with our MLE curve.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness import Method, hookimpl
from harness.config import require
from harness.generator import Decoder, draw_inverse_cdf
from harness.training import (GeneratorSettings, build_generator, epoch_order,
                              require_generator_settings, train_step)


@hookimpl
def register_methods(register):
    register(ScheduledSampling())


@dataclass
class ScheduledSamplingConfig(GeneratorSettings):
    # Bengio et al. 2015, with the schedule of the authors' schedule_sampling.py
    # (LantaoYu/SeqGAN @4152436) in the paper profiles: 300 epochs from scratch, the rate
    # of true tokens starting at 1.0 and lowered by 0.002 before every epoch. Their coin
    # was drawn once when the graph was built (0.3975 with their seed, below every rate of
    # that schedule, so their SS only ever fed true tokens); ours is drawn for every token.
    epochs: int = 8             # passes over the training set (paper profile: 300)
    rate_decay: float = 0.02    # drop of the true-token rate per epoch (paper profile: 0.002)
    min_rate: float = 0.0       # the true-token rate never falls below this
    batch_size: int = 64        # as the authors
    lr: float = 0.01            # Adam (paper profile: 0.001, Adam's default, as the authors)
    grad_clip: float = 5.0      # gradient-norm clip, as the authors
    emb_dim: int = 32           # the shared generator's sizes, as the authors
    hidden_dim: int = 32
    lstm_biases: int = 2        # LSTM biases per gate: 2 as nn.LSTM, 1 as the authors' LSTM
                                # (bias_hh zero and frozen)
    shuffle: bool = True        # shuffle the training set each epoch (the authors: no)
    eval_every: int = 5         # epochs between learning-curve points (the authors: 1)

    def __post_init__(self):
        require(self, at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every"),
                positive=("grad_clip",), fractions=("rate_decay", "min_rate"))
        require_generator_settings(self)


def true_token_rate(epoch: int, cfg: ScheduledSamplingConfig) -> float:
    """The probability of feeding the true token during ``epoch`` (0-based)."""
    return max(cfg.min_rate, 1.0 - cfg.rate_decay * (epoch + 1))


def scheduled_sampling_loss(generator: Decoder, batch: torch.Tensor, rate: float,
                            rng: torch.Generator) -> torch.Tensor:
    """Cross-entropy of a step-by-step pass (any ``Decoder``'s ``step``) where every next
    input is, independently per token, the true token (probability ``rate``) or one sampled
    from the model."""
    inputs, state, logits = generator.shifted_inputs(batch), generator.start_state(len(batch)), []
    token = inputs[:, 0]
    for t in range(batch.shape[1]):
        step_logits, state = generator.step(token, state)
        logits.append(step_logits)
        if t + 1 < batch.shape[1]:
            token = next_inputs(step_logits.detach(), batch[:, t], rate, rng)
    return F.cross_entropy(torch.stack(logits, 1).flatten(0, 1), batch.flatten())


def next_inputs(logits: torch.Tensor, true_tokens: torch.Tensor, rate: float,
                rng: torch.Generator) -> torch.Tensor:
    """Per row, the true token (probability ``rate``) or one drawn from ``logits``.

    The random numbers are those of ``sample_from_logits`` (one uniform per row) and then
    the coins, in that order, so the tokens are exactly theirs; but on the CPU only the rows
    that take a sampled token pay for the softmax over the vocabulary: at the default
    schedule's rates (0.98 to 0.84) that is a few rows in a batch. A GPU computes every row:
    picking the rows would cost it a wait for the device at every step."""
    uniforms = torch.rand(len(logits), 1, device=logits.device, generator=rng)
    use_true = torch.rand(len(logits), device=logits.device, generator=rng) < rate
    if logits.device.type != "cpu":
        rows = slice(None)
    else:
        rows = (~use_true).nonzero().squeeze(1)
        if len(rows) == 0:
            return true_tokens
    sampled = true_tokens.clone()
    sampled[rows] = draw_inverse_cdf(logits[rows], uniforms[rows], None, log_probs=False)[0]
    return torch.where(use_true, true_tokens, sampled)


class ScheduledSampling(Method):
    """Scheduled sampling: teacher forcing that feeds back more and more own samples."""

    name = "ss"
    best_so_far_phase = "ss"  # schedule_sampling.py 128-130 keeps the best of every epoch
    Config = ScheduledSamplingConfig
    profiles = {"paper": {"epochs": 300, "rate_decay": 0.002, "lr": 0.001},
                # schedule_sampling.py @4152436: Adam() at its default rate, the file in
                # order, NLL-oracle after every epoch (the best one kept: see the table);
                # one bias per LSTM gate (schedule_sampling/model.py lines 152-173).
                "authors": {"epochs": 300, "rate_decay": 0.002, "lr": 0.001,
                                 "shuffle": False, "eval_every": 1, "lstm_biases": 1}}

    def train(self, ctx):
        cfg = ctx.config
        generator = build_generator(ctx.corpus, cfg, ctx.device)
        optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.lr)
        rng = ctx.rng("ss_sampling", ctx.device)
        phase = ctx.phase("train", cfg.epochs, {"generator": generator, "optimizer": optimizer,
                                                "sampling_rng": rng},
                          record_every=cfg.eval_every, desc=f"ss {ctx.corpus.name}")
        if not phase.resumed:
            ctx.record(generator, phase="ss", epoch=0, true_token_rate=1.0)
        data = ctx.corpus.train
        for epoch in phase:
            rate = true_token_rate(epoch, cfg)
            generator.train()
            order = epoch_order(len(data), cfg.batch_size, cfg.shuffle)
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                batch = data[order[start:start + cfg.batch_size]].to(ctx.device)
                loss = scheduled_sampling_loss(generator, batch, rate, rng)
                total += train_step(loss, optimizer, "the scheduled-sampling loss",
                                    generator.parameters(), cfg.grad_clip) * len(batch)
            phase.record(generator, phase="ss", epoch=epoch + 1, true_token_rate=rate,
                         train_nll=total / len(order))
        return generator
