"""The policy-gradient loop that SeqGAN and PG-BLEU share; only the reward differs.

Each adversarial batch: sample sequences from the generator, reward every token by
Monte-Carlo rollout scored by ``score`` (the discriminator, or BLEU), take one REINFORCE
step, move the rollout policy towards the generator, then whatever the method does
between batches (SeqGAN: train the discriminator). The whole state is checkpointed after
every batch, so a killed run resumes where it stopped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from harness.api import RunContext
from harness.generator import LSTMGenerator
from harness.rollout import Rollout
from harness.training import policy_gradient_step, rng_states, set_rng_states

Score = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PolicyGradientSettings:
    batches: int            # adversarial batches (the authors' TOTAL_BATCH)
    g_steps: int            # generator updates per batch
    batch_size: int         # sequences per generator update
    n_rollouts: int         # Monte-Carlo completions per prefix
    lr: float               # Adam, for the adversarial generator updates
    grad_clip: float
    rollout_update_rate: float
    eval_every: int         # batches between learning-curve points


def train_policy_gradient(ctx: RunContext, generator: LSTMGenerator, score: Score,
                          settings: PolicyGradientSettings, epoch_offset: int,
                          between: Callable[[int], dict] | None = None,
                          extra: dict[str, Any] | None = None,
                          saved: dict | None = None) -> LSTMGenerator:
    """Adversarial training; ``extra`` maps names to objects with state_dict() to
    checkpoint alongside (e.g. the discriminator); ``saved`` resumes from a checkpoint."""
    extra = extra or {}
    optimizer = torch.optim.Adam(generator.parameters(), lr=settings.lr)
    rollout = Rollout(generator, settings.rollout_update_rate)
    rng = ctx.rng("policy_gradient_sampling", 1, ctx.device)
    first = 0
    if saved is not None:
        generator.load_state_dict(saved["generator"])
        optimizer.load_state_dict(saved["optimizer"])
        rollout.load_state_dict(saved["rollout"])
        for name, obj in extra.items():
            obj.load_state_dict(saved[name])
        rng.set_state(saved["sampling_rng"])
        set_rng_states(saved["rng"])
        first = saved["batch"]
    for batch in ctx.progress(range(first, settings.batches), total=settings.batches - first,
                              desc=f"adversarial {ctx.corpus.name}"):
        for _ in range(settings.g_steps):
            sequences = generator.sample(settings.batch_size, generator=rng)
            rewards = rollout.rewards(sequences, settings.n_rollouts, score, generator=rng)
            loss = policy_gradient_step(generator, optimizer, sequences, rewards,
                                        settings.grad_clip)
        rollout.update(generator)
        info = between(batch) if between is not None else {}
        if (batch + 1) % settings.eval_every == 0 or batch + 1 == settings.batches:
            ctx.record(generator, phase="adversarial", epoch=epoch_offset + batch + 1,
                       pg_loss=loss, mean_reward=rewards.mean().item(), **info)
        ctx.save_checkpoint({
            "phase": "adversarial", "batch": batch + 1, "generator": generator.state_dict(),
            "optimizer": optimizer.state_dict(), "rollout": rollout.state_dict(),
            "sampling_rng": rng.get_state(), "rng": rng_states(),
            **{name: obj.state_dict() for name, obj in extra.items()}})
    return generator
