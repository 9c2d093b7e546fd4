"""Figures from the results directory: the paper's Figure 2 (learning curves) and a
quality-diversity chart from each run's temperature sweep."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

CURVE_METRIC = ("nll_oracle", "nll_test")   # the first one a curve has is plotted
QUALITY = {"oracle": "nll_oracle", "poems": "bleu2", "obama": "bleu3"}
DIVERSITY = {"oracle": "nll_test", "poems": "self_bleu2", "obama": "self_bleu3"}


def _runs(results: Path, name: str) -> pd.DataFrame:
    """Every run's ``name`` file (curve.csv or sweep.csv) with its run id, data set,
    method and seed; finished runs only."""
    frames = []
    for path in sorted(Path(results).glob(f"*/*/*/seed-*/{name}")):
        if not path.with_name("metrics.json").exists():
            continue
        seed_dir = path.parent
        frame = pd.read_csv(path)
        frame["run_id"], frame["dataset"] = seed_dir.parents[2].name, seed_dir.parents[1].name
        frame["method"], frame["seed"] = seed_dir.parent.name, seed_dir.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def learning_curves(results: Path, out: Path) -> list[Path]:
    """One PNG per run id and data set: the curve metric against epoch, mean over seeds,
    with the end of MLE pre-training marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves, written = _runs(results, "curve.csv"), []
    if curves.empty:
        return written
    for (run_id, dataset), part in curves.groupby(["run_id", "dataset"]):
        metric = next((m for m in CURVE_METRIC if m in part and part[m].notna().any()), None)
        if metric is None:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method, rows in part.dropna(subset=[metric]).groupby("method"):
            mean = rows.groupby("epoch")[metric].mean()
            ax.plot(mean.index, mean.values, marker=".", label=method)
        pretrain = part[(part.phase == "mle") & part.method.isin(["seqgan", "pg-bleu"])].epoch
        if len(pretrain):
            ax.axvline(pretrain.max(), color="grey", linestyle="--", linewidth=1)
            ax.annotate("end of pre-training", (pretrain.max(), ax.get_ylim()[1]),
                        fontsize=8, ha="right", va="top", rotation=90)
        _mark_real_data(ax, results, run_id, dataset, metric, part)
        ax.set(xlabel="epoch (adversarial: batches after pre-training)", ylabel=metric,
               title=f"{dataset} ({run_id}): learning curves")
        ax.legend()
        written.append(_save(fig, out / f"curves-{run_id}-{dataset}.png"))
    return written


def _mark_real_data(ax, results: Path, run_id: str, dataset: str, metric: str,
                    curves: pd.DataFrame) -> None:
    """The real data's level as a line; a curve far below it (a collapsed generator, which
    NLL-oracle alone would call a win) is cut off and named, so it does not squash the rest."""
    path = Path(results) / run_id / dataset / "real" / "seed-0" / "metrics.json"
    if not path.exists() or metric not in (level := pd.read_json(path, typ="series")):
        return
    ax.axhline(level[metric], color="black", linestyle=":", linewidth=1,
               label=f"real data ({level[metric]:.2f})")
    below = sorted(set(curves[curves[metric] < level[metric] - 0.5].method))
    if below:
        ax.set_ylim(bottom=level[metric] - 0.5)
        ax.text(0.99, 0.02, f"cut off below: {', '.join(below)} (under the real data: collapsed)",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8)


def quality_diversity(results: Path, out: Path) -> list[Path]:
    """One PNG per run id and data set: quality against diversity across temperatures."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps, written = _runs(results, "sweep.csv"), []
    if sweeps.empty:
        return written
    for (run_id, dataset), part in sweeps.groupby(["run_id", "dataset"]):
        quality = QUALITY.get(dataset, "nll_oracle" if "nll_oracle" in part else "bleu2")
        diversity = DIVERSITY.get(dataset, "nll_test" if quality == "nll_oracle" else "self_bleu2")
        part = part.dropna(subset=[quality, diversity])
        if part.empty:
            continue
        fig, ax = plt.subplots(figsize=(6, 5))
        for method, rows in part.groupby("method"):
            mean = rows.groupby("temperature")[[quality, diversity]].mean()
            ax.plot(mean[diversity], mean[quality], marker="o", label=method)
            for temperature, row in mean.iterrows():
                ax.annotate(f"{temperature:g}", (row[diversity], row[quality]), fontsize=7)
        ax.set(xlabel=f"{diversity} (diversity)", ylabel=f"{quality} (quality)",
               title=f"{dataset} ({run_id}): quality vs diversity over temperature")
        ax.legend()
        written.append(_save(fig, out / f"quality-diversity-{run_id}-{dataset}.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
