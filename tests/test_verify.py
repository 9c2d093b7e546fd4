"""`harness verify`: a finished run re-run from what its directory records gives the same
metrics, bit for bit on the CPU; a committed reference run does too."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import store
from harness.verify import compare

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference-cpu-2026-12-02"


def test_compare_is_exact_on_the_cpu_and_tolerant_on_a_gpu():
    recorded = {"nll_oracle": 9.0, "bleu2": float("nan"), "train_seconds": 1.0, "gone": 1.0}
    repeated = {"nll_oracle": 9.0 + 1e-12, "bleu2": float("nan"), "train_seconds": 2.0}
    exact = {row.metric: row.matches for row in compare(recorded, repeated)}
    assert exact == {"nll_oracle": False, "bleu2": True, "gone": False}  # timings aside
    tolerant = {row.metric: row.matches for row in compare(recorded, repeated, 1e-3)}
    assert tolerant["nll_oracle"] is True


def test_a_run_re_run_matches_bit_for_bit_and_a_changed_metric_is_caught(cli, tiny_dataset):
    assert cli("-q", "run", "-m", "mle", "-d", "tiny", "--set", "epochs=2", "--threads", "1"
               ).exit_code == 0
    run_dir = next(Path(os.environ["HARNESS_RESULTS"]).glob("*/tiny/mle/seed-0"))
    result = cli("verify", str(run_dir))
    assert result.exit_code == 0, result.output
    assert "metrics match" in result.output.splitlines()[-1]
    metrics = store.read_json(run_dir / "metrics.json")
    store.write_json(run_dir / "metrics.json", {**metrics, "nll_oracle": metrics["nll_oracle"] + 1e-9})
    changed = cli("verify", str(run_dir))
    assert changed.exit_code == 1 and "differ: nll_oracle" in changed.output


def test_a_committed_reference_run_matches_bit_for_bit(cli, mirror):
    run_dir = REFERENCE / "oracle" / "random" / "seed-0"
    assert (run_dir / "metrics.json").exists(), f"the committed reference run {run_dir} is missing"
    result = cli("verify", str(run_dir), "--data-mirror", str(mirror))
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["torch_threads"] == 1 and config["device"] == "cpu"
