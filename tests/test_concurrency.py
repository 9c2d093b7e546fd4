"""Runs beside each other: real `harness run` processes started twice on the same run,
killed under their ``--jobs`` workers, or dead without a word, and what the harness says
then. Runs are held at a checkpoint by tests/harness_hold.py while the test acts."""
from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import plugins, store, table
from harness.api import HarnessError
from harness.plan import Plan, RunOptions, RunSpec
from harness.run_state import run_states
from harness.runner import run_one

TESTS = Path(__file__).resolve().parent
TINY = ["--set", "epochs=2", "--set", "batch_size=32", "--threads", "1"]
TIMINGS = ("train_seconds", "eval_seconds", "judge_lm_seconds")


def harness_args(results: Path, *args: str) -> list[str]:
    """`harness run` of MLE on the tiny data, run id ``busy``."""
    return ["-q", "run", "-m", "mle", "-d", "tiny", "--run-id", "busy", "--results",
            str(results), *TINY, *args]


def command(results: Path, *args: str) -> list[str]:
    """The same in a process of its own."""
    return [sys.executable, "-c", "from harness.cli import main; main()",
            *harness_args(results, *args)]


def environment() -> dict:
    """The tiny data set and the hold (tests/harness_hold.py) in every process started."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, plugins.PLUGINS_ENV: "harness_tiny,harness_hold", "PYTHONPATH": path}


def start(results: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(command(results, *args), env=environment(), text=True, **popen)


def finish(results: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(results, *args), env=environment(), capture_output=True,
                          text=True, timeout=300)


def run_dir(results: Path, seed: int = 0) -> Path:
    return results / "busy" / "tiny" / "mle" / f"seed-{seed}"


def hold(directory: Path) -> Path:
    """Hold the run of ``directory`` at its first checkpoint until the file returned is gone."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hold").touch()
    return directory / "hold"


def until(condition, process: subprocess.Popen | None = None, seconds: float = 120) -> None:
    """Wait for ``condition()``; fail if ``process`` ends first or time runs out."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert process is None or process.poll() is None, "the process ended first"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def files(results: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(results)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(results.rglob("*")) if p.is_file()}


def metrics(directory: Path) -> dict:
    found = json.loads((directory / store.METRICS).read_text())
    return {k: v for k, v in found.items() if k not in TIMINGS}


@pytest.mark.slow
def test_a_second_identical_command_names_the_process_running_the_run(cli, tiny_dataset,
                                                                       tmp_path):
    undisturbed = cli(*harness_args(tmp_path / "alone"))
    assert undisturbed.exit_code == 0, undisturbed.output
    results = tmp_path / "busy"
    released = hold(run_dir(results))
    first = start(results, stderr=subprocess.PIPE)
    until(lambda: (run_dir(results) / "held").exists(), first)
    before = files(results)

    second = finish(results)

    status = store.read_json(run_dir(results) / store.STATUS)
    assert second.returncode == 2, second.stderr
    assert second.stderr.splitlines() == [
        f"Error: mle/tiny/seed-0 of run id busy is being run by process {first.pid} on host "
        f"{platform.node()} (since {status['updated']}); wait for it to end or stop it, then "
        f"run the command again"]
    assert files(results) == before  # the second changed nothing, plan.json included
    released.unlink()
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert metrics(run_dir(results)) == metrics(run_dir(tmp_path / "alone"))


LOCK_AND_WAIT = ("import fcntl, sys, time; lock = open(sys.argv[1], 'a'); "
                 "fcntl.flock(lock, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)")


@pytest.mark.slow
def test_a_run_locked_by_another_process_is_refused_before_anything_is_written(
        cli, tiny_dataset, tmp_path):
    spec, options = RunSpec("mle", "tiny", 0), RunOptions("busy", str(tmp_path),
                                                          settings={"epochs": "2"})
    directory = options.run_dir(spec)
    directory.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_AND_WAIT, directory / store.RUN_LOCK],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        # A holder that has not written its status.json yet is not named, but refuses...
        refused = cli("-q", "run", "-m", "mle", "-d", "tiny", "--run-id", "busy",
                      "--results", str(tmp_path), "--set", "epochs=2")
        assert refused.exit_code == 2
        assert refused.output.splitlines() == [
            "Error: mle/tiny/seed-0 of run id busy is being run by another process; wait for "
            "it to end or stop it, then run the command again"]
        assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [store.RUN_LOCK]
        # ...and one that has is named, by run_one itself (two commands started at once).
        store.write_status(directory, "running", pid=holder.pid, host=platform.node())
        written = files(tmp_path)
        with pytest.raises(HarnessError, match=f"being run by process {holder.pid} on host "):
            run_one(spec, options)
        assert files(tmp_path) == written
    finally:
        holder.kill()
        holder.wait()
    # The lock ended with its holder: the run is free to run.
    run_one(spec, options)
    assert store.run_status(directory) == {"status": "finished"}


def group(leader: int) -> list[int]:
    """The live (not zombie) processes of process group ``leader``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == leader and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_end_when_their_parent_is_killed_and_the_command_resumes(cli, tiny_dataset,
                                                                         tmp_path):
    results = tmp_path / "jobs"
    released = hold(run_dir(results, seed=0))  # seed 1 finishes, its worker waits idle
    args = ("--seed", "0", "--seed", "1", "--jobs", "2")
    with open(tmp_path / "stderr", "w") as stderr:  # read by no one once the parent is gone
        parent = start(results, *args, stderr=stderr, start_new_session=True)
    try:
        until(lambda: (run_dir(results, 0) / "held").exists()
              and (run_dir(results, 1) / store.METRICS).exists(), parent)
        assert len(group(parent.pid)) >= 4  # it, two workers, multiprocessing's resource tracker

        parent.kill()
        parent.wait()

        until(lambda: not group(parent.pid), seconds=20)
    finally:
        if group(parent.pid):  # what the test leaves, the test ends
            os.killpg(parent.pid, signal.SIGKILL)
    # The held run was asked to stop: it saved its checkpoint and said so.
    assert store.read_json(run_dir(results, 0) / store.STATUS)["status"] == "interrupted"
    released.unlink()
    again = cli(*harness_args(results, *args))
    assert again.exit_code == 0, again.output
    assert store.run_status(run_dir(results, 0)) == {"status": "finished"}


@pytest.mark.parametrize("pid, host, expected", [
    ("dead", platform.node(), "failed"),    # killed outright: status.json still says running
    ("alive", platform.node(), "running"),
    ("dead", "another-machine", "running"),  # a process elsewhere cannot be checked from here
])
def test_table_and_status_agree_on_a_run_that_says_it_is_running(pid, host, expected, tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True)
    pid = int(ended.stdout) if pid == "dead" else os.getpid()
    spec, options = RunSpec("mle", "tiny", 0), RunOptions("killed", str(tmp_path))
    directory = options.run_dir(spec)
    store.write_json(directory / store.CONFIG, {"run_id": "killed", "dataset": "tiny",
                                                "method": "mle", "seed": 0,
                                                "profile": "default"})
    store.write_status(directory, "running", pid=pid, host=host)
    plan = Plan("local", [spec], options)
    plan.save()

    reason = store.DIED if expected == "failed" else ""
    shown = f"{directory}: {expected}" + (f" ({reason})" if reason else "")
    assert table.unfinished(tmp_path) == [shown]
    row = run_states(plan)[0]
    assert (row["state"], row["reason"]) == (expected, reason)
