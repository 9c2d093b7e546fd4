"""The arithmetic limit of a piece of work on this machine: how long its floating-point
work would take at the rates this machine reaches on the kernels it is made of.

A benchmark counts its work (matmul flops, exps, bytes that must stream from memory) and
prints its time beside ``Work.seconds(rates)``. The rates are measured here, on large
operands where each kernel runs at its best, so the limit is one no implementation on
this machine beats with these kernels; ratios above 1 are what is left to win.
``breakdown`` splits a piece's time by the kind of kernel that spent it, beside the same
split of its limit, which says where the rest of the time goes.
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
        return sum(self.parts(rates).values())

    def parts(self, rates: Rates) -> dict[str, float]:
        """The limit by the kind of kernel that does the work (the classes of ``breakdown``)."""
        return {"matmul": self.flops / rates.flops, "exp": self.exps / rates.exps,
                "passes": self.bytes / rates.bytes, "small": 0.0, "python": 0.0}


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


def transformer_steps(rows: float, context: float, layers: int, d_model: int, d_ff: int) -> Work:
    """Token steps of the Transformer's blocks, each position attending to ``context``
    positions on average: queries, keys and values, the output mixing, the MLP's two layers,
    and the scores and weighted sum of the attention (its softmax's exps)."""
    per_token = layers * (2 * d_model * (3 * d_model + d_model + 2 * d_ff) + 4 * context * d_model)
    return Work(flops=rows * per_token, exps=rows * layers * context)


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


# --- where a piece's time goes, beside the limit's parts -------------------------------

# Kernels whose work the limit counts as flops (an LSTM layer's call includes its gates)
# and as exps; every other kernel either streams a large tensor ("passes") or is a small
# call whose cost is its dispatch ("small": under SMALL_CALL a call on average). Ranges
# that are not kernels (the optimizer's step, autograd's functions) and the time between
# ops are Python ("outside ops").
MATMUL_OPS = frozenset({"aten::addmm", "aten::mm", "aten::bmm", "aten::mkldnn_rnn_layer",
                        "aten::mkldnn_rnn_layer_backward", "aten::mkldnn_convolution",
                        "aten::convolution_backward"})
EXP_OPS = frozenset({"aten::exp", "aten::exp_", "aten::_softmax", "aten::_log_softmax",
                     "aten::_softmax_backward_data", "aten::_log_softmax_backward_data",
                     "aten::sigmoid", "aten::tanh", "aten::sigmoid_backward",
                     "aten::tanh_backward"})
SMALL_CALL = 100e-6  # seconds
CLASSES = {"matmul": "matmul", "exp": "exp", "passes": "other passes",
           "small": f"small ops (<{SMALL_CALL * 1e6:.0f} us a call)", "python": "outside ops"}


def classify(name: str, calls: int, self_seconds: float) -> str:
    if name in MATMUL_OPS:
        return "matmul"
    if name in EXP_OPS:
        return "exp"
    if not name.startswith("aten::"):
        return "python"
    return "small" if self_seconds < SMALL_CALL * calls else "passes"


def seconds_by_kind(events) -> dict[str, float]:
    """The own time of the profiler's ``key_averages()`` by class of ``CLASSES``; "python"
    is left at 0 for the caller, who knows the wall time."""
    seconds = dict.fromkeys(CLASSES, 0.0)
    for event in events:
        own = event.self_cpu_time_total / 1e6
        kind = classify(event.key, event.count, own)
        if kind != "python":
            seconds[kind] += own
    return seconds


def breakdown(fn, unprofiled: float) -> tuple[float, dict[str, float]]:
    """One call of ``fn`` under torch's profiler: its wall seconds and the seconds of each
    class of ``CLASSES``, each op's own time as the profiler records it. The profiler's own
    cost falls mostly outside that record, so "outside ops", Python between the kernels,
    is ``unprofiled`` (the call's time without the profiler) less the kernels'."""
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    wall = time.perf_counter() - start
    seconds = seconds_by_kind(prof.key_averages())
    seconds["python"] = max(0.0, unprofiled - sum(seconds.values()))
    return wall, seconds


def breakdown_line(wall: float, seconds: dict[str, float], limit: dict[str, float]) -> str:
    """Each class's time over its part of the limit (what stands between time and limit)."""
    return f"profiled {wall:.2f} s, by kind / limit: " + "; ".join(
        f"{CLASSES[kind]} {seconds[kind]:.2f} s / {limit[kind]:.2f}" for kind in CLASSES)
