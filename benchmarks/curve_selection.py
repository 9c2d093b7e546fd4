"""What a best-of-N curve point is worth when every point draws fresh samples (the
``authors`` profiles, as the authors' scripts evaluated): the NLL-oracle of one finished
run's generator, drawn ``--draws`` times from the streams of curve points 0, 1, ..., beside
the run's final value (the evaluation's own stream).

A generator that no longer changes still has a best point lower than its value: the
minimum of N draws of the sampling noise. This prints that noise (the draws' standard
deviation), the observed minimum of the first N draws for N up to ``--draws``, and the
expected minimum of N normal draws for the curve lengths of the authors' scripts (the mean
minus the standard deviation times the expected maximum of N standard normals, integrated
numerically), so that a best-so-far figure can be read against it.

    python benchmarks/curve_selection.py RUN_DIR [--draws 50] [--mirror DIR] [--profile authors]

``--profile`` judges the generator on that profile's evaluation (its number of samples a
draw) instead of the run's own.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import integrate, stats

from harness import evaluate, store
from harness.commands import run_corpus
from harness.generator import load_generator

CURVE_LENGTHS = (5, 10, 48, 160, 800)  # e.g. 240 MLE epochs every 5; 800 batches every 1


def expected_max_of_normals(n: int) -> float:
    """E[max of n independent standard normals]."""
    density = lambda x: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1)  # noqa: E731
    return integrate.quad(density, -np.inf, np.inf)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--mirror", default=None)
    parser.add_argument("--profile", default=None, help="evaluate as this profile does")
    args = parser.parse_args()
    corpus = run_corpus(args.run_dir, args.mirror, args.profile)
    if corpus.oracle is None:
        raise SystemExit("NLL-oracle needs a run on synthetic data (an oracle)")
    generator = load_generator(args.run_dir / store.GENERATOR)
    seed = store.read_config(args.run_dir)["seed"]
    final = evaluate.curve_metrics(generator, corpus, seed)["nll_oracle"]
    started = time.perf_counter()
    draws = np.array([evaluate.curve_metrics(generator, corpus, seed, point)["nll_oracle"]
                      for point in range(args.draws)])
    seconds = time.perf_counter() - started
    sd = draws.std(ddof=1)
    print(f"run: {args.run_dir}  ({corpus.eval_samples} samples a draw, {args.draws} draws, "
          f"{seconds / args.draws:.1f} s a draw)")
    print(f"final value (the evaluation's stream): {final:.4f}")
    print(f"fresh draws: mean {draws.mean():.4f}, standard deviation {sd:.4f}, "
          f"range {draws.min():.4f} .. {draws.max():.4f}")
    print("observed best of the first N fresh draws, minus the final value:")
    for n in sorted({n for n in (1, 5, 10, 20, args.draws) if n <= args.draws}):
        print(f"  N = {n:>4}: {draws[:n].min() - final:+.4f}")
    print("expected best of N draws of this noise, minus their mean (normal order statistic):")
    for n in CURVE_LENGTHS:
        print(f"  N = {n:>4}: {-sd * expected_max_of_normals(n):+.4f}")


if __name__ == "__main__":
    main()
