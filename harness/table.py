"""Tables rebuilt from the results directory alone: long rows, pivoted to mean ± stderr."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger("harness")


def collect(results: Path) -> pd.DataFrame:
    """One row per (run, metric) for every finished run under ``results``."""
    rows = []
    for config_path in sorted(Path(results).glob("**/config.json")):
        metrics_path = config_path.with_name("metrics.json")
        if not metrics_path.exists():
            log.info("unfinished run skipped: %s", config_path.parent)
            continue
        cfg = json.loads(config_path.read_text())
        for metric, value in json.loads(metrics_path.read_text()).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"run_id": cfg["run_id"], "dataset": cfg["dataset"],
                             "method": cfg["method"], "seed": cfg["seed"],
                             "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=["run_id", "dataset", "method", "seed", "metric", "value"])


def _mean_pm_stderr(values: pd.Series) -> str:
    if len(values) < 2:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.sem():.4f}"


QUALITY_METRICS = ("nll_oracle", "nll_test")


def summary(rows: pd.DataFrame, metrics: tuple[str, ...] = QUALITY_METRICS) -> pd.DataFrame:
    """Per run id, data set and method: each metric as ``mean ± stderr`` over seeds."""
    rows = rows[rows.metric.isin(metrics)]
    table = rows.pivot_table(index=["run_id", "dataset", "method"], columns="metric",
                             values="value", aggfunc=_mean_pm_stderr)
    seeds = rows.groupby(["run_id", "dataset", "method"]).seed.nunique().rename("seeds")
    table = table.join(seeds)
    return table[[m for m in metrics if m in table.columns] + ["seeds"]].reset_index()


def render(table: pd.DataFrame, fmt: str = "markdown") -> str:
    if fmt == "csv":
        return table.to_csv(index=False)
    return table.to_markdown(index=False)
