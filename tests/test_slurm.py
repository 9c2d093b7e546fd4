"""A real one-node Slurm cluster, started on this machine by `.ci/slurm-up` (Debian's
slurm-wlm and munge): a small `run --all` plan goes through the slurm executor, every
result lands in the results store, and `harness table` and `harness status` read it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import executors


def slurm_is_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                                timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(s in states for s in ("idle", "mixed", "allocated"))


pytestmark = pytest.mark.skipif(
    not slurm_is_up(), reason="no Slurm cluster here: run .ci/slurm-up (as root; installs "
                              "Debian's slurm-wlm and munge and starts a one-node cluster)")

TINY = ["--set", "epochs=2", "--set", "pretrain_epochs=2", "--set", "eval_every=1",
        "--set", "adv_batches=2", "--set", "adv_eval_every=1", "--set", "n_rollouts=2",
        "--set", "disc_pretrain_rounds=1", "--set", "disc_negatives=64"]


def test_a_plan_runs_on_slurm_and_lands_in_the_results_store(cli, tiny_everywhere):
    pytest.importorskip("submitit")
    results = Path(os.environ["HARNESS_RESULTS"])
    submitted = cli("-q", "run", "-m", "mle", "-m", "seqgan", "-m", "real", "-d", "tiny",
                    "--executor", "slurm", "--cpus-per-run", "1", "--time", "10", *TINY)
    assert submitted.exit_code == 0, submitted.output
    assert "harness status" in submitted.output
    plan_path = next(results.glob("*/plan.json"))
    jobs = json.loads(plan_path.read_text())["jobs"]
    assert len(jobs) == 3 and all(job.isdigit() for job in jobs.values())

    rows = executors.wait(plan_path, poll_seconds=2, timeout=600)
    assert [r["state"] for r in rows] == ["done"] * 3, rows
    seqgan_dir = plan_path.parent / "tiny" / "seqgan" / "seed-0"
    assert "reusing the MLE pre-training" in (seqgan_dir / "run.log").read_text()
    status = cli("status")
    assert "3 done" in status.output
    table = cli("table")
    assert table.exit_code == 0
    assert all(f"| {m}" in table.output for m in ("real", "mle", "seqgan"))
    # The same command again submits nothing: everything is done.
    again = cli("-q", "run", "-m", "mle", "-m", "seqgan", "-m", "real", "-d", "tiny",
                "--executor", "slurm", "--cpus-per-run", "1", "--time", "10", *TINY)
    assert again.exit_code == 0
    assert json.loads(plan_path.read_text())["jobs"] == jobs
