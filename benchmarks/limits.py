"""The arithmetic limit of a piece of work on this machine: how long its floating-point
work would take at the rates this machine reaches on the kernels it is made of.

A benchmark counts its work (matmul flops, exps, bytes that must stream from memory) and
prints its time beside ``Work.seconds(rates)``. The rates are measured here, on large
operands where each kernel runs at its best, so the limit is one no implementation on
this machine beats with these kernels; ratios above 1 are what is left to win.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Rates:
    flops: float  # per second: a 2,048-square float32 matmul (a multiply-add is 2 flops)
    exps: float   # per second: exp over 64K floats that stay in cache, as a softmax chunk does
    bytes: float  # per second: a copy of 256 MB (read + write both counted)

    def __str__(self) -> str:
        return (f"{self.flops / 1e9:.0f} Gflop/s matmul, {self.exps / 1e9:.2f} G exp/s, "
                f"{self.bytes / 1e9:.1f} GB/s copy")


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm up: allocations, thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(repeats: int = 5) -> Rates:
    """This machine's rates with torch's current thread count."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x, y = torch.randn(1 << 16), torch.empty(1 << 16)
    big = torch.empty(1 << 26)
    copy = torch.empty_like(big)
    matmul = _best_seconds(lambda: a @ b, repeats)
    passes = 256

    def exps():
        for _ in range(passes):
            torch.exp(x, out=y)

    exp = _best_seconds(exps, repeats)
    stream = _best_seconds(lambda: copy.copy_(big), repeats)
    return Rates(flops=2 * 2048 ** 3 / matmul, exps=passes * x.numel() / exp,
                 bytes=2 * big.numel() * 4 / stream)


@dataclass(frozen=True)
class Work:
    flops: float = 0.0
    exps: float = 0.0
    bytes: float = 0.0

    def __add__(self, other: "Work") -> "Work":
        return Work(self.flops + other.flops, self.exps + other.exps, self.bytes + other.bytes)

    def __mul__(self, times: float) -> "Work":
        return Work(self.flops * times, self.exps * times, self.bytes * times)

    def seconds(self, rates: Rates) -> float:
        return self.flops / rates.flops + self.exps / rates.exps + self.bytes / rates.bytes


def lstm_steps(rows: float, emb: int, hidden: int) -> Work:
    """Token steps of an LSTM layer: the gates' two matmuls."""
    return Work(flops=rows * 2 * 4 * hidden * (emb + hidden))


def projection(rows: float, hidden: int, vocab: int) -> Work:
    """The output layer: hidden -> vocabulary logits."""
    return Work(flops=rows * 2 * hidden * vocab)


def softmax(rows: float, vocab: int) -> Work:
    """One exp per logit (a draw, a log-softmax): the reads ride on the exp."""
    return Work(exps=rows * vocab)


def generator_steps(rows: float, emb: int, hidden: int, vocab: int) -> Work:
    """A forward token step of the LSTM generator with its softmax."""
    return lstm_steps(rows, emb, hidden) + projection(rows, hidden, vocab) + softmax(rows, vocab)


def conv_windows(rows: float, length: int, emb: int, windows: dict[int, int]) -> Work:
    """The CNN discriminator's convolutions as matmuls: window k with f filters."""
    return Work(flops=rows * sum(2 * (length - k + 1) * k * emb * f for k, f in windows.items()))


def conv_lookups(window_rows: dict[int, float], windows: dict[int, int]) -> Work:
    """Convolutions as table look-ups: ``window_rows[k]`` windows of size k each read k
    rows of f floats (the tables do not fit in cache) and add them."""
    floats = sum(window_rows[k] * k * f for k, f in windows.items())
    return Work(bytes=4 * floats)


def highway_and_output(rows: float, features: int) -> Work:
    """The discriminator above the max-pool: highway (two square layers), two logits."""
    return Work(flops=rows * (2 * 2 * features ** 2 + 2 * features * 2))
