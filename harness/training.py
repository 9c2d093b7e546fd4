"""Training pieces shared by the methods that train the LSTM generator."""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from harness.api import Corpus
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
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), grad_clip)
        optimizer.step()
        total += loss.item() * batch.numel()
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
