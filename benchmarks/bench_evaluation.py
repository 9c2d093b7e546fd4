"""Time evaluating a run (every metric, the whole temperature sweep) beside training it.

Each finished run records ``train_seconds`` (training, with its learning-curve points),
``eval_seconds`` (the final evaluation and the sweep) and ``judge_lm_seconds`` (training
the LM that gives ``lm_score``; once per data set and seed, then reused, so 0 for the later
runs). This prints them per data set and method (mean over seeds) with the share of training
that evaluation costs; ``--run`` first trains the named runs afresh in a scratch directory on
this machine, one after another, so the figures are measured here and now.

    python benchmarks/bench_evaluation.py --results results/reference-cpu-2026-12-02 [--seed 0]
    python benchmarks/bench_evaluation.py --run -m mle -d oracle [--threads 2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

import pandas as pd

from harness import table

LIMIT = 0.25  # evaluation should cost under a quarter of training


def timings(results: str, seeds: list[int] | None = None) -> pd.DataFrame:
    """Mean seconds per data set and method (over ``seeds``, else every seed); a method
    that starts from another's result (SeqGAN and PG-BLEU from the MLE run's generator)
    also counts that training."""
    from harness.plugins import registry

    rows = table.collect(results)
    if seeds:
        rows = rows[rows.seed.isin(seeds)]
    wanted = rows[rows.metric.isin(["train_seconds", "eval_seconds", "judge_lm_seconds"])]
    per_run = wanted.pivot_table(index=["dataset", "method", "seed"], columns="metric",
                                 values="value").reset_index()
    trained = per_run.set_index(["dataset", "method", "seed"]).train_seconds
    methods = registry().methods

    def with_pretraining(row) -> float:
        first = methods[row.method].starts_from if row.method in methods else ()
        return row.train_seconds + sum(trained.get((row.dataset, m, row.seed), 0.0) for m in first)

    per_run["train incl. what it starts from"] = per_run.apply(with_pretraining, axis=1)
    frame = per_run.groupby(["dataset", "method"]).mean(numeric_only=True).drop(columns="seed")
    frame["eval / train"] = frame.eval_seconds / frame["train incl. what it starts from"]
    frame["under a quarter"] = frame["eval / train"] < LIMIT
    return frame.round(2).reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", help="A results directory to read the recorded timings from.")
    ap.add_argument("--run", action="store_true", help="Train and evaluate the runs first.")
    ap.add_argument("-m", "--method", action="append", default=[])
    ap.add_argument("-d", "--dataset", action="append", default=[])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, action="append", default=[],
                    help="Only these seeds' runs (repeatable; default: every seed, averaged).")
    args = ap.parse_args()
    results = args.results
    if args.run:
        results = tempfile.mkdtemp(prefix="bench-evaluation-")
        command = [sys.executable, "-c", "from harness.cli import main; main()", "-q", "run",
                   "--results", results] + [f"-m{m}" for m in args.method] + \
                  [f"-d{d}" for d in args.dataset] + \
                  (["--threads", str(args.threads)] if args.threads else [])
        subprocess.run(command + ([] if args.method or args.dataset else ["--all"]), check=True)
    if not results:
        ap.error("give --results DIR or --run")
    frame = timings(results, args.seed)
    print(frame.to_markdown(index=False))
    trained = frame[~frame.method.isin(reference_rows())]
    over = trained[~trained["under a quarter"]]
    print(f"\nevaluation under {LIMIT:.0%} of training for {len(trained) - len(over)} of the "
          f"{len(trained)} trained methods' runs" +
          (f"; over: {', '.join(over.dataset + '/' + over.method)}" if len(over) else ""))


def reference_rows() -> set[str]:
    """The rows that are no trained method (real data, the Random row)."""
    from harness.plugins import registry

    return {name for name, method in registry().methods.items()
            if method.reference is not None}


if __name__ == "__main__":
    main()
