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
        data = cfg.get("corpus", {}).get("variant", "")
        for metric, value in json.loads(metrics_path.read_text()).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"run_id": cfg["run_id"], "dataset": cfg["dataset"], "data": data,
                             "method": cfg["method"], "seed": cfg["seed"],
                             "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=COLUMNS)


COLUMNS = ["run_id", "dataset", "data", "method", "seed", "metric", "value"]


def _mean_pm_stderr(values: pd.Series) -> str:
    if len(values) < 2:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.sem():.4f}"


# Quality first (NLL-oracle, BLEU: the paper's), then NLL-test, then diversity (Self-BLEU).
QUALITY_METRICS = ("nll_oracle", "bleu2", "bleu3", "bleu4", "nll_test", "self_bleu2",
                   "self_bleu4")


def summary(rows: pd.DataFrame, metrics: tuple[str, ...] = QUALITY_METRICS) -> pd.DataFrame:
    """Per run id, data set and method: each metric as ``mean ± stderr`` over seeds."""
    rows = rows[rows.metric.isin(metrics)].dropna(subset=["value"])
    keys = ["run_id", "dataset", "data", "method"]
    table = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc=_mean_pm_stderr)
    table = table.join(rows.groupby(keys).seed.nunique().rename("seeds"))
    return table[[m for m in metrics if m in table.columns] + ["seeds"]].reset_index()


def render(table: pd.DataFrame, fmt: str = "markdown") -> str:
    """CSV: one table. Markdown: one table per run id and data set, saying which data."""
    if fmt == "csv":
        return table.to_csv(index=False)
    sections = []
    for (run_id, dataset, data), part in table.groupby(["run_id", "dataset", "data"], sort=True):
        title = f"### {dataset} ({run_id})" + (f" — data: {data}" if data else "")
        part = part.drop(columns=["run_id", "dataset", "data"]).dropna(axis=1, how="all")
        sections.append(f"{title}\n\n{part.fillna('–').to_markdown(index=False)}")
    return "\n\n".join(sections)
