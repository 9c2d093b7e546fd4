"""Scheduled sampling (Bengio et al. 2015): teacher forcing that feeds the model's own
samples more and more often as training goes on."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness import check_finite, hookimpl
from harness.config import require
from harness.generator import LSTMGenerator, sample_from_logits
from harness.training import new_generator, rng_states, set_rng_states


@hookimpl
def register_methods(register):
    register(ScheduledSampling())


@dataclass
class ScheduledSamplingConfig:
    # The authors' schedule_sampling.py (LantaoYu/SeqGAN @4152436): 300 epochs from scratch,
    # the rate of true tokens starting at 1.0 and lowered by 0.002 before every epoch,
    # Adam at its default rate. Their coin was drawn once when the graph was built; ours is
    # drawn for every token.
    epochs: int = 15            # passes over the training set (paper profile: 300)
    rate_decay: float = 0.02    # drop of the true-token rate per epoch (paper profile: 0.002)
    min_rate: float = 0.0       # the true-token rate never falls below this
    batch_size: int = 64        # as the authors
    lr: float = 0.01            # Adam (paper profile: 0.001, Adam's default, as the authors)
    grad_clip: float = 5.0      # gradient-norm clip, as the authors
    emb_dim: int = 32           # the shared generator's sizes, as the authors
    hidden_dim: int = 32
    eval_every: int = 5         # epochs between learning-curve points

    def __post_init__(self):
        require(self, at_least_one=("batch_size", "emb_dim", "hidden_dim", "eval_every"),
                positive=("grad_clip",), fractions=("rate_decay", "min_rate"))


def true_token_rate(epoch: int, cfg: ScheduledSamplingConfig) -> float:
    """The probability of feeding the true token during ``epoch`` (0-based)."""
    return max(cfg.min_rate, 1.0 - cfg.rate_decay * (epoch + 1))


def scheduled_sampling_loss(generator: LSTMGenerator, batch: torch.Tensor, rate: float,
                            rng: torch.Generator) -> torch.Tensor:
    """Cross-entropy of a step-by-step pass where every next input is, independently per
    token, the true token (probability ``rate``) or one sampled from the model."""
    inputs, state, logits = generator.shifted_inputs(batch), None, []
    token = inputs[:, :1]
    for t in range(batch.shape[1]):
        step_logits, state = generator(token, state)
        logits.append(step_logits[:, 0])
        if t + 1 < batch.shape[1]:
            sampled, _ = sample_from_logits(step_logits[:, 0].detach(), generator=rng)
            use_true = torch.rand(len(batch), generator=rng, device=batch.device) < rate
            token = torch.where(use_true, batch[:, t], sampled).unsqueeze(1)
    return F.cross_entropy(torch.stack(logits, 1).flatten(0, 1), batch.flatten())


class ScheduledSampling:
    """Scheduled sampling: teacher forcing that feeds back more and more own samples."""

    name = "ss"
    Config = ScheduledSamplingConfig
    profiles = {"paper": {"epochs": 300, "rate_decay": 0.002, "lr": 0.001}}

    def train(self, ctx):
        cfg = ctx.config
        generator = new_generator(ctx.corpus, cfg.emb_dim, cfg.hidden_dim, ctx.device)
        optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.lr)
        rng = ctx.rng("ss_sampling", 0, ctx.device)
        first_epoch = 0
        if (saved := ctx.load_checkpoint()) is not None:
            generator.load_state_dict(saved["generator"])
            optimizer.load_state_dict(saved["optimizer"])
            rng.set_state(saved["sampling_rng"])
            set_rng_states(saved["rng"])
            first_epoch = saved["epoch"]
        else:
            ctx.record(generator, phase="ss", epoch=0, true_token_rate=1.0)
        data = ctx.corpus.train
        for epoch in ctx.progress(range(first_epoch, cfg.epochs), total=cfg.epochs - first_epoch,
                                  desc=f"ss {ctx.corpus.name}"):
            rate = true_token_rate(epoch, cfg)
            generator.train()
            order = torch.randperm(len(data))
            total = 0.0
            for start in range(0, len(data), cfg.batch_size):
                batch = data[order[start:start + cfg.batch_size]].to(ctx.device)
                loss = scheduled_sampling_loss(generator, batch, rate, rng)
                check_finite(loss.item(), "the scheduled-sampling loss")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(generator.parameters(), cfg.grad_clip)
                optimizer.step()
                total += loss.item() * len(batch)
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                ctx.record(generator, phase="ss", epoch=epoch + 1, true_token_rate=rate,
                           train_nll=total / len(data))
            ctx.save_checkpoint({"generator": generator.state_dict(), "epoch": epoch + 1,
                                 "optimizer": optimizer.state_dict(), "rng": rng_states(),
                                 "sampling_rng": rng.get_state()})
        return generator
