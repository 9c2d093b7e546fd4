"""`harness verify`: a finished run re-run from what its directory records. On the same
machine and threads it repeats bit for bit; elsewhere each metric is judged against its
noise (the other seeds of its row, else its standard error), and a run made otherwise is
caught."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import store
from harness.verify import LEVEL, Report, changed_conclusions, environment_differences, judge

REFERENCE = store.reference_dir("reference-cpu-2026-12-04")


def results() -> Path:
    return Path(os.environ["HARNESS_RESULTS"])


def tiny_run(cli, method: str = "mle", seed: int = 0, run_id: str = "ours",
             *settings: str) -> Path:
    args = ["-q", "run", "-m", method, "-d", "tiny", "--seed", str(seed), "--threads", "1",
            "--run-id", run_id]
    for setting in settings or ("epochs=2",):
        args += ["--set", setting]
    assert cli(*args).exit_code == 0
    return results() / run_id / "tiny" / method / f"seed-{seed}"


def test_a_metric_is_judged_against_the_other_seeds_or_its_standard_error():
    assert judge("m", 1.0, 1.0, []).verdict == "identical"
    assert judge("m", math.nan, math.nan, []).verdict == "identical"
    assert judge("m", 1.0, 1.1, []).verdict == "no noise estimate"
    assert judge("m", 1.0, None, [0.9, 1.1]).verdict == "missing"
    # Two other seeds 0.2 apart: s = 0.1414, the difference's sd s·√2 = 0.2, t(1 df) 12.71.
    row = judge("m", 1.0, 3.0, [0.9, 1.1])
    assert row.verdict == "within noise" and row.basis.startswith("2 other seeds")
    assert row.noise == pytest.approx(0.2) and row.units == pytest.approx(10.0)
    assert row.limit == pytest.approx(12.706, abs=1e-3)
    assert judge("m", 1.0, 3.6, [0.9, 1.1]).verdict == "outside"
    # Standard errors 0.03 and 0.04: the difference's sd is 0.05, the normal limit 1.96.
    row = judge("m", 1.0, 1.09, [], 0.03, 0.04)
    assert row.noise == pytest.approx(0.05) and row.verdict == "within noise"
    assert judge("m", 1.0, 1.1, [], 0.03, 0.04).verdict == "outside"
    # A run recorded before standard errors were stored: both sides get the one there is.
    assert judge("m", 1.0, 1.1, [], None, 0.05).noise == pytest.approx(0.05 * math.sqrt(2))
    # Seeds that all agree (a constant such as n_samples): any difference is outside.
    assert judge("n", 10, 11, [10, 10]).units == math.inf


def test_the_verdict_is_a_stated_test_over_the_metrics():
    within = [judge(f"m{i}", 1.0, 1.01, [], 0.01, 0.01) for i in range(37)]
    assert Report(within, exact=False).passed
    # Two metrics outside by a little: chance gives that among 37.
    some = within[:35] + [judge(f"x{i}", 1.0, 1.04, [], 0.01, 0.01) for i in range(2)]
    report = Report(some, exact=False)
    by_chance = 1 - 0.95 ** 37 - 37 * 0.05 * 0.95 ** 36  # P(2 or more of 37 outside)
    assert report.outside == 2 and report.p_value == pytest.approx(by_chance)
    assert report.passed
    # One metric a hundred noise units away: beyond chance even as the largest of 37.
    edited = within[:36] + [judge("bleu3", 0.3, 0.99, [], 0.005, 0.005)]
    assert not Report(edited, exact=False).passed
    # Many outside by a little: more than chance gives.
    many = within[:27] + [judge(f"x{i}", 1.0, 1.04, [], 0.01, 0.01) for i in range(10)]
    assert Report(many, exact=False).p_value < 0.01 and not Report(many, exact=False).passed
    assert 0 < LEVEL < 1


@pytest.mark.slow
def test_a_run_re_run_is_identical_and_an_edited_metric_is_caught(cli, tiny_dataset):
    run_dir = tiny_run(cli)
    result = cli("verify", str(run_dir))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("identical: 36 identical")
    assert cli("verify", "--exact", str(run_dir)).exit_code == 0
    metrics = store.read_json(run_dir / "metrics.json")
    store.write_json(run_dir / "metrics.json", {**metrics, "nll_oracle": metrics["nll_oracle"] + 1e-9})
    exact = cli("verify", "--exact", str(run_dir))
    assert exact.exit_code == 1 and "differ: nll_oracle" in exact.output
    tiny = cli("verify", str(run_dir))  # a last-bit difference is well within the noise
    assert tiny.exit_code == 0 and tiny.output.splitlines()[-1].startswith("within noise")
    store.write_json(run_dir / "metrics.json", {**metrics, "bleu3": 0.99, "nll_test": 0.01})
    edited = cli("verify", str(run_dir))
    assert edited.exit_code == 1 and edited.output.splitlines()[-1].startswith("differs")
    outside = [line for line in edited.output.splitlines() if "| outside" in line]
    assert {line.split("|")[1].strip() for line in outside} == {"bleu3", "nll_test"}


@pytest.mark.slow
def test_a_run_made_otherwise_planted_in_a_row_of_four_seeds_is_caught(cli, tiny_dataset):
    # Four seeds, not three: against two others the t-test has one degree of freedom, and
    # whether it catches the planted run then depends on how those two seeds fell.
    runs = [tiny_run(cli, "mle", seed) for seed in range(4)]
    planted = tiny_run(cli, "random", 0, "elsewhere", "emb_dim=8")
    shutil.copy(planted / "metrics.json", runs[0] / "metrics.json")
    result = cli("verify", str(runs[0]))
    assert result.exit_code == 1, result.output
    assert "3 other seeds (t, 2 df)" in result.output
    assert result.output.splitlines()[-1].startswith("differs")


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT",
                    reason="torch already runs its kernels without vector instructions here")
@pytest.mark.slow
def test_on_another_instruction_set_a_run_verifies_within_noise_not_bit_for_bit(
        cli, tiny_dataset, tiny_everywhere):
    """torch's kernels for another CPU (here: no vector instructions, as a machine without
    AVX would run) round differently in the last bits: what another machine does."""
    run_dir = tiny_run(cli)

    def verify_elsewhere(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from harness.cli import main; main()",
                               "verify", str(run_dir), *options], capture_output=True, text=True,
                              env={**tiny_everywhere, "ATEN_CPU_CAPABILITY": "default"})

    elsewhere = verify_elsewhere()
    assert elsewhere.returncode == 0, elsewhere.stdout + elsewhere.stderr
    assert elsewhere.stdout.splitlines()[-1].startswith("within noise")
    assert "torch_cpu_capability" in elsewhere.stdout  # the environments' difference shown
    assert verify_elsewhere("--exact").returncode == 1


def test_verify_says_which_conclusions_of_the_table_a_repeated_run_would_change(tmp_path):
    for method, values in (("seqgan", [8.70, 8.75, 8.72]), ("mle", [9.05, 9.01, 9.08])):
        for seed, value in enumerate(values):
            run = tmp_path / "paper" / "oracle" / method / f"seed-{seed}"
            store.write_json(run / "config.json", {"run_id": "paper", "dataset": "oracle",
                                                   "method": method, "seed": seed,
                                                   "profile": "paper"})
            store.write_json(run / "metrics.json", {"nll_oracle": value, "nll_test": value - 1})
    run = tmp_path / "paper" / "oracle" / "seqgan" / "seed-0"
    config = store.read_json(run / "config.json")
    assert changed_conclusions(run, config, {"nll_oracle": 8.71, "nll_test": 7.71}) == []
    changed = changed_conclusions(run, config, {"nll_oracle": 9.6, "nll_test": 8.6})
    assert changed == ["seqgan vs mle: nll_oracle: better -> no difference",
                       "seqgan vs mle: nll_test: better -> no difference"]


@pytest.mark.slow
def test_config_records_what_decides_the_last_bits(cli, tiny_dataset):
    config = store.read_json(tiny_run(cli) / "config.json")
    assert config["device"] == "cpu" and config["precision"] == "fp32"
    environment = config["environment"]
    for field in ("cpu_model", "torch_cpu_capability", "mkl", "onednn", "numpy_blas",
                  "torch_threads", "torch", "numpy", "git_commit"):
        assert field in environment, field
    assert environment["torch_threads"] == 1 and environment["torch_cpu_capability"]


@pytest.mark.slow
def test_verify_refuses_a_run_of_another_kind_of_device_unless_asked(cli, tiny_dataset):
    run_dir = tiny_run(cli)
    config = store.read_json(run_dir / "config.json")
    store.write_json(run_dir / "config.json", {**config, "device": "cuda:0"})
    refused = cli("verify", str(run_dir), "--device", "cpu")
    assert refused.exit_code == 2 and "was made on cuda" in refused.output
    assert "--cross-device" in refused.output
    crossed = cli("verify", str(run_dir), "--device", "cpu", "--cross-device")
    assert crossed.exit_code == 0, crossed.output


@pytest.mark.slow
def test_a_committed_reference_run_verifies_here(cli, mirror):
    """Bit for bit on the machine that made it; within its noise on any other."""
    run_dir = REFERENCE / "oracle" / "random" / "seed-0"
    assert (run_dir / "metrics.json").exists(), f"the committed reference run {run_dir} is missing"
    result = cli("verify", str(run_dir), "--data-mirror", str(mirror))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith(("identical", "within noise"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["torch_threads"] == 1 and config["device"] == "cpu"


def test_verify_names_data_that_differ_from_the_recorded_data():
    recorded = {"environment": {"torch": "2.13.0"}, "corpus": {"sha256": "a" * 64, "n_lines": 300}}
    repeated = {"environment": {"torch": "2.13.0"}, "corpus": {"sha256": "b" * 64, "n_lines": 300}}
    assert environment_differences(recorded, repeated) == {"data sha256": ("a" * 64, "b" * 64)}
