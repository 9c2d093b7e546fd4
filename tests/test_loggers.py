"""--log-to: TensorBoard event files and an MLflow run mirror a run's curve, metrics and
config, read back here with those libraries' own readers."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pandas as pd
import pytest


def results() -> Path:
    return Path(os.environ["HARNESS_RESULTS"])


@pytest.mark.slow
def test_tensorboard_and_mlflow_hold_the_curve_the_metrics_and_the_config(cli, tiny_dataset):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--set", "epochs=2", "--set",
                 "eval_every=1", "--log-to", "tensorboard,mlflow")
    assert result.exit_code == 0, result.output
    run_dir = next(results().glob("*/tiny/mle/seed-0"))
    curve = pd.read_csv(run_dir / "curve.csv")
    metrics = json.loads((run_dir / "metrics.json").read_text())

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(results().glob("tensorboard/*/tiny/mle/seed-0")))).Reload()
    logged = events.Scalars("curve/nll_oracle")
    assert [e.step for e in logged] == list(curve.epoch)
    assert [e.value for e in logged] == pytest.approx(list(curve.nll_oracle), rel=1e-6)
    assert events.Scalars("metrics/nll_oracle")[0].value == pytest.approx(metrics["nll_oracle"])
    assert "config/text_summary" in events.Tags()["tensors"]

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(results() / "mlflow").absolute().as_uri())
    experiment = client.get_experiment_by_name(run_dir.parents[2].name)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["harness_run_dir"] == str(run_dir.absolute())
    assert run.data.params["lr"] == "0.01" and run.data.params["epochs"] == "2"
    assert run.data.metrics["nll_oracle"] == pytest.approx(metrics["nll_oracle"])
    history = client.get_metric_history(run.info.run_id, "curve.nll_oracle")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        list(curve.nll_oracle))
    assert run.info.status == "FINISHED"


def test_a_missing_tracker_names_the_extra_to_install(cli, tiny_dataset, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    result = cli("run", "-m", "mle", "-d", "tiny", "--log-to", "mlflow")
    assert result.exit_code == 2
    assert "mlflow is not installed; pip install 'harness[mlflow]'" in result.output
    assert not results().exists()
    unknown = cli("run", "-m", "mle", "-d", "tiny", "--log-to", "wandb")
    assert unknown.exit_code == 2 and "no such logger; choose from tensorboard, mlflow" in unknown.output
