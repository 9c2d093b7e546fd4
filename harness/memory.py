"""Keep the memory of freed tensors in the process instead of giving it back at every free.

PyTorch allocates CPU tensors with malloc. glibc serves a block above its mmap threshold
(128 KiB, rising to at most 32 MiB) with a fresh mmap and unmaps it when freed, and trims the
heap's free top above its trim threshold; either way the next tensor of that size faults its
pages in again, zeroed by the kernel. A training step makes and frees tensors of tens of
megabytes (Obama's logits are 64 x 40 x 5,000 floats, 51 MB, and their gradient): an MLE run
on Obama spent 74 of its 158 s in the kernel on the 2-core CPU, 1 s with ``keep_freed_memory``
(README, *Memory*).
"""
from __future__ import annotations

import ctypes
import sys

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
