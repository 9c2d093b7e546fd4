"""Where a whole `harness run` spends its time, by kind of kernel.

Runs one `harness run` command in this process under torch's profiler and prints its
time split as `bench_adversarial.py --breakdown` splits a piece: matmuls (GEMMs, LSTM
layers, convolutions), exps (softmax, sigmoid, tanh), other passes over large tensors,
small ops (under 100 us a call) and Python between them; then the ops that took longest.
Everything after `--` is the `harness run` command line; give it a fresh `--results`.

    python benchmarks/profile_run.py [--threads 1] [--top 12] -- -m vae -d oracle \\
        --set epochs=2 --results /tmp/profile-runs

`--threads 1` is what each run gets under `harness run --all --jobs 2` on two cores.
A profiled run is slower than a plain one (the profiler records every op, and that cost
falls outside the kernels' own times): read the kernels' shares, not the seconds. The
profiler keeps every op call in memory and reads them all at the end: a run of millions of
small ops (a sampler's adversarial phase) takes minutes and gigabytes there, so shorten it
with --set.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time

import torch
from torch.profiler import ProfilerActivity, profile

import limits
from harness.cli import main as harness_main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--top", type=int, default=12, help="ops to list, longest first")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then harness run's options")
    args = ap.parse_args()
    command = [word for word in args.command if word != "--"]
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof, \
            contextlib.redirect_stdout(io.StringIO()):  # the tables: not what is asked here
        harness_main(["-q", "run", "--threads", str(args.threads), *command],
                     standalone_mode=False)
    wall = time.perf_counter() - start
    events = prof.key_averages()
    seconds = limits.seconds_by_kind(events)
    kernels = sum(seconds.values())
    print(f"harness run {' '.join(command)}: {wall:.1f} s profiled, {args.threads} thread(s); "
          f"the kernels' own time {kernels:.1f} s:")
    print("  " + "; ".join(f"{limits.CLASSES[kind]} {seconds[kind]:.1f} s ({seconds[kind] / kernels:.0%})"
                           for kind in limits.CLASSES if kind != "python"))
    print(f"  outside the kernels (Python, and the profiler's own recording): {wall - kernels:.1f} s")
    print(f"  the {args.top} longest ops (own time, calls, class):")
    ops = [e for e in events if e.key.startswith("aten::")]
    for event in sorted(ops, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        own = event.self_cpu_time_total / 1e6
        print(f"    {event.key:<40} {own:8.1f} s {event.count:9d}  "
              f"{limits.classify(event.key, event.count, own)}")


if __name__ == "__main__":
    main()
