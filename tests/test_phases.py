"""Training phases (``ctx.phase``): a curve point every k steps and after the last, a
checkpoint after every step that a new process resumes from, and a method started from
another (``Method.start``) in the caller's run with the global random state untouched."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import torch

from harness.api import RunContext
from tests.harness_tiny import ToyMethod


def context(run_dir: Path, config=None) -> RunContext:
    return RunContext(corpus=SimpleNamespace(name="toy"), config=config,
                      device=torch.device("cpu"), seed=0, profile="default", run_dir=run_dir,
                      evaluate_curve=lambda g, point: {}, log=logging.getLogger("test"),
                      show_progress=False)


def counting_parts() -> dict:
    counter = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(counter.weight)
    return {"counter": counter, "stream": torch.Generator().manual_seed(3)}


def take_steps(ctx: RunContext, parts: dict, stop_after: int | None = None) -> list[int]:
    """A 7-step phase recording every 3 steps; each step adds 1 to the counter's weight and
    draws from the stream. Stops (as if killed) before the checkpoint of ``stop_after``."""
    phase = ctx.phase("count", 7, parts, record_every=3)
    taken = []
    for step in phase:
        with torch.no_grad():
            parts["counter"].weight += 1
        torch.rand(1, generator=parts["stream"])
        phase.record(step=step + 1)
        taken.append(step)
        if step == stop_after:
            break
    return taken


def test_a_phase_records_every_k_steps_and_after_the_last(tmp_path):
    ctx = context(tmp_path)
    assert take_steps(ctx, counting_parts()) == list(range(7))
    assert [row["step"] for row in ctx.curve] == [3, 6, 7]


def test_a_killed_phase_resumes_where_its_checkpoint_left_it(tmp_path):
    whole, whole_parts = context(tmp_path / "whole"), counting_parts()
    take_steps(whole, whole_parts)
    killed = context(tmp_path / "killed")
    take_steps(killed, counting_parts(), stop_after=4)  # step 4 taken, its checkpoint not
    resumed, parts = context(tmp_path / "killed"), counting_parts()
    assert take_steps(resumed, parts) == [4, 5, 6]
    assert resumed.curve == whole.curve
    assert torch.equal(parts["counter"].weight, whole_parts["counter"].weight)
    assert torch.equal(parts["stream"].get_state(), whole_parts["stream"].get_state())


def test_another_phases_checkpoint_starts_this_phase_afresh(tmp_path):
    context(tmp_path).phase("before", 2, counting_parts()).save(epoch=1)
    ctx = context(tmp_path)
    assert ctx.resume_phase == "before"
    assert not ctx.phase("count", 7, counting_parts()).resumed


def test_a_started_method_trains_with_the_settings_given_and_leaves_the_random_state(tmp_path):
    seen = []

    def train(ctx):
        seen.append(ctx.config)
        return torch.rand(2)  # draws from the global state, which start() must restore

    method = ToyMethod("first", train, fields=[("epochs", int, 5), ("lr", float, 0.1)])
    ctx = context(tmp_path, config="the caller's settings")
    before = torch.get_rng_state()
    method.start(ctx, epochs=2)
    assert seen == [method.Config(epochs=2, lr=0.1)]
    assert ctx.config == "the caller's settings"
    assert torch.equal(torch.get_rng_state(), before)
