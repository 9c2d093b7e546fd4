"""How many rows a step of the CPU's hot loops should take at once, measured: sampling
(``LSTMGenerator.SAMPLE_ROWS``), teacher-forced scoring (``LIKELIHOOD_ROWS``) and the
rollout's completions (``ROLLOUT_ROWS``), at the paper's sizes, each candidate timed in
turn, round after round, in one process. None of these changes a float: every candidate's
output is asserted equal to the first one's.

    python benchmarks/bench_rows.py [--mirror DIR] [--rounds 3] [--threads N]
        [--sample 128,512,2048] [--likelihood 4,16,64] [--rollout 256,1024,4096]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from harness.generator import LSTMGenerator
from harness_datasets.oracle import seqgan_oracle
from harness_plugins.adversarial import Rollout


def rows_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def sweep(name: str, setting: Callable[[int], None], work: Callable[[], torch.Tensor],
          candidates: list[int], rounds: int) -> None:
    """Time ``work`` with each candidate set, interleaved; print medians and ratios."""
    times: dict[int, list[float]] = {rows: [] for rows in candidates}
    first = None
    for _ in range(rounds):
        for rows in candidates:
            setting(rows)
            start = time.perf_counter()
            out = work()
            times[rows].append(time.perf_counter() - start)
            if first is None:
                first = out
            assert torch.equal(out, first), f"{name}: {rows} rows a step changed the output"
    base = statistics.median(times[candidates[0]])
    for rows in candidates:
        median = statistics.median(times[rows])
        print(f"{name:<34}: {rows:>6} rows a step  {median:7.2f} s  "
              f"x{median / base:.2f} of {candidates[0]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror", type=Path, default=Path(os.environ.get("HARNESS_DATA_MIRROR", ".")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n-samples", type=int, default=10_000)
    ap.add_argument("--sample", type=rows_list, default=[128, 512, 2048])
    ap.add_argument("--likelihood", type=rows_list, default=[4, 16, 64])
    ap.add_argument("--rollout", type=rows_list, default=[256, 1024, 4096])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    oracle = seqgan_oracle(args.mirror)
    torch.manual_seed(0)
    gen = LSTMGenerator(oracle.vocab_size, oracle.seq_len, 32, 32, start_token=oracle.start_token)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"median of {args.rounds}, candidates in turn")
    n = args.n_samples
    tokens = gen.sample(n, generator=torch.Generator().manual_seed(1))

    for owner, attribute in ((LSTMGenerator, "SAMPLE_ROWS"), (LSTMGenerator, "LIKELIHOOD_ROWS"),
                             (Rollout, "ROLLOUT_ROWS")):
        print(f"default {owner.__name__}.{attribute} = {getattr(owner, attribute)}")

    def set_class(attribute: str, owner: type) -> Callable[[int], None]:
        return lambda rows: setattr(owner, attribute, rows)

    sweep(f"sample {n:,}", set_class("SAMPLE_ROWS", LSTMGenerator),
          lambda: gen.sample(n, generator=torch.Generator().manual_seed(2)), args.sample, args.rounds)
    sweep(f"NLL-oracle of {n:,}", set_class("LIKELIHOOD_ROWS", LSTMGenerator),
          lambda: oracle.log_likelihoods(tokens, (1.0,))[0], args.likelihood, args.rounds)
    rollout = Rollout(gen)
    # The rewards' own path; a score that reads every completed token (a row's mean token),
    # so the outputs compared are the completions', at no cost beside them.
    sweep("rollout completions (64 x 19 x 16)", set_class("ROLLOUT_ROWS", Rollout),
          lambda: rollout.rewards(tokens[:64], 16, lambda rows: rows.float().mean(1),
                                  generator=torch.Generator().manual_seed(3)),
          args.rollout, args.rounds)


if __name__ == "__main__":
    main()
