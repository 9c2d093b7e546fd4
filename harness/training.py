"""Training pieces shared by the methods that train the LSTM generator."""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from harness import store
from harness.api import Corpus, RunContext, check_finite
from harness.generator import LSTMGenerator


def new_generator(corpus: Corpus, emb_dim: int, hidden_dim: int,
                  device: torch.device) -> LSTMGenerator:
    return LSTMGenerator(corpus.vocab_size, corpus.seq_len, emb_dim, hidden_dim,
                         start_token=corpus.start_token).to(device)


def mle_epoch(generator: LSTMGenerator, data: torch.Tensor, optimizer: torch.optim.Optimizer,
              batch_size: int, grad_clip: float, rng: torch.Generator | None) -> float:
    """One teacher-forced pass over ``data`` (shuffled when ``rng`` is given); mean token NLL."""
    generator.train()
    order = torch.randperm(len(data), generator=rng) if rng is not None else torch.arange(len(data))
    total, tokens = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = data[order[start:start + batch_size]].to(generator.device)
        logits, _ = generator(generator.shifted_inputs(batch))
        loss = F.cross_entropy(logits.flatten(0, 1), batch.flatten())
        value = loss.item()
        check_finite(value, "the MLE loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), grad_clip)
        optimizer.step()
        total += value * batch.numel()
        tokens += batch.numel()
    return total / tokens


def rng_states() -> dict:
    """Every global random state, for a checkpoint that resumes exactly."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(),
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class MleSettings:
    """What determines an MLE-trained generator; equal settings give a reusable result."""

    epochs: int
    batch_size: int
    lr: float
    grad_clip: float
    emb_dim: int
    hidden_dim: int
    shuffle: bool
    eval_every: int

    @classmethod
    def of(cls, config, **renamed) -> "MleSettings":
        """Pick the MLE settings out of a method's config (``renamed`` maps field -> attr)."""
        return cls(**{f.name: getattr(config, renamed.get(f.name, f.name)) for f in fields(cls)})


def pretrain_mle(ctx: RunContext, settings: MleSettings) -> LSTMGenerator:
    """MLE-train the shared generator, or reuse the result of an earlier run that trained
    with the same data set, seed and settings (the MLE run and SeqGAN's pre-training
    are then the very same generator, trained once)."""
    key = json.dumps({"settings": asdict(settings), "corpus": ctx.corpus.info,
                      "dataset": ctx.corpus.name, "seed": ctx.seed}, sort_keys=True, default=str)
    cached = ctx.shared_dir / f"mle-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
    generator = new_generator(ctx.corpus, settings.emb_dim, settings.hidden_dim, ctx.device)
    if settings.shuffle:
        ctx.rngs["mle_shuffle"] = ctx.seed  # _train_mle's order; recorded when reused too
    if cached.exists():
        saved = torch.load(cached, map_location=ctx.device, weights_only=False)
        generator.load_state_dict(saved["generator"])
        ctx.curve.clear()  # a resumed run may hold the rows already: pre-training comes first
        for row in saved["curve"]:
            ctx.record(**row)
        ctx.log.info("reusing the MLE pre-training in %s", cached)
        return generator
    # Whatever follows (dropout in SeqGAN's discriminator) draws from the global random
    # state: leave it as it was, so a run that trains the pre-training here and one that
    # reuses it (or resumes after it) go on identically.
    states = rng_states()
    _train_mle(ctx, generator, settings)
    set_rng_states(states)
    store.write_torch(cached, {"generator": generator.state_dict(), "key": key,
                               "curve": [row for row in ctx.curve if row.get("phase") == "mle"]})
    return generator


def _train_mle(ctx: RunContext, generator: LSTMGenerator, settings: MleSettings) -> None:
    optimizer = torch.optim.Adam(generator.parameters(), lr=settings.lr)
    shuffle_rng = torch.Generator().manual_seed(ctx.seed) if settings.shuffle else None
    first_epoch = 0
    saved = ctx.load_checkpoint()
    if saved is not None and saved.get("phase") == "mle":
        generator.load_state_dict(saved["generator"])
        optimizer.load_state_dict(saved["optimizer"])
        if shuffle_rng is not None:
            shuffle_rng.set_state(saved["shuffle_rng"])
        set_rng_states(saved["rng"])
        first_epoch = saved["epoch"]
    else:
        ctx.record(generator, phase="mle", epoch=0)
    for epoch in ctx.progress(range(first_epoch, settings.epochs),
                              total=settings.epochs - first_epoch, desc=f"mle {ctx.corpus.name}"):
        loss = mle_epoch(generator, ctx.corpus.train, optimizer, settings.batch_size,
                         settings.grad_clip, shuffle_rng)
        if (epoch + 1) % settings.eval_every == 0 or epoch + 1 == settings.epochs:
            ctx.record(generator, phase="mle", epoch=epoch + 1, train_nll=loss)
        ctx.save_checkpoint({
            "phase": "mle", "generator": generator.state_dict(),
            "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "rng": rng_states(),
            "shuffle_rng": shuffle_rng.get_state() if shuffle_rng is not None else None})


def policy_gradient_step(generator: LSTMGenerator, optimizer: torch.optim.Optimizer,
                         sequences: torch.Tensor, rewards: torch.Tensor, grad_clip: float) -> float:
    """One REINFORCE update: loss = -sum_t log G(y_t | y_<t) * Q_t, averaged over the batch."""
    generator.train()
    log_probs = generator.token_log_probs(sequences)
    loss = -(log_probs * rewards.to(log_probs.device)).sum(dim=1).mean()
    check_finite(loss.item(), "the policy-gradient loss")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(generator.parameters(), grad_clip)
    optimizer.step()
    return loss.item()
