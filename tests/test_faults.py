"""Fault injection: real processes killed (SIGKILL) or stopped (SIGTERM) at chosen points
of pre-training, discriminator training, adversarial training and result writing; the
same command run again must finish with exactly the metrics of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness import plugins

DRIVER = Path(__file__).with_name("fault_driver.py")
# Tiny but complete: every phase runs a few checkpointed steps.
SETTINGS = {
    "mle": ["epochs=3", "eval_every=1", "batch_size=32"],
    "ss": ["epochs=3", "eval_every=1", "batch_size=32"],
    "vae": ["epochs=3", "batch_size=32", "emb_dim=8", "hidden_dim=8", "latent_dim=4",
            "iw_samples=2", "active_units_batch=64", "kl_anneal_steps=10"],
    "pg-bleu": ["pretrain_epochs=3", "eval_every=1", "batch_size=32", "adv_batches=3",
                "adv_eval_every=1", "n_rollouts=2"],
    "seqgan": ["pretrain_epochs=3", "eval_every=1", "batch_size=32", "adv_batches=3",
               "adv_eval_every=1", "n_rollouts=2", "disc_pretrain_rounds=2",
               "disc_negatives=64", "disc_batch_size=32"],
}
TIMINGS = ("train_seconds", "eval_seconds", "judge_lm_seconds")


def harness_args(method: str, results: Path, settings: list[str] | None = None) -> list[str]:
    args = ["-q", "run", "-m", method, "-d", "tiny", "--results", str(results),
            "--run-id", "faults"]
    for setting in settings or SETTINGS[method]:
        args += ["--set", setting]
    return args


def drive(fault: str, method: str, results: Path, settings: list[str] | None = None,
          options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``harness run`` of ``method`` on the tiny data in a process of its own, with
    ``fault`` injected (``settings``: its ``--set`` values, default SETTINGS[method];
    ``options``: more of ``harness run``'s, e.g. ``--device cuda``)."""
    env = {**os.environ, plugins.PLUGINS_ENV: "harness_tiny",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(DRIVER.parent),
                                                       os.environ.get("PYTHONPATH")]))}
    args = harness_args(method, results, settings) + list(options)
    return subprocess.run([sys.executable, str(DRIVER), fault, *args],
                          capture_output=True, text=True, env=env, timeout=300)


def run_dir(results: Path, method: str) -> Path:
    return results / "faults" / "tiny" / method / "seed-0"


def outcome(results: Path, method: str) -> dict:
    """What must not depend on a fault: the metrics, the learning curve, the samples."""
    directory = run_dir(results, method)
    metrics = json.loads((directory / "metrics.json").read_text())
    return {"metrics": {k: v for k, v in metrics.items() if k not in TIMINGS},
            "curve": pd.read_csv(directory / "curve.csv").astype(object).fillna("").to_dict("list"),
            "samples": (directory / "samples.txt").read_text()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """Each method's outcome without faults, each in its own results directory."""
    found = {}
    for method in SETTINGS:
        results = tmp_path_factory.mktemp(f"clean-{method}")
        done = drive("none", method, results)
        assert done.returncode == 0, done.stderr
        found[method] = outcome(results, method)
    return found


FAULTS = [
    ("seqgan", "kill-after:mle:2"),               # during MLE pre-training
    ("seqgan", "kill-after:discriminator:1"),     # during discriminator pre-training
    ("seqgan", "kill-after:adversarial:2"),       # during adversarial training
    ("seqgan", "kill-writing:checkpoint.pt:4"),   # half-way through writing a checkpoint
    ("seqgan", "kill-writing:metrics.json:1"),    # while writing the results
    ("pg-bleu", "kill-after:adversarial:1"),
    ("ss", "kill-after:train:2"),
    ("vae", "kill-after:train:1"),
    ("mle", "kill-writing:sweep.csv:1"),
]


@pytest.mark.slow
@pytest.mark.parametrize("method, fault", FAULTS)
def test_killed_run_resumes_to_identical_metrics(tmp_path, uninterrupted, method, fault):
    killed = drive(fault, method, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    directory = run_dir(tmp_path, method)
    assert not (directory / "metrics.json").exists()
    status = json.loads((directory / "status.json").read_text())
    assert status["status"] == "running"  # what a process killed outright leaves
    resumed = drive("none", method, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(tmp_path, method) == uninterrupted[method]
    assert not list(directory.glob(".*.tmp"))  # half-written files were cleared
    assert json.loads((directory / "status.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_stops_and_resumes(tmp_path, uninterrupted):
    stopped = drive("term-after:adversarial:1", "seqgan", tmp_path)
    assert stopped.returncode == 130, stopped.stderr
    assert "run the same command again to resume" in stopped.stderr
    directory = run_dir(tmp_path, "seqgan")
    status = json.loads((directory / "status.json").read_text())
    assert status["status"] == "interrupted" and "checkpoint saved" in status["reason"]
    import torch

    saved = torch.load(directory / "checkpoint.pt", weights_only=False)["state"]
    assert saved["phase"] == "adversarial" and saved["batch"] == 1
    assert {"generator", "optimizer", "rollout", "discriminator", "rng"} <= set(saved)
    assert drive("none", "seqgan", tmp_path).returncode == 0
    assert outcome(tmp_path, "seqgan") == uninterrupted["seqgan"]


@pytest.mark.slow
def test_table_reports_a_killed_run_instead_of_reading_it(tmp_path):
    assert drive("kill-after:mle:1", "mle", tmp_path).returncode == -signal.SIGKILL
    table = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                            "table", "--results", str(tmp_path)], capture_output=True, text=True)
    assert table.returncode == 2 and "no finished runs" in table.stderr
    assert "1 unfinished runs left out of the table" in table.stderr
    assert f"{run_dir(tmp_path, 'mle')}: failed (the process ended without saying why" \
        in table.stderr
