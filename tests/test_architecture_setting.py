"""``--set architecture=transformer``: every method that trains the shared generator trains
the Transformer instead, end to end on the tiny oracle; the methods with a generator of their
own say so and keep it; the table names the architecture, and no published figure is set
beside a Transformer row."""
import json
import logging

import pandas as pd
import pytest

from harness import store, table
from harness.generator import load_generator
from harness.plugins import registry
from harness.training import OWN_GENERATOR, architecture_of, takes_architecture

SMALL = ["--set", "architecture=transformer", "--set", "layers=1", "--set", "heads=2",
         "--set", "d_model=16", "--set", "d_ff=32"]
SHORT = ["--set", "epochs=2", "--set", "pretrain_epochs=2", "--set", "eval_every=1",
         "--set", "adv_batches=2", "--set", "adv_eval_every=1", "--set", "n_rollouts=2",
         "--set", "disc_negatives=64", "--set", "disc_pretrain_rounds=1",
         "--set", "ranker_negatives=64", "--set", "ranker_pretrain_rounds=1",
         "--set", "adv_epochs=1", "--set", "stage_batches=1", "--set", "mle_epochs=0"]
SHARED = ["random", "mle", "ss", "pg-bleu", "seqgan", "maligan", "rankgan", "jsdgan"]


def test_which_methods_take_the_architecture():
    methods = registry().methods
    assert {name for name, m in methods.items() if takes_architecture(m)} == set(SHARED)
    assert architecture_of(methods["seqgan"], {}) == "lstm"  # recorded before the setting
    assert architecture_of(methods["leakgan"], {}) == OWN_GENERATOR
    assert architecture_of(None, {"architecture": "transformer"}) == "transformer"


@pytest.mark.slow
def test_every_shared_generator_method_trains_the_transformer(cli, tiny_dataset, tmp_path):
    args = ["-q", "run", "-d", "tiny", "--results", str(tmp_path), "--run-id", "t",
            "--sweep", "1", *SMALL, *SHORT]
    result = cli(*args, *[item for m in SHARED for item in ("-m", m)])
    assert result.exit_code == 0, result.output
    for method in SHARED:
        directory = tmp_path / "t" / "tiny" / method / "seed-0"
        generator = load_generator(directory / store.GENERATOR)
        assert type(generator).__name__ == "TransformerGenerator", method
        assert json.loads((directory / store.CONFIG).read_text())["config"]["architecture"] == \
            "transformer"
    # SeqGAN started from the very MLE run: its pre-training curve is the MLE row's.
    curves = {m: pd.read_csv(tmp_path / "t" / "tiny" / m / "seed-0" / "curve.csv")
              for m in ("mle", "seqgan")}
    assert list(curves["seqgan"][curves["seqgan"].phase == "mle"].nll_oracle) == \
        list(curves["mle"].nll_oracle)
    rows = table.collect(tmp_path)
    frame = table.comparison(rows, "tiny")
    assert set(frame.method) == {f"{m} (transformer)" for m in SHARED}


def test_no_published_figure_is_set_beside_a_transformer_row():
    figure = {**table.FIGURE_ARCHITECTURES, **table.parse_conditions("profile=authors")}
    ours = table.parse_conditions(table.run_conditions(
        "mle", {"profile": "authors", "config": {"architecture": "transformer"}}))
    assert table.differing_condition(figure, ours) == \
        "architecture transformer (the figure's: its own or lstm)"
    lstm = table.parse_conditions(table.run_conditions("mle", {"profile": "authors", "config": {}}))
    assert "architecture" not in table.differing_condition(figure, lstm)


@pytest.mark.slow
def test_a_method_with_its_own_generator_says_it_keeps_it(cli, tiny_dataset, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="harness"):
        result = cli("-q", "run", "-m", "vae", "-d", "tiny", "--results", str(tmp_path),
                     "--sweep", "1", "--set", "epochs=1", *SMALL)
    assert result.exit_code == 0, result.output
    assert "vae keeps its own generator: --set architecture=transformer does not apply to it" \
        in caplog.text


def test_a_transformer_too_large_for_the_machine_is_refused_in_one_line(cli, tiny_dataset):
    result = cli("run", "-m", "mle", "-d", "tiny", "--set", "architecture=transformer",
                 "--set", "d_model=65536", "--set", "d_ff=1000000", "--set", "layers=64",
                 "--set", "heads=1")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "the Transformer alone" in lines[0] and "lower d_model" in lines[0]
