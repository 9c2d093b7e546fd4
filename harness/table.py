"""Tables rebuilt from the results directory alone: long rows, pivoted to mean ± stderr,
with the paper's figure beside ours and Welch's t-test of SeqGAN against each baseline."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness import store


COLUMNS = ["run_id", "dataset", "data", "method", "seed", "metric", "value"]
# The repository keeps the paper's figures as data (results/paper/).
PAPER_FIGURES = Path(__file__).resolve().parents[1] / "results" / "paper" / "seqgan_aaai2017.csv"
# What each data set is judged by in the paper; every table adds NLL-test and Self-BLEU.
HEADLINE = {"oracle": ("nll_oracle",), "poems": ("bleu2",), "obama": ("bleu3", "bleu4")}
GENERIC = ("nll_oracle", "bleu2", "bleu3", "bleu4")
LOWER_IS_BETTER = ("nll_oracle", "nll_test", "self_bleu2", "self_bleu3", "self_bleu4")
METHOD_ORDER = ("real", "random", "mle", "ss", "pg-bleu", "seqgan", "vae")


def collect(results: Path) -> pd.DataFrame:
    """One row per (run, metric) for every finished run under ``results``; unfinished
    ones (no metrics.json: running, failed, killed) are left out (see ``unfinished``)."""
    rows = []
    for config_path in sorted(Path(results).glob("**/config.json")):
        metrics_path = config_path.with_name("metrics.json")
        if not metrics_path.exists():
            continue
        cfg = json.loads(config_path.read_text())
        data = cfg.get("corpus", {}).get("variant", "")
        for metric, value in json.loads(metrics_path.read_text()).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"run_id": cfg["run_id"], "dataset": cfg["dataset"], "data": data,
                             "method": cfg["method"], "seed": cfg["seed"],
                             "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=COLUMNS)


def unfinished(results: Path) -> list[str]:
    """'directory: status (reason)' for each run under ``results`` that has not finished."""
    found = []
    for config_path in sorted(Path(results).glob("**/config.json")):
        if not config_path.with_name("metrics.json").exists():
            status = store.run_status(config_path.parent)
            reason = f" ({status['reason']})" if status.get("reason") else ""
            found.append(f"{config_path.parent}: {status['status']}{reason}")
    return found


def paper_figures(path: Path = PAPER_FIGURES) -> pd.DataFrame:
    if not Path(path).exists():
        return pd.DataFrame(columns=["dataset", "method", "metric", "value", "source"])
    return pd.read_csv(path)


def mean_pm_stderr(values: pd.Series) -> str:
    if len(values) < 2:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.sem():.4f}"


def welch_p(a: pd.Series, b: pd.Series) -> float:
    """Two-sided p-value of Welch's t-test; NaN with fewer than two seeds on a side."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return math.nan
    return float(ttest_ind(a, b, equal_var=False).pvalue)


def metrics_for(dataset: str, present: set[str]) -> list[str]:
    headline = HEADLINE.get(dataset, GENERIC)
    diversity = ("self_bleu2",) if dataset == "poems" else ("self_bleu4",)
    # The authors reported SeqGAN's best NLL-oracle so far; ours is the final one, with
    # the best-so-far beside it, labelled.
    best = ("nll_oracle_best_so_far",) if "nll_oracle" in headline else ()
    return [m for m in (*headline, *best, "nll_test", *diversity) if m in present]


def comparison(rows: pd.DataFrame, dataset: str, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One data set's table: a row per method; each metric as mean ± stderr over seeds, the
    paper's figure beside the headline ones, and p of SeqGAN against this method."""
    rows = rows[rows.dataset == dataset].dropna(subset=["value"])
    paper = paper_figures() if paper is None else paper
    paper = paper[paper.dataset == dataset]
    metrics = metrics_for(dataset, set(rows.metric))
    methods = sorted(set(rows.method), key=lambda m: (METHOD_ORDER.index(m)
                                                      if m in METHOD_ORDER else 99, m))
    table = []
    for method in methods:
        mine = rows[rows.method == method]
        line = {"method": method, "seeds": mine.seed.nunique()}
        bound = (mine[mine.metric == "nll_test_is_bound"].value > 0).any()
        for metric in metrics:
            values = mine[mine.metric == metric].value
            line[metric] = mean_pm_stderr(values) if len(values) else "–"
            if metric == "nll_test" and bound and len(values):
                line[metric] += " (bound)"  # an IWAE upper bound, not the exact NLL
            figure = paper[(paper.method == method) & (paper.metric == metric)].value
            if metric in HEADLINE.get(dataset, ()):
                line[f"{metric} (paper)"] = f"{figure.iloc[0]:g}" if len(figure) else "–"
        if metrics and "seqgan" in methods:
            first = metrics[0]
            p = math.nan if method == "seqgan" else welch_p(
                rows[(rows.method == "seqgan") & (rows.metric == first)].value,
                mine[mine.metric == first].value)
            line[f"p seqgan vs (Welch, {first})"] = "–" if math.isnan(p) else f"{p:.2g}"
        table.append(line)
    return pd.DataFrame(table)


def summary(rows: pd.DataFrame, metrics: tuple[str, ...] = (*GENERIC, "nll_test", "self_bleu2",
                                                            "self_bleu4")) -> pd.DataFrame:
    """Every run id, data set and method in one frame: metrics as mean ± stderr (for CSV)."""
    rows = rows[rows.metric.isin(metrics)].dropna(subset=["value"])
    keys = ["run_id", "dataset", "data", "method"]
    table = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc=mean_pm_stderr)
    table = table.join(rows.groupby(keys).seed.nunique().rename("seeds"))
    return table[[m for m in metrics if m in table.columns] + ["seeds"]].reset_index()


def render(rows: pd.DataFrame, fmt: str = "markdown") -> str:
    """CSV: one long summary. Markdown or LaTeX: one comparison table per run id and data
    set, saying which data it was and how the numbers were made."""
    if fmt == "csv":
        return summary(rows).to_csv(index=False)
    sections = []
    for (run_id, dataset), part in rows.groupby(["run_id", "dataset"], sort=True):
        data = ", ".join(sorted(set(part.data) - {""}))
        title = f"{dataset} ({run_id})" + (f" — data: {data}" if data else "")
        table = comparison(part, dataset)
        body = table.to_latex(index=False) if fmt == "latex" else table.to_markdown(index=False)
        sections.append(f"### {title}\n\n{body}")
    note = ("mean ± standard error over seeds; lower is better for NLL and Self-BLEU, higher "
            "for BLEU; p: Welch's t-test of SeqGAN against the row's method on the first metric.")
    return "\n\n".join(sections) + f"\n\n{note}"
