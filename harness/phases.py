"""A run's training phases: their parts checkpointed after every step and resumed
together, and when a phase records a learning-curve point."""
from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch

from harness.errors import HarnessError


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


def _state_of(part: Any) -> Any:
    return part.get_state() if isinstance(part, torch.Generator) else part.state_dict()


def _restore(part: Any, state: Any) -> None:
    if isinstance(part, torch.Generator):
        part.set_state(state)
    else:
        part.load_state_dict(state)


class Phase:
    """One phase of a run (``ctx.phase``): ``steps`` steps (epochs, batches, rounds:
    ``unit``), a checkpoint of every part (anything with ``state_dict``, or a
    ``torch.Generator``) and of every global random state after each step, and a curve
    point every ``record_every`` steps and after the last.

    A run resumes the phase its checkpoint holds: that phase restores its parts and goes on
    from the saved step; the others start afresh (a method with several phases skips those
    before the saved one itself, by ``ctx.resume_phase``)."""

    def __init__(self, ctx: Any, name: str, steps: int, parts: dict[str, Any], *,
                 record_every: int = 1, unit: str = "epoch", desc: str | None = None):
        self.ctx, self.name, self.steps, self.parts = ctx, name, steps, parts
        self.record_every, self.unit = record_every, unit
        self.desc = desc or f"{name} {ctx.corpus.name}"
        self.step: int | None = None  # the step being taken
        self.first = self._resume(ctx.resume_point)

    @property
    def resumed(self) -> bool:
        """Whether this phase goes on from the run's checkpoint."""
        return self.first is not None

    def _resume(self, saved: dict | None) -> int | None:
        """Restore every part from ``saved`` when it holds this phase; the step to go on
        from, or None for a fresh start."""
        if saved is None or saved.get("phase") != self.name:
            return None
        try:
            for name, part in self.parts.items():
                _restore(part, saved[name])
            set_rng_states(saved["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
            raise self._invalid(f"its {self.name} state does not fit this run: "
                                f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
        first = saved.get(self.unit)
        if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= self.steps:
            raise self._invalid(f"its {self.unit} is {first!r}, not one of 0 to {self.steps}, "
                                f"the {self.unit}s this run's settings plan")
        self.ctx.restore_curve()
        return first

    def _invalid(self, problem: str) -> HarnessError:
        return HarnessError(f"{self.ctx.checkpoint_path} is not a valid checkpoint ({problem}); "
                            f"delete it to start the run over")

    def save(self, **position: Any) -> None:
        self.ctx.save_checkpoint({"phase": self.name, **position, "rng": rng_states(),
                                  **{name: _state_of(part) for name, part in self.parts.items()}})

    def __iter__(self) -> Iterator[int]:
        """0-based step numbers from where the phase resumes, a checkpoint after each."""
        first = self.first or 0
        for step in self.ctx.progress(range(first, self.steps), total=self.steps - first,
                                      desc=self.desc):
            self.step = step
            yield step
            self.save(**{self.unit: step + 1})

    def at_curve_point(self) -> bool:
        """Whether the step being taken ends with a curve point: every ``record_every``
        steps and the last (the one place that decides it)."""
        done = self.step + 1
        return done % self.record_every == 0 or done == self.steps

    def record(self, generator: Any = None, **values: Any) -> dict | None:
        """``ctx.record`` at a curve point (``at_curve_point``); None between them."""
        return self.ctx.record(generator, **values) if self.at_curve_point() else None
