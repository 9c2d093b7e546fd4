"""A/B, interleaved in one process: the rollout reward step before the speed work (every
completed row scored by prob_real, policy.output + sample_from_logits per chunk) against
Rollout.rewards with the discriminator; the medians and their ratio, per part.

    python benchmarks/ab_rollout.py [--mirror DIR] [--repeats 5] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_rollout import rewards_before_the_speed_work  # noqa: E402

from harness.generator import LSTMGenerator  # noqa: E402
from harness_datasets.oracle import seqgan_oracle  # noqa: E402
from harness_plugins.adversarial import PAPER, Discriminator, Rollout  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirror", type=Path, default=Path(os.environ.get("HARNESS_DATA_MIRROR", ".")))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    oracle = seqgan_oracle(args.mirror)
    vocab, length = oracle.vocab_size, oracle.seq_len
    gen = LSTMGenerator(vocab, length, 32, 32, start_token=oracle.start_token)
    rollout, disc = Rollout(gen), Discriminator(vocab, length, **PAPER)
    sequences = gen.sample(64, generator=torch.Generator().manual_seed(1))
    rows = rollout._complete(sequences, 16, torch.Generator().manual_seed(2), False, 256)

    def zero(r):
        return torch.zeros(len(r))

    def rng():
        return torch.Generator().manual_seed(3)

    pairs = {
        "whole reward step": (
            lambda: rewards_before_the_speed_work(rollout, sequences, 16, disc.prob_real, rng()),
            lambda: rollout.rewards(sequences, 16, disc, generator=rng())),
        "rollout sampling": (
            lambda: rewards_before_the_speed_work(rollout, sequences, 16, zero, rng()),
            lambda: rollout.rewards(sequences, 16, zero, generator=rng())),
        "D scoring 19,520 rows": (
            lambda: disc.prob_real(torch.cat([rows, sequences])),
            lambda: disc.prob_real_of_rollout(rows, sequences)),
    }
    with torch.no_grad():
        for name, (old, new) in pairs.items():
            assert torch.equal(old(), new()), name
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load "
          f"{os.getloadavg()[0]:.2f}; all pairs bit-identical; median of {args.repeats}")
    times = {name: ([], []) for name in pairs}
    for _ in range(args.repeats):
        for name, (old, new) in pairs.items():
            times[name][0].append(timed(old))
            times[name][1].append(timed(new))
    for name, (old, new) in times.items():
        a, b = statistics.median(old), statistics.median(new)
        print(f"{name:<24} old {a:6.2f} s  new {b:6.2f} s  ratio {a / b:4.2f}x  "
              f"(ratios per repeat {', '.join(f'{x / y:.2f}' for x, y in zip(old, new))})")
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
