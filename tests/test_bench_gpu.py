"""benchmarks/bench_gpu.py --device cpu --quick: every check passes and the JSON summary
has every section (the CPU path of the GPU smoke test; on a GPU run it with --device cuda)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
SECTIONS = ("environment", "tiny_runs", "kill_resume", "repeat", "verify", "nll_oracle",
            "timings", "projection", "checks", "failed", "passed", "wall_seconds")


@pytest.mark.slow
def test_quick_cpu_bench_passes_and_reports_every_section(tmp_path, mirror):
    out = tmp_path / "bench"
    # The autouse fixture's environment (private results and cache, no plugin autoload)
    # goes on to the script and the harness processes it starts. One torch thread for the
    # timings too: threads that spin against each other slow a busy machine down 5x.
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick",
                           "--out", str(out), "--mirror", str(mirror), "--threads", "1"],
                          capture_output=True, text=True, env=dict(os.environ), timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads((out / "bench_gpu.json").read_text())
    assert [s for s in SECTIONS if s not in summary] == []
    assert summary["passed"] and summary["failed"] == []
    assert {"mle", "seqgan"} <= set(summary["tiny_runs"]) and len(summary["tiny_runs"]) >= 3
    assert all(run["passed"] for run in summary["tiny_runs"].values())
    for method in ("mle", "seqgan"):
        assert summary["kill_resume"][method]["killed"]
        assert summary["kill_resume"][method]["identical"]
        assert summary["repeat"][method]["identical"]
    assert summary["verify"]["rc"] == 0
    assert "tf32" not in summary["nll_oracle"]  # the CPU computes in fp32 only
    assert {"sample", "mle_epoch", "d_step", "adversarial_batch"} <= set(summary["timings"])
    rows = {(r["method"], r["profile"]) for r in summary["projection"]["rows"]}
    assert rows == {(m, p) for m in ("mle", "seqgan") for p in ("paper", "authors")}
    assert summary["environment"]["torch"] and summary["environment"]["device"] == "cpu"
