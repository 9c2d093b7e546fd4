"""The shared generators' sampling and teacher-forced scoring, each beside its arithmetic
limit on this machine (``limits``): the LSTM at its default sizes and the Transformer
(``--set architecture=transformer``) at its own, over the oracle's vocabulary and length.

    python benchmarks/bench_generators.py [--rows 2000] [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import limits
from harness.generator import LSTMGenerator, sequence_log_likelihoods
from harness.training import GeneratorSettings
from harness.transformer import TransformerGenerator

VOCAB, LENGTH = 5_000, 20  # SeqGAN's oracle


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rates = limits.measure()
    print(f"{torch.get_num_threads()} thread(s); {rates}")
    sizes = GeneratorSettings()
    torch.manual_seed(0)
    lstm = LSTMGenerator(VOCAB, LENGTH, 32, 32).eval()
    transformer = TransformerGenerator(VOCAB, LENGTH, 0, sizes.layers, sizes.heads, sizes.d_model,
                                       sizes.d_ff, sizes.dropout).eval()
    tokens_rows = args.rows * LENGTH
    works = {
        "lstm": limits.generator_steps(tokens_rows, 32, 32, VOCAB),
        "transformer": (limits.transformer_steps(tokens_rows, (LENGTH + 1) / 2, sizes.layers,
                                                 sizes.d_model, sizes.d_ff)
                        + limits.projection(tokens_rows, sizes.d_model, VOCAB)
                        + limits.softmax(tokens_rows, VOCAB)),
    }
    data = lstm.sample(args.rows, generator=torch.Generator().manual_seed(1))
    for name, model in (("lstm", lstm), ("transformer", transformer)):
        limit = works[name].seconds(rates)
        with torch.no_grad():
            sampled = median_seconds(
                lambda: model.sample(args.rows, generator=torch.Generator().manual_seed(2)),
                args.repeats)
            scored = median_seconds(lambda: sequence_log_likelihoods(model, data, (1.0,)),
                                    args.repeats)
        for piece, seconds in (("sample", sampled), ("score", scored)):
            print(f"{name:<12} {piece} {args.rows:,} x {LENGTH}: {seconds:.3f} s, limit "
                  f"{limit:.3f} s, {seconds / limit:.1f}x its limit")


if __name__ == "__main__":
    main()
