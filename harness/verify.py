"""Re-run a finished run from what its directory records and compare the metrics: the
check that a committed reference result is what the code at its commit produces.

On the CPU, a run repeated with the same seed, profile, settings, sweep and number of
torch threads gives bit-for-bit the same metrics; on a GPU, kernels may reduce in another
order, so metrics must agree within ``GPU_TOLERANCE`` (relative).
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import store
from harness.api import HarnessError
from harness.runner import RunOptions, RunSpec, run_one

TIMINGS = ("train_seconds", "eval_seconds", "judge_lm_seconds")
GPU_TOLERANCE = 1e-3


@dataclass
class Comparison:
    metric: str
    recorded: float | None
    repeated: float | None
    matches: bool


def verify(run_dir: Path, mirror: str | None = None, device: str | None = None
           ) -> list[Comparison]:
    """Re-run the finished run in ``run_dir`` in a scratch results directory (on its
    recorded device, with its recorded torch threads) and compare every metric."""
    run_dir = Path(run_dir)
    if not (run_dir / store.METRICS).exists():
        raise HarnessError(f"{run_dir} holds no finished run (no {store.METRICS}); give a run's "
                           f"directory, e.g. results/<run-id>/<dataset>/<method>/seed-0")
    config = store.read_json(run_dir / store.CONFIG)
    spec = RunSpec(config["method"], config["dataset"], config["seed"], config["profile"])
    device = device or config.get("device", "cpu")
    threads = config.get("torch_threads") or config.get("environment", {}).get("torch_threads")
    sweep = {"sweep": tuple(config["sweep"])} if "sweep" in config else {}
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as scratch:
        repeated = run_one(spec, RunOptions(
            run_id=config["run_id"], results=scratch, settings=config.get("settings", {}),
            device=device, mirror=mirror, threads=threads, show_progress=False, **sweep))
    return compare(store.read_json(run_dir / store.METRICS), repeated,
                   0.0 if device == "cpu" else GPU_TOLERANCE)


def compare(recorded: dict, repeated: dict, tolerance: float = 0.0) -> list[Comparison]:
    """Metric by metric (timings aside): equal, or within ``tolerance`` relative."""
    rows = []
    for metric in sorted(set(recorded) | set(repeated)):
        if metric in TIMINGS:
            continue
        a, b = recorded.get(metric), repeated.get(metric)
        rows.append(Comparison(metric, a, b, _same(a, b, tolerance)))
    return rows


def _same(a, b, tolerance: float) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if tolerance == 0.0:
        return a == b
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
