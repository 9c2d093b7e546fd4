"""harness.memory: freed memory stays in the process and is reused (glibc)."""
import platform
import subprocess
import sys

import pytest

from harness import memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# 64 MiB blocks, above glibc's largest mmap threshold: without keep_freed_memory each is
# mapped afresh and faults its 16,384 pages in again; with it the second and later blocks
# reuse the first one's pages.
FAULTS = """
import ctypes, resource, sys
from harness import memory
assert memory.keep_freed_memory() is True
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
counts = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*counts)
"""


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_blocks_are_reused_not_faulted_in_again():
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True,
                         check=True).stdout.split()
    first, *again = map(int, out)
    assert first > 0 and sum(again) <= first // 100, out


@pytest.mark.skipif(GLIBC, reason="on glibc it applies")
def test_elsewhere_it_says_it_did_nothing():
    assert memory.keep_freed_memory() is False
