"""Tiny runs of every method, pinned: speed work must not move a single float.

``python tests/pinned_runs.py`` trains every registered method on the tests' tiny oracle
(default profile, seed 0, one thread) and writes what each run produced — every metric
but the timings, and the learning curve — to ``tests/pinned/tiny-runs.json`` with the
environment that decides the floats (torch version, the CPU model, its vector
instruction set, and the bits its kernels give on a fixed workload).
``tests/test_pinned_runs.py`` trains them again and asks for the very same values wherever
that environment is the same; elsewhere the floats may legitimately differ, and it says so.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PINNED = TESTS / "pinned" / "tiny-runs.json"


def environment() -> dict[str, str]:
    """What decides the floats of a run on this machine, besides the code."""
    import platform

    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu": _cpu_model() or platform.processor(), "threads": "1",
            "kernels": kernel_fingerprint()}


def kernel_fingerprint() -> str:
    """The bits this machine's kernels give on a fixed workload of the kinds the runs use
    (matmul, exp, cumulative sum, log-softmax, LSTM, convolution), one thread, hashed: two
    machines that share names may still round differently, and then this differs too."""
    import hashlib

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            x, w = torch.randn(64, 32), torch.randn(500, 32)
            logits = torch.addmm(torch.randn(500), x, w.t())
            lstm = torch.nn.LSTM(32, 32, batch_first=True)
            conv = torch.nn.Conv1d(32, 16, 3)
            outputs = [logits, logits.exp().cumsum(1), logits.log_softmax(1),
                       lstm(x.view(4, 16, 32))[0], conv(x.view(2, 32, 32))]
    finally:
        torch.set_num_threads(threads)
    digest = hashlib.sha256()
    for tensor in outputs:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _cpu_model() -> str:
    """The processor's model name: kernels may pick other blockings on another model."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _without_timings(metrics: dict) -> dict:
    return {k: (_without_timings(v) if isinstance(v, dict) else v)
            for k, v in metrics.items() if not k.endswith("_seconds")}


def _curve(path: Path) -> list[dict]:
    if not path.exists():  # the rows that do not train
        return []
    return [{k: v for k, v in row.items() if not k.endswith("_seconds")}
            for row in csv.DictReader(io.StringIO(path.read_text()))]


def tiny_runs() -> dict[str, dict]:
    """Every method's metrics and curve on the tiny oracle, trained in a scratch directory."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "HARNESS_PLUGINS": "harness_tiny", "HARNESS_RESULTS": scratch,
               "HARNESS_CACHE": str(Path(scratch) / "cache"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
        env.pop("HARNESS_DATA_MIRROR", None)
        subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "-q", "run",
                        "--all", "-d", "tiny", "--run-id", "pinned", "--jobs", "1", "--threads", "1"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        runs = {}
        for directory in sorted((Path(scratch) / "pinned" / "tiny").glob("*/seed-0")):
            metrics = json.loads((directory / "metrics.json").read_text())
            runs[directory.parent.name] = {"metrics": _without_timings(metrics),
                                           "curve": _curve(directory / "curve.csv")}
        return runs


if __name__ == "__main__":
    import subprocess as sp

    commit = sp.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                    cwd=TESTS).stdout.strip()
    PINNED.write_text(json.dumps({"commit": commit, "environment": environment(),
                                  "runs": tiny_runs()}, indent=1, sort_keys=True) + "\n")
    print(f"pinned {PINNED} at {commit}")
