"""Figures from the results directory: the paper's Figure 2 (learning curves) and a
quality-diversity chart from each run's temperature sweep. What each figure shows comes
from the plugins' metadata: a data set's headline and diversity metrics, the methods a
method starts from (the end of that pre-training is marked), the ceiling reference row."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from harness import store
from harness.evaluate import CURVE_METRICS
from harness.table import collect, collect_files, dataset_view, interpolate_at


# A method's look: tab10's ten colours, each with four dash patterns (forty distinct pairs),
# and seven markers on top (a period prime to forty: 280 distinct looks).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
DASHES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def method_styles(methods: Iterable[str]) -> dict[str, dict]:
    """Each method's colour, dash and marker: the same in every plot, by its place among
    the registered methods (then, for results of a plugin not installed here, by name)."""
    from harness.plugins import registry

    registered = sorted(registry().methods)
    order = registered + sorted(set(methods) - set(registered))
    return {method: style(order.index(method)) for method in methods}


def style(position: int) -> dict:
    """The look of the method at ``position``; no two of the first 280 are alike."""
    return {"color": COLOURS[position % len(COLOURS)],
            "linestyle": DASHES[position // len(COLOURS) % len(DASHES)],
            "marker": MARKERS[position % len(MARKERS)]}


def _methods_where(predicate) -> set[str]:
    from harness.plugins import registry

    return {name for name, method in registry().methods.items() if predicate(method)}


def learning_curves(results: Path | str | None, out: Path) -> list[Path]:
    """One PNG per run id and data set: the curve metric against epoch, mean over seeds,
    with the end of MLE pre-training marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves, written = collect_files(results, store.CURVE), []
    if curves.empty:
        return written
    metrics = collect(results)
    for (run_id, dataset), part in curves.groupby(["run_id", "dataset"]):
        metric = next((m for m in CURVE_METRICS if m in part and part[m].notna().any()), None)
        if metric is None:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        drawn = part.dropna(subset=[metric])
        styles, started_from = method_styles(drawn.method.unique()), _starting_points()
        for method, rows in drawn.groupby("method"):
            mean = rows.groupby("epoch")[metric].mean()
            # A method others start from on top: their curves repeat its pre-training.
            ax.plot(mean.index, mean.values, markersize=3, label=method, **styles[method],
                    zorder=3 if method in started_from else 2)
        pretrain = pd.concat([part[(part.method == method) & part.phase.isin(starts_from)].epoch
                              for method, starts_from in _starts_from().items()] or [pd.Series()])
        if len(pretrain):
            ax.axvline(pretrain.max(), color="grey", linestyle="--", linewidth=1)
            ax.annotate("end of pre-training", (pretrain.max(), ax.get_ylim()[1]),
                        fontsize=8, ha="right", va="top", rotation=90)
        _mark_real_data(ax, metrics[(metrics.run_id == run_id) & (metrics.dataset == dataset)],
                        part, metric)
        ax.set(xlabel="epoch (adversarial: batches after pre-training)", ylabel=metric)
        ax.set_title(f"{dataset} ({run_id}): learning curves", fontsize=9)
        ax.legend(fontsize=7)
        written.append(_save(fig, store.plot_path(out, "curves", run_id, dataset)))
    return written


def _starts_from() -> dict[str, tuple[str, ...]]:
    """method -> the phases its curve inherits from the methods it starts from."""
    from harness.plugins import registry

    return {name: m.starts_from for name, m in registry().methods.items() if m.starts_from}


def _starting_points() -> set[str]:
    """The methods that others start from (MLE): their curves lie under their successors'."""
    from harness.plugins import registry

    return {start for method in registry().methods.values()
            for start in method.starts_from}


def _mark_real_data(ax, metrics: pd.DataFrame, curves: pd.DataFrame, metric: str) -> None:
    """The real data's level (the ceiling row's ``metric``) as a line; a curve far below it
    (a collapsed generator, which NLL-oracle alone would call a win) is cut off and named,
    so it does not squash the rest."""
    ceiling = metrics[metrics.method.isin(_methods_where(lambda m: m.reference == "ceiling"))
                      & (metrics.metric == metric)].value
    if ceiling.empty:
        return
    level = ceiling.mean()
    ax.axhline(level, color="black", linestyle=":", linewidth=1, label=f"real data ({level:.2f})")
    below = sorted(set(curves[curves[metric] < level - 0.5].method))
    if below:
        ax.set_ylim(bottom=level - 0.5)
        ax.text(0.99, 0.02, f"cut off below: {', '.join(below)} (under the real data: collapsed)",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8)


def quality_diversity(results: Path | str | None, out: Path) -> list[Path]:
    """One PNG per run id and data set: quality against diversity across temperatures."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps, written = collect_files(results, store.SWEEP), []
    if sweeps.empty:
        return written
    for (run_id, dataset), part in sweeps.groupby(["run_id", "dataset"]):
        view = dataset_view(dataset, set(part.columns))
        quality, diversity = view.headline[0], view.diversity
        if quality not in part or diversity not in part:
            continue
        part = part.dropna(subset=[quality, diversity])
        if part.empty:
            continue
        fig, ax = plt.subplots(figsize=(7, 5.5))
        means = {method: rows.groupby("temperature")[[quality, diversity]].mean().reset_index()
                 for method, rows in part.groupby("method")}
        styles = method_styles(means)
        target = means[view.baseline].set_index("temperature")[diversity].get(1.0) \
            if view.baseline in means else None
        if target is not None:
            ax.axvline(target, color="grey", linestyle="--", linewidth=1,
                       label=f"{view.baseline} at T=1: matched {diversity}")
        for method, mean in means.items():
            ax.plot(mean[diversity], mean[quality], markersize=3, label=method, **styles[method])
            for row in mean.itertuples():
                ax.annotate(f"{row.temperature:g}", (getattr(row, diversity), getattr(row, quality)),
                            fontsize=6)
            if target is not None:  # the method's point at the baseline's diversity
                _, matched = interpolate_at(mean, target, diversity, quality)
                ax.plot([target], [matched], marker="*", markersize=12,
                        color=styles[method]["color"])
        ax.set(xlabel=f"{diversity} (diversity)", ylabel=f"{quality} (quality)")
        ax.set_title(f"{dataset} ({run_id}): quality vs diversity, temperatures "
                     f"{part.temperature.min():g}-{part.temperature.max():g} (star: matched)",
                     fontsize=9)
        ax.legend(fontsize=7)
        written.append(_save(fig, store.plot_path(out, "quality-diversity", run_id, dataset)))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
