"""The harness CLI with one fault injected; run by test_faults.py in a subprocess (with
``HARNESS_PLUGINS=harness_tiny``), so a real SIGKILL or SIGTERM hits a real process.

    python fault_driver.py FAULT harness-arguments...

FAULT is ``none``, or ``kill`` / ``term`` ``-after:PHASE:N`` (the signal right after the
N-th checkpoint of that training phase is written), or ``kill-writing:NAME:N`` (SIGKILL
while the N-th write of file NAME is half done: the temporary file written, not renamed).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

from harness import store
from harness.cli import main

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


def inject(fault: str) -> None:
    if fault == "none":
        return
    kind, target, count = fault.split(":")
    seen = 0
    if kind.endswith("-after"):
        write_torch = store.write_torch

        def after_checkpoint(path, obj):
            nonlocal seen
            write_torch(path, obj)
            if Path(path).name == "checkpoint.pt" and obj["state"].get("phase", "train") == target:
                seen += 1
                if seen == int(count):
                    os.kill(os.getpid(), SIGNALS[kind.removesuffix("-after")])

        store.write_torch = after_checkpoint
    elif kind == "kill-writing":
        replace = os.replace

        def half_written(src, dst):
            nonlocal seen
            if Path(dst).name == target:
                seen += 1
                if seen == int(count):
                    os.kill(os.getpid(), signal.SIGKILL)
            replace(src, dst)

        store.os.replace = half_written
    else:
        raise SystemExit(f"unknown fault {fault}")


if __name__ == "__main__":
    torch.set_num_threads(1)  # bit-identical with the uninterrupted run
    inject(sys.argv[1])
    main(sys.argv[2:])
