"""Time ``harness run --all --jobs 2`` (seed 0, a fresh results root) of two checkouts back
to back on this machine, and check that the two result sets agree metric for metric.

Each checkout needs its own environment with the harness installed from it (the quick
start's first line, run in that checkout, makes one at ``CHECKOUT/.venv``). The runs go
one after the other, nothing else at once; the corpus mirror, if any, is the same for
both (``HARNESS_DATA_MIRROR``).

    python benchmarks/bench_run_all.py --before ../harness-before --after . [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def commit_of(checkout: Path) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout,
                          capture_output=True, text=True).stdout.strip()


def run_all(checkout: Path, results: Path, jobs: int) -> float:
    """Wall seconds of the whole command."""
    harness = checkout / ".venv" / "bin" / "harness"
    start = time.perf_counter()
    subprocess.run([str(harness), "-q", "run", "--all", "--jobs", str(jobs), "--results",
                    str(results), "--run-id", "timed"], cwd=checkout, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "HARNESS_RESULTS": str(results)})
    return time.perf_counter() - start


def metrics_of(results: Path) -> dict[str, dict]:
    """Every run's metrics but its timings, by data set/method/seed."""
    found = {}
    for path in sorted(results.glob("timed/*/*/seed-*/metrics.json")):
        metrics = json.loads(path.read_text())
        found[str(path.parent.relative_to(results))] = {
            k: v for k, v in metrics.items() if not k.endswith("_seconds") and k != "standard_errors"}
    return found


def differences(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    def same(a, b) -> bool:
        return a == b or (isinstance(a, float) and isinstance(b, float)
                          and math.isnan(a) and math.isnan(b))

    lines = [f"{run}: only in one set" for run in sorted(set(before) ^ set(after))]
    for run in sorted(set(before) & set(after)):
        for key in sorted(set(before[run]) | set(after[run])):
            a, b = before[run].get(key), after[run].get(key)
            if not same(a, b):
                lines.append(f"{run} {key}: {a!r} -> {b!r}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--first", choices=["before", "after"], default="after",
                    help="which checkout runs first")
    args = ap.parse_args()
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    order = [args.first, "before" if args.first == "after" else "after"]
    seconds, results = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for side in order:
            root = Path(scratch) / side
            seconds[side] = run_all(checkouts[side], root, args.jobs)
            results[side] = metrics_of(root)
            print(f"{side} ({commit_of(checkouts[side])}): {seconds[side]:.0f} s, "
                  f"{len(results[side])} runs", flush=True)
    print(f"after / before: {seconds['after'] / seconds['before']:.3f} "
          f"(harness run --all --jobs {args.jobs}, {os.cpu_count()} CPUs, {order[0]} first)")
    changed = differences(results["before"], results["after"])
    print("metric for metric identical" if not changed else
          f"{len(changed)} differences:\n" + "\n".join(changed[:50]))
    sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
