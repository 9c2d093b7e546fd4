"""A real one-node Slurm cluster, started on this machine by `.ci/slurm-up` (Debian's
slurm-wlm and munge): a small `run --all` plan goes through the slurm executor, every
result lands in the results store, and `harness table` and `harness status` read it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
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


def _submit(cli, results: Path, *extra: str) -> Path:
    submitted = cli("-q", "run", "-m", "seqgan", "-d", "tiny", "--executor", "slurm",
                    "--cpus-per-run", "1", "--results", str(results), *TINY[2:], *extra)
    assert submitted.exit_code == 0, submitted.output
    return next(results.glob("*/plan.json"))


def _until(condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_a_preempted_job_is_requeued_and_resumes_to_the_same_result(cli, tiny_everywhere,
                                                                    tmp_path):
    """`scontrol requeue` is what pre-emption with PreemptMode=REQUEUE does: SIGTERM, then
    the job back in the queue. The run stops at a checkpoint and the requeued job resumes."""
    longer = ("--set", "adv_batches=30", "--set", "adv_eval_every=5")
    straight = _submit(cli, tmp_path / "straight", *longer)
    assert [r["state"] for r in executors.wait(straight, 1, 600)] == ["done"]

    plan_path = _submit(cli, tmp_path / "requeued", *longer)
    job = next(iter(json.loads(plan_path.read_text())["jobs"].values()))
    run_dir = plan_path.parent / "tiny" / "seqgan" / "seed-0"
    _until(lambda: "phase=adversarial" in _text(run_dir / "run.log"))
    subprocess.run(["scontrol", "requeue", job], check=True)
    _until(lambda: "interrupted" in _text(run_dir / "status.json"))
    # Back in the queue, a requeued job waits two minutes before it may start; start it now.
    _until(lambda: _squeue_state(job) == "PENDING", 120)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    assert [r["state"] for r in executors.wait(plan_path, 1, 600)] == ["done"]
    log = _text(run_dir / "run.log")
    assert log.count("tiny/seqgan seed 0 on cpu") == 2  # started twice: resumed once
    timing = ("train_seconds", "eval_seconds")
    metrics = [{k: v for k, v in json.loads((d / "metrics.json").read_text()).items()
                if k not in timing}
               for d in (run_dir, straight.parent / "tiny" / "seqgan" / "seed-0")]
    assert metrics[0] == metrics[1]


def _squeue_state(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-o", "%T", "-j", job], capture_output=True,
                          text=True).stdout.strip()


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
