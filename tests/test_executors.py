"""Executors: plan expansion and dependency order, submitit's local executor standing in
for a cluster (real job processes), resubmission of what failed, and `harness status`."""
from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pytest

import harness
from harness import run_state, slurm, store
from harness.plan import (Plan, RunOptions, RunSpec, in_dependency_order, longest_first,
                          past_seconds, waits_for)

TINY = ["--set", "epochs=2", "--set", "pretrain_epochs=2", "--set", "eval_every=1",
        "--set", "adv_batches=2", "--set", "adv_eval_every=1", "--set", "n_rollouts=2",
        "--set", "disc_pretrain_rounds=1", "--set", "disc_negatives=64"]


def results() -> Path:
    return Path(os.environ["HARNESS_RESULTS"])


@pytest.fixture
def submitit_local(register_plugin):
    """submitit's local executor (jobs are processes here) registered as a plugin would."""
    pytest.importorskip("submitit")
    module = types.ModuleType("harness_submitit_local")

    @harness.hookimpl
    def register_executors(register):
        register(slurm.Submitit("submitit-local", cluster="local"))

    module.register_executors = register_executors
    register_plugin(module)
    return "submitit-local"


def test_runs_come_after_the_runs_they_start_from(tiny_dataset):
    specs = [RunSpec(m, "tiny", seed) for m in ("pg-bleu", "seqgan", "ss", "mle")
             for seed in (0, 1)]
    ordered = in_dependency_order(specs)
    assert sorted(ordered, key=str) == sorted(specs, key=str)
    for spec in specs:
        for first in waits_for(spec, specs):
            assert ordered.index(first) < ordered.index(spec)
    assert waits_for(RunSpec("seqgan", "tiny", 1), specs) == [RunSpec("mle", "tiny", 1)]
    assert waits_for(RunSpec("ss", "tiny", 0), specs) == []


def test_parallel_runs_start_the_longest_chain_of_work_first(tiny_dataset):
    mle, seqgan, ss, vae = (RunSpec(m, "tiny", 0) for m in ("mle", "seqgan", "ss", "vae"))
    timed = {("mle", "tiny", "default"): 10.0, ("seqgan", "tiny", "default"): 100.0,
             ("ss", "tiny", "default"): 30.0, ("vae", "tiny", "default"): 50.0}
    # mle heads seqgan (10 + 100), longer than vae alone (50)
    assert longest_first([ss, vae, mle, seqgan], timed) == [mle, seqgan, vae, ss]
    del timed[("ss", "tiny", "default")]  # never timed: it may be long, it goes first
    assert longest_first([vae, mle, seqgan, ss], timed) == [ss, mle, seqgan, vae]
    assert longest_first([vae, ss, mle], {}) == [vae, ss, mle]


def finished(results, run_id, method, seed, settings, seconds):
    directory = store.run_dir(results, store.RunKey(run_id, "tiny", method, seed))
    directory.mkdir(parents=True)
    store.write_json(directory / store.CONFIG, {
        "run_id": run_id, "dataset": "tiny", "method": method, "seed": seed,
        "profile": "default", "settings": settings})
    store.write_json(directory / store.METRICS, {
        "train_seconds": seconds, "judge_lm_seconds": 1.0, "eval_seconds": 2.0})
    store.write_json(store.run_id_dir(results, run_id) / store.PLAN, {})


def test_expected_run_times_come_from_finished_runs_with_the_same_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "REFERENCE_RESULTS", tmp_path / "no-reference-sets")
    finished(None, "a", "mle", 0, {}, 10.0)
    finished(None, "b", "mle", 1, {}, 20.0)
    finished(None, "b", "mle", 2, {}, 90.0)
    finished(None, "b", "ss", 0, {"epochs": "2"}, 5.0)
    assert past_seconds(RunOptions("new")) == {("mle", "tiny", "default"): 23.0}
    assert past_seconds(RunOptions("new", settings={"epochs": "2"})) == {
        ("ss", "tiny", "default"): 8.0}


def test_runs_never_timed_here_take_the_newest_reference_sets_times(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    monkeypatch.setattr(store, "REFERENCE_RESULTS", reference)
    finished(reference, "reference-cpu-2026-11-30", "mle", 0, {}, 100.0)
    finished(reference, "reference-cpu-2026-11-30", "vae", 0, {}, 400.0)
    finished(reference, "reference-cpu-2026-12-02", "vae", 0, {}, 200.0)
    finished(None, "mine", "mle", 0, {}, 10.0)
    assert past_seconds(RunOptions("new")) == {("mle", "tiny", "default"): 13.0,
                                               ("vae", "tiny", "default"): 203.0}
    # Runs into the reference sets' own directory: their runs are its history, every run id.
    assert past_seconds(RunOptions("new", results=str(reference))) == {
        ("mle", "tiny", "default"): 103.0, ("vae", "tiny", "default"): 303.0}


def test_unknown_executor_is_a_user_error(cli):
    result = cli("run", "-m", "mle", "-d", "oracle", "--executor", "ray")
    assert result.exit_code == 2 and "unknown executor 'ray'; choose one of: local" in result.output


@pytest.mark.slow
def test_local_runs_record_a_plan_that_status_reads(cli, tiny_dataset, unigram_plugin):
    assert cli("-q", "run", "-m", "unigram", "-m", "real", "-d", "tiny").exit_code == 0
    plan = json.loads((results() / "default" / "plan.json").read_text())
    assert plan["executor"] == "local" and len(plan["runs"]) == 2
    status = cli("status")
    assert status.exit_code == 0 and "### default (local): 2 done" in status.output


KILLED = {"status": "failed", "reason": store.DIED}  # store.run_status of a killed run


@pytest.mark.parametrize("status, live, submitted, expected", [
    ({"status": "finished"}, None, True, ("done", "")),
    ({"status": "failed", "reason": "Diverged"}, None, True, ("failed", "Diverged")),
    ({"status": "unfinished"}, "queued", True, ("queued", "")),
    ({"status": "running"}, "running", True, ("running", "")),
    ({"status": "running", "pid": os.getpid()}, None, False, ("running", "")),
    (KILLED, None, False, ("failed", store.DIED)),
    (KILLED, "queued", True, ("queued", "")),  # the job requeued after its process died
    ({"status": "running", "host": "elsewhere"}, None, True, ("failed", "")),  # job gone
    ({"status": "interrupted", "reason": "signal"}, None, False, ("interrupted", "signal")),
    ({"status": "unfinished"}, None, True, ("failed", "")),  # job gone without a result
    ({"status": "unfinished"}, None, False, ("missing", "")),
])
def test_state_of_a_run(status, live, submitted, expected):
    assert run_state._state(status, live, submitted) == expected


@pytest.mark.slow
def test_submitit_jobs_respect_dependencies_and_only_failures_are_resubmitted(
        cli, tiny_everywhere, submitit_local):
    args = ["-q", "run", "-m", "seqgan", "-m", "mle", "-d", "tiny", "--executor", submitit_local,
            "--wait", *TINY]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    plan_path = next(results().glob("*/plan.json"))
    plan = json.loads(plan_path.read_text())
    first_jobs = dict(plan["jobs"])
    assert set(first_jobs) == {"mle/tiny/seed-0", "seqgan/tiny/seed-0"}
    run_dirs = {m: plan_path.parent / "tiny" / m / "seed-0" for m in ("mle", "seqgan")}
    # SeqGAN's job was started after the MLE run finished, and reused its generator.
    started = json.loads((run_dirs["seqgan"] / "config.json").read_text())["started"]
    finished = store.read_json(run_dirs["mle"] / "status.json")["updated"]
    assert started >= finished
    assert "reusing the MLE pre-training" in (run_dirs["seqgan"] / "run.log").read_text()
    assert "| seqgan" in result.output  # --wait prints the tables
    status = cli("status")
    assert "2 done" in status.output

    # SeqGAN fails (as a diverged or killed job would leave it); the same command again
    # resubmits that run only.
    (run_dirs["seqgan"] / "metrics.json").unlink()
    store.write_status(run_dirs["seqgan"], "failed", reason="Diverged: test")
    assert "1 done, 1 failed" in cli("status").output
    assert "Diverged: test" in cli("status").output
    again = cli(*args)
    assert again.exit_code == 0, again.output
    jobs = json.loads(plan_path.read_text())["jobs"]
    assert jobs["mle/tiny/seed-0"] == first_jobs["mle/tiny/seed-0"]
    assert jobs["seqgan/tiny/seed-0"] != first_jobs["seqgan/tiny/seed-0"]
    assert (run_dirs["seqgan"] / "metrics.json").exists()
    assert "2 done" in cli("status").output


def test_a_job_that_dies_is_failed_with_its_log(cli, tiny_everywhere, submitit_local, monkeypatch):
    """A job killed before the run could say why: status shows the end of its log."""
    specs = [RunSpec("mle", "tiny", 0)]
    plan = Plan(submitit_local, specs, RunOptions("dead", str(results())),
                jobs={"mle/tiny/seed-0": "99999999"})
    jobs = store.jobs_dir(results(), "dead")
    jobs.mkdir(parents=True)
    (jobs / "99999999_0_log.err").write_text("Traceback...\nslurmstepd: error: "
                                             "*** JOB 99999999 CANCELLED ***\n")
    plan.save()
    row = run_state.run_states(plan)[0]
    assert row["state"] == "failed" and "JOB 99999999 CANCELLED" in row["reason"]


PARALLEL = ["-m", "mle", "-m", "seqgan", "-m", "ss", "-d", "tiny", "--threads", "1", *TINY]


def _metrics(results: Path) -> dict:
    timing = ("train_seconds", "eval_seconds", "judge_lm_seconds")
    return {str(d.relative_to(results)): {k: v for k, v in store.read_json(d / "metrics.json").items()
                                          if k not in timing}
            for d in sorted(results.glob("*/tiny/*/seed-*"))}


@pytest.mark.slow
def test_jobs_run_at_once_in_dependency_order_with_the_numbers_of_one_at_a_time(
        cli, tiny_everywhere, tmp_path):
    alone = cli("-q", "run", *PARALLEL, "--results", str(tmp_path / "alone"))
    assert alone.exit_code == 0, alone.output
    together = cli("-q", "run", *PARALLEL, "--jobs", "2", "--results", str(tmp_path / "together"))
    assert together.exit_code == 0, together.output
    assert _metrics(tmp_path / "together") == _metrics(tmp_path / "alone")
    seqgan = next((tmp_path / "together").glob("*/tiny/seqgan/seed-0"))
    assert "reusing the MLE pre-training" in (seqgan / "run.log").read_text()
    assert store.read_json(seqgan / "config.json")["torch_threads"] == 1


@pytest.mark.slow
def test_a_kill_during_jobs_resumes_like_a_kill_during_one_run(tiny_everywhere, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-c", "from harness.cli import main; main()", "-q", "run",
               *PARALLEL, "--set", "adv_batches=6", "--jobs", "2"]
    clean = subprocess.run(command + ["--results", str(tmp_path / "clean")], timeout=600,
                           capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    killed = subprocess.Popen(command + ["--results", str(tmp_path / "killed")],
                              start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "killed").glob("*/tiny/seqgan/seed-0/checkpoint.pt")):
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)  # the command and every run it started
    killed.wait()
    assert not (next((tmp_path / "killed").glob("*/tiny/seqgan/seed-0")) / "metrics.json").exists()
    again = subprocess.run(command + ["--results", str(tmp_path / "killed")], timeout=600,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert _metrics(tmp_path / "killed") == _metrics(tmp_path / "clean")
