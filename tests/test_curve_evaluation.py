"""How a run's learning curve is judged: the best-so-far taken inside the phase where the
method's authors kept it, fresh evaluation draws at every point under `authors` (the same
draws as before elsewhere), and published figures whose conditions rest on our reading or
on an assumption."""
import json
import logging
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

import harness_tiny
from harness import evaluate, runner, store, table
from harness.api import RunContext
from harness.generator import load_generator
from harness_plugins.seqgan import SeqGan

# MLE points lower than every adversarial point: a best over the whole curve would be 2.9.
PLANTED = [{"phase": "mle", "epoch": 0, "nll_oracle": 4.0}, {"phase": "mle", "epoch": 5, "nll_oracle": 2.9},
           {"phase": "discriminator", "epoch": 5, "disc_loss": 0.6},
           {"phase": "adversarial", "epoch": 6, "nll_oracle": 3.6},
           {"phase": "adversarial", "epoch": 7, "nll_oracle": 3.4},
           {"phase": "adversarial", "epoch": 8, "nll_oracle": 3.5}]


def test_best_so_far_is_taken_inside_the_declared_phase_only():
    assert runner.best_so_far(PLANTED, SeqGan.best_so_far_phase) == {"nll_oracle_best_so_far": 3.4}
    assert runner.best_so_far(PLANTED, None) == {}  # no phase declared: no best-so-far
    assert runner.best_so_far(PLANTED, "vae") == {}  # no point of that phase


def planted_method(name: str, phase: str | None):
    """A method that records the planted curve and returns an untrained generator."""
    def train(ctx):
        for row in PLANTED:
            ctx.record(**row)
        from harness.training import new_generator
        return new_generator(ctx.corpus, 8, 8, ctx.device)

    method = harness_tiny.ToyMethod(name, train)
    method.best_so_far_phase = phase
    return method


@pytest.mark.slow
def test_the_table_shows_the_best_so_far_of_the_declared_phase(cli, tiny_dataset,
                                                               register_plugin, tmp_path):
    import types

    import harness

    module = types.ModuleType("harness_planted")

    @harness.hookimpl
    def register_methods(register):
        register(planted_method("planted-adversarial", "adversarial"))
        register(planted_method("planted-none", None))

    module.register_methods = register_methods
    register_plugin(module)
    for name in ("planted-adversarial", "planted-none"):
        result = cli("-q", "run", "-m", name, "-d", "tiny", "--results", str(tmp_path),
                     "--run-id", "planted", "--sweep", "1")
        assert result.exit_code == 0, result.output
    rows = table.collect(tmp_path)
    best = rows[rows.metric == "nll_oracle_best_so_far"].set_index("method").value
    assert best.to_dict() == {"planted-adversarial": 3.4}  # not 2.9; none where undeclared
    frame = table.comparison(rows, "tiny").set_index("method")
    assert frame.loc["planted-adversarial", "nll_oracle_best_so_far"] == "3.4000"
    assert frame.loc["planted-none", "nll_oracle_best_so_far"] == "–"
    config = json.loads((tmp_path / "planted" / "tiny" / "planted-adversarial" / "seed-0" /
                         "config.json").read_text())
    assert config["evaluation"] == {"curve_samples": "one stream for every point",
                                    "best_so_far_over": "adversarial"}


def mle_run(cli, results: Path, profile: str) -> Path:
    result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--profile", profile, "--results",
                 str(results), "--run-id", "r", "--sweep", "1", "--set", "epochs=2",
                 "--set", "eval_every=1", "--set", "lr=0.01")
    assert result.exit_code == 0, result.output
    return results / "r" / "tiny" / "mle" / "seed-0"


@pytest.mark.slow
def test_under_authors_every_curve_point_draws_samples_of_its_own(cli, tiny_dataset, tmp_path):
    corpus = harness_tiny.tiny_oracle_corpus("authors", 0)
    fresh = mle_run(cli, tmp_path / "authors", "authors")
    curve = pd.read_csv(fresh / "curve.csv")
    streams = json.loads((fresh / "config.json").read_text())["random_streams"]
    names = [evaluate.curve_samples_stream(point) for point in range(len(curve))]
    assert len({streams[name] for name in names}) == len(curve) == 3  # three seeds of their own
    generator = load_generator(fresh / "generator.pt")
    last = len(curve) - 1
    # The last point is the final generator judged on its own point's samples...
    assert curve.nll_oracle.iloc[-1] == evaluate.curve_metrics(generator, corpus, 0, last)["nll_oracle"]
    # ...which are not the evaluation's: another draw, another value.
    assert curve.nll_oracle.iloc[-1] != evaluate.curve_metrics(generator, corpus, 0)["nll_oracle"]
    assert json.loads((fresh / "config.json").read_text())["evaluation"]["curve_samples"] == \
        "fresh at every point"


@pytest.mark.slow
def test_under_default_every_curve_point_draws_the_evaluation_stream(cli, tiny_dataset, tmp_path):
    corpus = harness_tiny.tiny_oracle_corpus("default", 0)
    shared = mle_run(cli, tmp_path / "default", "default")
    curve = pd.read_csv(shared / "curve.csv")
    generator = load_generator(shared / "generator.pt")
    assert curve.nll_oracle.iloc[-1] == evaluate.curve_metrics(generator, corpus, 0)["nll_oracle"]
    streams = json.loads((shared / "config.json").read_text())["random_streams"]
    assert not any(name.startswith(f"{evaluate.SAMPLES_STREAM}: curve point") for name in streams)


def test_a_snapshot_evaluated_on_fresh_draws_is_kept_apart(tmp_path):
    def context(fresh: bool) -> RunContext:
        return RunContext(corpus=None, config=None, device=torch.device("cpu"), seed=0,
                          profile="authors" if fresh else "default", run_dir=tmp_path,
                          evaluate_curve=lambda g, point: {}, log=logging.getLogger("test"),
                          fresh_curve_draws=fresh)

    assert context(False).snapshot_key == {"device": "cpu", "precision": "fp32"}  # as before
    assert context(True).snapshot_key == {"device": "cpu", "precision": "fp32",
                                          "curve_samples": "fresh"}


def test_a_best_so_far_figure_compares_only_with_runs_judged_its_way():
    figure = table.parse_conditions("profile=authors; best_so_far_over=adversarial; "
                                    "curve_samples=fresh at every point")
    before = table.parse_conditions(table.run_conditions("seqgan", {"profile": "authors"}))
    assert table.differing_condition(figure, before) == \
        "best_so_far_over the whole curve (the figure's: adversarial)"
    now = table.parse_conditions(table.run_conditions("seqgan", {
        "profile": "authors", "evaluation": runner.evaluation_record(SeqGan(), fresh=True)}))
    assert table.differing_condition(figure, now) == ""


def test_a_figure_on_an_assumption_gets_no_gap_and_one_on_our_reading_is_marked():
    ours = {"profile": {"authors"}}
    assumed = table.parse_conditions("profile=authors; assumed=the code made the figure")
    assert table.differing_condition(assumed, ours) == \
        "its conditions rest on an assumption (the code made the figure)"
    read = table.parse_conditions("profile=authors; inferred=our reading of the source")
    assert table.differing_condition(read, ours) == ""
    assert table.inferred(read) == " (inferred: our reading of the source)"
    assert table.inferred(table.parse_conditions("profile=authors")) == ""


def test_the_shipped_figures_say_what_they_rest_on():
    figures = table.published_figures()
    conditions = {(f.dataset, f.method, f.value): table.parse_conditions(f.conditions)
                  for f in figures.itertuples()}
    assert table.INFERRED in conditions[("oracle", "random", 10.31)]
    for key in [("oracle", "rankgan", 8.247), ("poems", "rankgan", 0.812),
                ("poems", "mle", 0.667), ("poems", "seqgan", 0.7389),
                ("obama", "mle", 0.519), ("obama", "seqgan", 0.556)]:
        assert table.ASSUMED in conditions[key], key
    for method in ("seqgan", "pg-bleu"):
        best = figures[(figures.method == method) & (figures.metric == "nll_oracle_best_so_far")]
        assert {row.conditions.count("best_so_far_over=adversarial") for row in best.itertuples()} == {1}


def test_a_run_made_under_an_earlier_form_of_its_profile_says_so():
    from dataclasses import asdict

    from harness import config
    from harness.plugins import registry

    seqgan = registry().methods["seqgan"]
    now = asdict(config.resolve(seqgan, "authors", {}))
    recorded = {"profile": "authors", "dataset": "oracle", "config": now}
    assert "as it was before" not in table.run_conditions("seqgan", recorded)
    # A run that predates a setting was made at its default, which the profile has changed.
    before = {key: value for key, value in now.items() if key != "lstm_biases"}
    assert "profile=authors as it was before (lstm_biases=2)" in table.run_conditions(
        "seqgan", {**recorded, "config": before})


def authors_gen_data_loader(rows: list[list[int]], batch_size: int, epochs: int) -> list:
    """A transcription of LantaoYu/SeqGAN MLE_SeqGAN/gen_dataloader.py 9-30 @4152436 as
    pretrain_experiment.py drives it: int(N / B) batches, the rest cut off, the pointer reset
    each epoch, so every epoch reads the same batches in file order."""
    num_batch = int(len(rows) / batch_size)
    token_stream = rows[:num_batch * batch_size]
    sequence_batch = [token_stream[i * batch_size:(i + 1) * batch_size] for i in range(num_batch)]
    out = []
    for _ in range(epochs):
        pointer = 0  # reset_pointer()
        for _ in range(num_batch):
            out.append(sequence_batch[pointer])
            pointer = (pointer + 1) % num_batch
    return out


def test_an_epoch_in_file_order_reads_the_authors_whole_batches(monkeypatch):
    from harness import training
    from harness.generator import LSTMGenerator

    data = torch.arange(10 * 3).view(10, 3) % 7  # 10 rows: 3 batches of 3, one row left
    generator = LSTMGenerator(7, 3, 4, 4)
    seen, forward = [], generator.forward
    monkeypatch.setattr(generator, "forward", lambda inputs, state=None: (
        seen.append(inputs[:, 1:].tolist()), forward(inputs, state))[1])
    optimizer = torch.optim.Adam(generator.parameters())
    for _ in range(2):
        training.mle_epoch(generator, data, optimizer, 3, 5.0, rng=None)
    expected = authors_gen_data_loader(data.tolist(), 3, 2)
    assert seen == [[row[:-1] for row in batch] for batch in expected]  # inputs: shifted right
    # Shuffled: every row, each epoch its own order; a set smaller than a batch is one batch.
    assert sorted(training.epoch_order(10, 3, True, torch.Generator().manual_seed(0)).tolist()) == \
        list(range(10))
    assert training.epoch_order(2, 3, False).tolist() == [0, 1]


@pytest.mark.parametrize("method", ["seqgan", "pg-bleu", "maligan", "rankgan", "jsdgan"])
def test_every_paper_profile_starts_from_the_paper_mle_row(method):
    """Under ``paper`` the family pre-trains as the authors' later code (the file in order),
    and with the MLE row's very settings: one snapshot, the MLE row their start."""
    from dataclasses import asdict

    from harness import config
    from harness.plugins import registry
    from harness_plugins.adversarial import mle_settings
    from harness_plugins.mle import MleConfig

    found = registry().methods
    settings = MleConfig(**mle_settings(config.resolve(found[method], "paper", {})))
    mle = config.resolve(found["mle"], "paper", {})
    assert {**asdict(settings), "epochs": None} == {**asdict(mle), "epochs": None}
    assert settings.shuffle is False and settings.epochs == mle.epochs == 120
