"""Runs beside each other, and runs whose process died without a word: what the
harness says about them."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from harness import executors, store, table
from harness.runner import RunOptions, RunSpec


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
                                                "method": "mle", "seed": 0})
    store.write_status(directory, "running", pid=pid, host=host)
    plan = executors.Plan("local", [spec], options)
    plan.save()

    reason = store.DIED if expected == "failed" else ""
    assert table.unfinished(tmp_path) == [f"{directory}: {expected}" + (f" ({reason})" if reason else "")]
    row = executors.run_states(plan)[0]
    assert (row["state"], row["reason"]) == (expected, reason)
