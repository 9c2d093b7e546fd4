"""On a CUDA device: every method's tiny run, killed half-way through a checkpoint and
resumed, gives the metrics of an uninterrupted run, and `harness verify` repeats it
identically. Skipped without CUDA (``HARNESS_TEST_DEVICE=cpu`` runs the same checks on the
CPU, to try the tests themselves where there is no GPU)."""
from __future__ import annotations

import dataclasses
import os
import signal

import pytest
import torch

from harness.plugins import registry
from test_faults import drive, outcome, run_dir

DEVICE = os.environ.get("HARNESS_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")]

METHODS = ["random", "mle", "ss", "pg-bleu", "seqgan", "maligan", "rankgan", "leakgan",
           "relgan", "jsdgan", "vae"]
# Small values for every size and length a method's Config may have (each method takes
# the keys it has): every phase runs a few checkpointed steps.
TINY = {"epochs": 2, "pretrain_epochs": 2, "mle_epochs": 1, "eval_every": 1, "batch_size": 32,
        "adv_batches": 2, "adv_steps": 3, "adv_epochs": 1, "adv_eval_every": 1, "n_rollouts": 2,
        "disc_pretrain_rounds": 1, "disc_negatives": 64, "disc_batch_size": 32,
        "ranker_negatives": 64, "ranker_pretrain_rounds": 1, "prefixes": 8,
        "samples_per_prefix": 4, "latent_dim": 4, "iw_samples": 2, "active_units_batch": 64,
        "kl_anneal_steps": 10}


def tiny_settings(method: str) -> list[str]:
    fields = {f.name for f in dataclasses.fields(registry().methods[method].Config)}
    return [f"{key}={value}" for key, value in TINY.items() if key in fields]


@pytest.mark.parametrize("method", METHODS)
def test_a_killed_run_resumes_identically_and_verifies_on_the_device(cli, tiny_dataset,
                                                                     tmp_path, method):
    settings, device = tiny_settings(method), ("--device", DEVICE)
    clean = drive("none", method, tmp_path / "clean", settings, device)
    assert clean.returncode == 0, clean.stderr
    killed = drive("kill-writing:checkpoint.pt:2", method, tmp_path / "killed", settings, device)
    assert killed.returncode in (0, -signal.SIGKILL), killed.stderr  # random: no 2nd checkpoint
    resumed = drive("none", method, tmp_path / "killed", settings, device)
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(tmp_path / "killed", method) == outcome(tmp_path / "clean", method)
    verified = cli("verify", str(run_dir(tmp_path / "clean", method)))
    assert verified.exit_code == 0, verified.output
    assert verified.output.splitlines()[-1].startswith("identical")
