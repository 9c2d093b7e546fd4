"""Loggers: a run mirrored to an experiment tracker as it trains — its learning curve, its
final metrics and its config. ``curve.csv`` and ``metrics.json`` stay the record; a logger
is off until ``--log-to NAME[,NAME]`` asks for it. Two built-ins, TensorBoard and MLflow
(a local file store), each needing an optional dependency (``pip install
'harness[tensorboard]'`` / ``'harness[mlflow]'``); a plugin adds another with
``register_loggers``: an object with ``name``, ``requires`` (modules), ``extra`` (what to
install) and ``open(results, key, config) -> Tracker``, a tracker having ``curve(row)`` and
``close(metrics)``.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Protocol

from harness import hookimpl, store
from harness.api import HarnessError


@hookimpl
def register_loggers(register):
    register(TensorBoard())
    register(MlFlow())


class Tracker(Protocol):
    def curve(self, row: dict) -> None: ...
    def close(self, metrics: dict) -> None: ...


def check(names: tuple[str, ...]) -> None:
    """Every logger asked for exists and has what it needs installed (a HarnessError naming
    the extra to install otherwise)."""
    from harness.plugins import registry

    found = registry().loggers
    for name in names:
        if name not in found:
            raise HarnessError(f"--log-to {name}: no such logger; choose from "
                               f"{', '.join(found)}")
        missing = [m for m in found[name].requires if importlib.util.find_spec(m) is None]
        if missing:
            raise HarnessError(f"--log-to {name}: {', '.join(missing)} is not installed; "
                               f"pip install 'harness[{found[name].extra}]'")


def open_trackers(names: tuple[str, ...], results: str | Path | None, key: store.RunKey,
                  config: dict) -> list[Tracker]:
    from harness.plugins import registry

    return [registry().loggers[name].open(results, key, config) for name in names]


def _numbers(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}


class TensorBoard:
    """TensorBoard event files under <results>/tensorboard/<run-id>/<dataset>/<method>/seed-n
    (``tensorboard --logdir runs/tensorboard`` shows every run)."""

    name, extra, requires = "tensorboard", "tensorboard", ("tensorboard",)

    def open(self, results, key: store.RunKey, config: dict) -> "TensorBoardRun":
        return TensorBoardRun(store.tracker_dir(results, self.name, key), config)


class TensorBoardRun:
    def __init__(self, directory: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```")

    def curve(self, row: dict) -> None:
        step = int(row.get("epoch", 0))
        for name, value in _numbers(row).items():
            if name != "epoch":
                self.writer.add_scalar(f"curve/{name}", value, step)
        self.writer.flush()

    def close(self, metrics: dict) -> None:
        for name, value in _numbers(metrics).items():
            self.writer.add_scalar(f"metrics/{name}", value, 0)
        self.writer.close()


class MlFlow:
    """An MLflow file store at <results>/mlflow: one experiment per run id, one MLflow run
    per harness run (tagged with its directory, so a resumed run goes on logging to it);
    ``mlflow ui --backend-store-uri runs/mlflow`` shows them."""

    name, extra, requires = "mlflow", "mlflow", ("mlflow",)

    def open(self, results, key: store.RunKey, config: dict) -> "MlFlowRun":
        return MlFlowRun(store.tracker_dir(results, self.name), key,
                         store.run_dir(results, key), config)


class MlFlowRun:
    def __init__(self, directory: Path, key: store.RunKey, run_dir: Path, config: dict):
        # MLflow 3 keeps its file store only on request; it is what "local" means here.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=directory.absolute().as_uri())
        experiment = self.client.get_experiment_by_name(key.run_id)
        experiment_id = experiment.experiment_id if experiment else \
            self.client.create_experiment(key.run_id)
        tag = str(Path(run_dir).absolute())
        found = self.client.search_runs([experiment_id], f"tags.harness_run_dir = '{tag}'")
        if found:
            self.run_id = found[0].info.run_id
        else:
            self.run_id = self.client.create_run(
                experiment_id, run_name=str(key), tags={"harness_run_dir": tag}).info.run_id
            params = {**config.get("config", {}), "method": key.method, "dataset": key.dataset,
                      "seed": key.seed, "profile": config.get("profile")}
            for name, value in params.items():
                self.client.log_param(self.run_id, name, value)
            self.client.log_dict(self.run_id, config, "config.json")

    def curve(self, row: dict) -> None:
        step = int(row.get("epoch", 0))
        for name, value in _numbers(row).items():
            if name != "epoch":
                self.client.log_metric(self.run_id, f"curve.{name}", value, step=step)

    def close(self, metrics: dict) -> None:
        for name, value in _numbers(metrics).items():
            self.client.log_metric(self.run_id, name, value)
        self.client.set_terminated(self.run_id)
