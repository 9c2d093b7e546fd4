import json
import os
from pathlib import Path

import pandas as pd
import pytest

from harness import store, table


def results() -> Path:
    return Path(os.environ["HARNESS_RESULTS"])


def files_under(path: Path) -> set:
    return {p for p in path.rglob("*")} if path.exists() else set()


def test_third_party_method_runs_end_to_end(cli, unigram_plugin, tiny_dataset):
    result = cli("-q", "run", "-m", "unigram", "-d", "tiny", "--seed", "3")
    assert result.exit_code == 0, result.output
    run_dir = results() / "default" / "tiny" / "unigram" / "seed-3"
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert config["plugin"] == "harness_unigram" and config["config"] == {"smoothing": 1.0}
    assert config["environment"]["torch"] and config["device"] == "cpu"
    assert metrics["n_samples"] == 256 and 0 < metrics["nll_oracle"] < 20
    curve = pd.read_csv(run_dir / "curve.csv")
    assert list(curve.phase) == ["count"] and "nll_oracle" in curve
    assert "| unigram" in result.output  # the table is printed after the run


@pytest.mark.slow
def test_mle_learns_and_results_round_trip_through_table(cli, tiny_dataset):
    result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--seeds", "2",
                 "--set", "epochs=6", "--set", "eval_every=3", "--set", "lr=0.02")
    assert result.exit_code == 0, result.output
    runs = sorted(results().glob("*/tiny/mle/seed-*"))
    assert [r.name for r in runs] == ["seed-0", "seed-1"]
    assert runs[0].parents[2].name.startswith("default-")  # --set gives its own run id
    curve = pd.read_csv(runs[0] / "curve.csv")
    assert list(curve.epoch) == [0, 3, 6]
    assert curve.nll_oracle.iloc[-1] < curve.nll_oracle.iloc[0] - 0.3  # it learned
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    summary = table.summary(table.collect(results()))
    row = summary.iloc[0]
    assert row.method == "mle" and row.seeds == 2
    mean = sum(m["nll_oracle"] for m in metrics) / 2
    assert row.nll_oracle.startswith(f"{mean:.4f} ± ")
    csv = cli("table", "--format", "csv")
    assert csv.exit_code == 0 and csv.output.splitlines()[0] == (
        "run_id,dataset,data,device,method,nll_oracle,nll_test,self_bleu4,seeds")  # MLE: no best kept


def test_finished_runs_are_not_repeated(cli, unigram_plugin, tiny_dataset):
    assert cli("-q", "run", "-m", "unigram", "-d", "tiny").exit_code == 0
    metrics = results() / "default" / "tiny" / "unigram" / "seed-0" / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    assert cli("-q", "run", "-m", "unigram", "-d", "tiny").exit_code == 0
    assert metrics.stat().st_mtime_ns == stamp


def test_table_skips_unfinished_runs(cli, unigram_plugin, tiny_dataset):
    assert cli("-q", "run", "-m", "unigram", "-d", "tiny").exit_code == 0
    half = results() / "default" / "tiny" / "mle" / "seed-0"
    half.mkdir(parents=True)
    (half / "config.json").write_text(json.dumps({"run_id": "default", "dataset": "tiny",
                                                  "method": "mle", "seed": 0,
                                                  "profile": "default"}))
    assert set(table.collect(results()).method) == {"unigram"}


@pytest.mark.parametrize("args, message", [
    (["run", "-m", "nope", "-d", "oracle"], "unknown method 'nope'; choose one of: "),
    (["run", "-m", "mle", "-d", "nope"], "unknown data set 'nope'; choose one of: "),
    (["run", "-m", "mle", "-d", "oracle", "--profile", "huge"],
     "unknown profile 'huge'; choose one of: default, paper"),
    (["run", "-m", "mle", "-d", "oracle", "--set", "epoch=3"], "--set epoch: no such setting for mle"),
    (["run", "-m", "mle", "-d", "oracle", "--set", "epochs=many"], "--set epochs=many: expected int (default 8)"),
    (["run", "-m", "mle", "-d", "oracle", "--set", "epochs"], "--set 'epochs': expected key=value"),
    (["run", "-m", "mle"], "name a method and a data set"),
    (["table"], "no finished runs under"),
])
def test_user_errors_are_one_line_with_exit_code_2(cli, args, message):
    before = files_under(results())
    result = cli(*args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert "Traceback" not in result.output
    assert files_under(results()) == before


def test_cuda_requested_without_a_gpu_is_a_user_error(cli, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = cli("run", "-m", "mle", "-d", "oracle", "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA device is available" in result.output
    assert not results().exists()


def test_plan_expands_methods_datasets_seeds(tiny_dataset):
    from harness.plugins import registry
    from harness.api import HarnessError
    from harness.plan import plan

    specs = plan(["mle", "real"], ["tiny"], [0, 1], "default")
    assert [(s.method, s.seed) for s in specs] == [("mle", 0), ("mle", 1), ("real", 0), ("real", 1)]
    everything = plan(None, None, [0, 1], "paper")
    methods = registry().methods
    # A data set that needs an argument (text:PATH) has nothing to run until it is given one;
    # one made for a single published figure (oracle-relgan) runs only when named.
    datasets = [name for name, d in registry().datasets.items() if not d.argument and d.in_all]
    assert "text" in registry().datasets and "text" not in datasets
    assert "oracle-relgan" not in datasets and "oracle" in datasets
    assert {s.dataset for s in plan(["mle"], ["oracle-relgan"], [0], "default")} == {"oracle-relgan"}
    assert {(s.method, s.dataset, s.seed) for s in everything} == {
        (m, d, seed) for m in methods for d in datasets for seed in (0, 1)}
    assert len(everything) == len(methods) * len(datasets) * 2
    # A profile of the methods' own: only the methods that declare it, and the reference rows.
    authors = plan(None, ["tiny"], [0], "authors")
    assert sorted(s.method for s in authors) == ["leakgan", "mle", "pg-bleu", "random", "rankgan",
                                                 "real", "relgan", "seqgan", "ss"]
    # The profile's name until 0.3 plans the same runs; a method without it is refused.
    assert plan(None, ["tiny"], [0], "authors-2016") == authors
    with pytest.raises(HarnessError, match="maligan has no 'authors' profile"):
        plan(["maligan"], ["tiny"], [0], "authors")


@pytest.mark.slow
def test_plots_samples_and_sweep(cli, unigram_plugin, tiny_dataset):
    assert cli("-q", "run", "-m", "unigram", "-m", "mle", "-d", "tiny", "--set", "epochs=2",
               "--set", "eval_every=1").exit_code == 0
    run_dir = next(results().glob("*/tiny/mle/seed-0"))
    sweep = pd.read_csv(run_dir / "sweep.csv")
    assert list(sweep.temperature) == [0.3, 0.5, 0.7, 0.85, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0]
    assert sweep.nll_oracle.notna().all() and sweep.self_bleu4.between(0, 1).all()
    result = cli("plot")
    assert result.exit_code == 0, result.output
    written = [Path(line) for line in result.output.split()]
    assert {p.name.split("-")[0] for p in written} == {"curves", "quality"}
    assert all(p.stat().st_size > 1000 for p in written)
    shown = cli("samples", "-m", "mle", "-d", "tiny", "-n", "3")
    assert shown.exit_code == 0 and len(shown.output.strip().split("\n\n")) == 3
    missing = cli("samples", "-m", "mle", "-d", "tiny", "--seed", "9")
    assert missing.exit_code == 2 and "no finished run of mle on tiny, seed 9" in missing.output


@pytest.mark.slow
def test_generate_draws_fresh_samples_from_a_saved_generator(cli, tiny_dataset):
    assert cli("-q", "run", "-m", "mle", "-d", "tiny", "--set", "epochs=1").exit_code == 0
    run_dir = next(results().glob("*/tiny/mle/seed-0"))
    first = cli("generate", str(run_dir), "-n", "4", "--seed", "5")
    assert first.exit_code == 0, first.output
    assert len(first.output.strip().split("\n\n")) == 4
    assert cli("generate", str(run_dir), "-n", "4", "--seed", "5").output == first.output
    assert cli("generate", str(run_dir), "-n", "4", "--seed", "6").output != first.output


@pytest.mark.slow
def test_the_table_of_the_default_results_directory_has_every_section(
        cli, unigram_plugin, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_RESULTS")
    monkeypatch.chdir(tmp_path)  # ./runs, the default
    earlier = cli("-q", "run", "-m", "unigram", "-d", "tiny", "--run-id", "earlier")
    assert earlier.exit_code == 0, earlier.output
    ran = cli("-q", "run", "-m", "mle", "-m", "unigram", "-d", "tiny", "--set", "epochs=1")
    assert ran.exit_code == 0, ran.output
    shown = cli("table", "--baseline", "mle")
    for output in (ran.output, shown.output):
        assert "- mle: run with --set epochs=1" in output
    assert "At matched diversity" in shown.output
    # A run prints its own run id's table; `harness table` shows every run id.
    assert "(earlier;" not in ran.output and "(earlier;" in shown.output


def run_ids_of(csv_table: str) -> set[str]:
    return {line.split(",")[0] for line in csv_table.splitlines()
            if "," in line and not line.startswith("run_id,")}


def test_the_table_shows_your_runs_and_a_reference_set_only_when_asked(cli, tmp_path,
                                                                       monkeypatch):
    monkeypatch.delenv("HARNESS_RESULTS")
    monkeypatch.chdir(tmp_path)  # a clone's committed reference sets are not your runs
    yours = cli("table")
    assert yours.exit_code == 2 and "no finished runs under runs" in yours.output
    assert "harness table --reference" in yours.output
    name = "reference-authors-cpu-2026-11-30"
    assert name in store.reference_sets()
    shown = cli("table", "--reference", name, "--format", "csv")
    assert shown.exit_code == 0, shown.output
    assert run_ids_of(shown.output) == {name}
    assert run_ids_of(cli("table", "--reference", "--format", "csv").output) == \
        set(store.reference_sets())
    unknown = cli("table", "--reference", "nope")
    assert unknown.exit_code == 2 and f"choose one of: {name}" in unknown.output


def test_harness_list_says_which_methods_have_which_profiles(cli):
    lines = {line.split()[0]: line for line in cli("list").output.splitlines()
             if line.startswith("  ")}
    assert lines["mle"].endswith("[profiles: default, paper, authors]")
    assert "[profiles:" not in lines["maligan"]  # the base profiles only
