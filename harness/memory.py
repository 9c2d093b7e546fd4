"""Memory: what a run will need, checked before it starts, and the memory of freed tensors
kept in the process instead of given back at every free.

A run asks for its largest blocks (a generator's weights, a corpus's token rows) when it
starts; sizes the machine cannot hold are refused before anything is written
(``check_fits``), and an allocation that fails anyway is named as what it is
(``out_of_memory``), not as a broken plugin.

PyTorch allocates CPU tensors with malloc. glibc serves a block above its mmap threshold
(128 KiB, rising to at most 32 MiB) with a fresh mmap and unmaps it when freed, and trims the
heap's free top above its trim threshold; either way the next tensor of that size faults its
pages in again, zeroed by the kernel. A training step makes and frees tensors of tens of
megabytes (Obama's logits are 64 x 40 x 5,000 floats, 51 MB, and their gradient): an MLE run
on Obama spent 74 of its 158 s in the kernel on the 2-core CPU, 1 s with ``keep_freed_memory``
(docs/commands.md, *Memory*).
"""
from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path
from typing import Any

import torch

from harness.api import HarnessError
from harness.generator import LSTMGenerator

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask glibc to serve every block from its heap (no mmap) and never to trim it, so freed
    memory is reused, not faulted in again; the process keeps its peak size until it ends.
    Allocation only: no computation changes. False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # another C library (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


# --- what a run will need -------------------------------------------------------------

GB = 1e9
FLOAT_BYTES = 4  # a generator's weights are float32, under every --precision
# What training holds for each weight of the generator: the weight, its gradient, Adam's
# two moments, and two spare copies (the initial weights drawn apart from the model; a
# checkpoint's state dict or a rollout policy).
COPIES_IN_TRAINING = 6


def available_bytes(device: torch.device) -> int | None:
    """Memory a run on ``device`` may still take: the GPU's free memory on CUDA, the
    kernel's MemAvailable on Linux; None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def check_fits(needed: int, what: str, fix: str,
               device: torch.device = torch.device("cpu")) -> None:
    """HarnessError "``what`` needs about X GB, more than the Y GB available; ``fix``" when
    ``needed`` bytes are more than ``device`` has available (nothing where that is unknown)."""
    available = available_bytes(device)
    if available is not None and needed > available:
        raise HarnessError(f"{what} needs about {_size(needed)}, more than the "
                           f"{_size(available)} available; {fix}")


def _size(n_bytes: float) -> str:
    return f"{n_bytes / GB:,.1f} GB" if n_bytes >= GB / 10 else f"{n_bytes / 1e6:,.1f} MB"


def check_generator_fits(config: Any, vocab_size: int, seq_len: int,
                         device: torch.device) -> None:
    """HarnessError when training the shared generator a config asks for (its
    ``architecture``: the Transformer at its sizes, else the LSTM at ``emb_dim`` and
    ``hidden_dim``) over ``vocab_size`` tokens would take more memory than ``device`` has
    available; a config without those sizes passes. The LSTM's count is a guide of the
    same order for the other generators that take its two sizes."""
    if getattr(config, "architecture", "lstm") == "transformer":
        from harness.transformer import TransformerGenerator

        sizes = {key: getattr(config, key) for key in ("layers", "heads", "d_model", "d_ff")}
        weights = TransformerGenerator.parameter_count(vocab_size, seq_len, **sizes)
        check_fits(COPIES_IN_TRAINING * FLOAT_BYTES * weights,
                   f"{', '.join(f'{k}={v}' for k, v in sizes.items())}: the Transformer alone "
                   f"(over a vocabulary of {vocab_size:,})", "lower d_model/d_ff/layers", device)
        return
    emb_dim, hidden_dim = getattr(config, "emb_dim", None), getattr(config, "hidden_dim", None)
    if emb_dim is None or hidden_dim is None:
        return
    weights = LSTMGenerator.parameter_count(vocab_size, emb_dim, hidden_dim)
    check_fits(COPIES_IN_TRAINING * FLOAT_BYTES * weights,
               f"hidden_dim={hidden_dim}, emb_dim={emb_dim}: the generator alone (over a "
               f"vocabulary of {vocab_size:,})", "lower hidden_dim/emb_dim", device)


def out_of_memory(error: BaseException) -> str | None:
    """The line "out of memory: tried to allocate X" for a failed allocation (MemoryError,
    CUDA's OutOfMemoryError, the CPU allocator's RuntimeError); None for any other error."""
    failed = isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))
    if not failed:
        return None
    asked = re.search(r"tried to allocate ([\d.]+) (\w+)", str(error), re.IGNORECASE)
    if asked is None:
        return "out of memory"
    amount, unit = asked.groups()
    shown = _size(float(amount)) if unit == "bytes" else f"{amount} {unit}"
    return f"out of memory: tried to allocate {shown}"
