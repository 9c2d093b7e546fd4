"""Training pieces every method may use: one optimisation step, one teacher-forced
epoch of the shared generator, and one way to checkpoint and resume."""
from __future__ import annotations

import random
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from harness.api import Corpus, HarnessError, RunContext, check_finite
from harness.generator import LSTMGenerator


def new_generator(corpus: Corpus, emb_dim: int, hidden_dim: int,
                  device: torch.device) -> LSTMGenerator:
    return LSTMGenerator(corpus.vocab_size, corpus.seq_len, emb_dim, hidden_dim,
                         start_token=corpus.start_token).to(device)


def train_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, what: str,
               parameters: Iterable[torch.Tensor] | None = None,
               grad_clip: float | None = None) -> float:
    """One update: check the loss is finite (else ``Diverged`` naming ``what``), back-
    propagate, clip the gradient norm of ``parameters`` to ``grad_clip``, step."""
    value = loss.item()
    check_finite(value, what)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step()
    return value


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
        total += train_step(loss, optimizer, "the MLE loss", generator.parameters(),
                            grad_clip) * batch.numel()
        tokens += batch.numel()
    return total / tokens


# --- random states ----------------------------------------------------------------------

def rng_states() -> dict:
    """Every global random state as tensors and plain values (a checkpoint loads with
    ``weights_only``), for a checkpoint that resumes exactly."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(),
              "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                        "position": position, "has_gauss": has_gauss, "gauss": gauss},
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # The current GPU's state only: a resumed run may be given another GPU of the
        # pool (--jobs), and it is this stream, not that GPU's, which it continues.
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    numpy = states["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32),
                         numpy["position"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


# --- checkpoints ------------------------------------------------------------------------

def _state_of(part: Any) -> Any:
    return part.get_state() if isinstance(part, torch.Generator) else part.state_dict()


def _restore(part: Any, state: Any) -> None:
    if isinstance(part, torch.Generator):
        part.set_state(state)
    else:
        part.load_state_dict(state)


class Checkpoint:
    """The parts of a training phase — modules, optimisers, random streams (anything with
    ``state_dict`` or a ``torch.Generator``) — saved together with every global random
    state and the phase's position, and restored together.

    ``phase`` names the phase: a method with several phases resumes the one the
    checkpoint holds (``restore`` returns None for another phase's checkpoint)."""

    def __init__(self, ctx: RunContext, phase: str, **parts: Any):
        self.ctx, self.phase, self.parts = ctx, phase, parts
        self.position: dict | None = None  # what resume() found

    def save(self, **position: Any) -> None:
        self.ctx.save_checkpoint({"phase": self.phase, **position, "rng": rng_states(),
                                  **{name: _state_of(part) for name, part in self.parts.items()}})

    def resume(self, saved: dict | None = None) -> dict | None:
        """Restore every part from ``saved`` (default: the run's checkpoint) when it is
        this phase's; the saved state with its position, or None for a fresh start."""
        saved = self.ctx.load_checkpoint() if saved is None else saved
        if saved is None or saved.get("phase") != self.phase:
            return None
        try:
            for name, part in self.parts.items():
                _restore(part, saved[name])
            set_rng_states(saved["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
            raise self._invalid(f"its {self.phase} state does not fit this run: "
                                f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
        self.position = saved
        return saved

    def _invalid(self, problem: str) -> HarnessError:
        return HarnessError(f"{self.ctx.checkpoint_path} is not a valid checkpoint ({problem}); "
                            f"delete it to start the run over")

    def loop(self, total: int, desc: str, unit: str = "epoch") -> Iterator[int]:
        """0-based step numbers (epochs, batches, rounds: ``unit``) from where ``resume``
        left off, with a checkpoint after each step."""
        first = self.position.get(unit) if self.position else 0
        if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= total:
            raise self._invalid(f"its {unit} is {first!r}, not one of 0 to {total}, the "
                                f"{unit}s this run's settings plan")
        for step in self.ctx.progress(range(first, total), total=total - first, desc=desc):
            yield step
            self.save(**{unit: step + 1})
