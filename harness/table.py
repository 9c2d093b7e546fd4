"""Tables rebuilt from the results directory alone: long rows, pivoted to mean ± stderr.

What a data set's table shows comes from the plugins' metadata: the data set's headline
and diversity metrics and its baseline row (``--baseline`` overrides it), the reference
rows of the methods, the published figures that data sets and methods ship as package
data. Nothing here knows a method or data set by name.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd

from harness import store
from harness.api import Dataset, HarnessError, Method
from harness.config import canonical_profile, resolve
from harness.evaluate import CURVE_METRICS, lower_is_better
from harness.training import OWN_GENERATOR, architecture_of

COLUMNS = ["run_id", "dataset", "data", "device", "profile", "conditions", "method", "seed",
           "metric", "value"]
PUBLISHED_COLUMNS = ["dataset", "method", "metric", "value", "protocol", "conditions", "note",
                     "source"]
# How the harness evaluates every generator, whatever its method: samples drawn from the
# softmax of its logits as they are (temperature 1), at the end of the run (or its best
# point, in the *_best_so_far columns). A figure made otherwise (LeakGAN's authors scale
# the logits by 1.5; a log that stops early) says so in its conditions.
EVALUATION = {"logits": "unscaled", "point": "the end of the run"}
# Every published figure was made with its method's authors' generator: the shared LSTM, or
# the method's own. A figure need not say so; a Transformer row compares with none.
FIGURE_ARCHITECTURES = {"architecture": {"lstm", OWN_GENERATOR}}


def collect(results: Path | str | None) -> pd.DataFrame:
    """One row per (run, metric) for every finished run under ``results``; unfinished
    ones (no metrics.json: running, failed, killed) are left out (see ``unfinished``)."""
    rows = []
    for key, directory in store.runs(results, finished_only=True):
        config = store.read_config(directory)
        data = config.get("corpus", {}).get("variant", "")
        device, profile = made_on(config), canonical_profile(config["profile"])
        conditions = run_conditions(key.method, config)
        for metric, value in store.read_metrics(directory).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"run_id": key.run_id, "dataset": key.dataset, "data": data,
                             "device": device, "profile": profile, "conditions": conditions,
                             "method": key.method, "seed": key.seed,
                             "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=COLUMNS)


def run_conditions(method: str, config: dict) -> str:
    """What a run with this config.json was made under, as ``key=value; key=value``: what
    its method says of its settings (``Method.conditions``; nothing for a method not
    installed), and its profile, with the ``--set`` changes if any: a profile changed by
    them is not the profile that made a published figure."""
    from harness.plugins import registry

    found = registry().methods.get(method)
    own = found.conditions(config.get("config", {})) if found is not None else {}
    settings = sorted(config.get("settings", {}).items())
    changed = ", ".join(f"{key}={value}" for key, value in settings)
    profile = canonical_profile(config["profile"]) + (f" with --set {changed}" if changed else "")
    drift = ", ".join(profile_drift(found, config))
    profile += f" as it was before ({drift})" if drift else ""
    made = {**own, **evaluation_conditions(config), "profile": profile,
            "architecture": architecture_of(found, config.get("config") or {})}
    return "; ".join(f"{key}={value}" for key, value in sorted(made.items()))


def profile_drift(method: Method | None, config: dict) -> list[str]:
    """``key=value`` for each setting whose value in a run's config.json is not what its
    profile and ``--set`` give today (a setting the run predates counting at its default):
    the run was made under an earlier form of its profile, and matches no figure of it."""
    from harness.plugins import registry

    if method is None or not isinstance(config.get("config"), dict):
        return []
    try:
        dataset = registry().dataset(str(config.get("dataset", "")))
    except HarnessError:
        dataset = None
    try:
        now = dataclasses.asdict(resolve(method, canonical_profile(config["profile"]),
                                         config.get("settings") or {}, dataset))
    except (HarnessError, TypeError, ValueError):
        return []
    defaults, recorded = dataclasses.asdict(method.Config()), config["config"]
    as_json = lambda value: json.loads(json.dumps(value))  # noqa: E731 (tuples are lists there)
    return [f"{key}={recorded.get(key, defaults[key])}" for key, value in now.items()
            if as_json(recorded.get(key, defaults[key])) != as_json(value)]


def evaluation_conditions(config: dict) -> dict[str, str]:
    """How a run's curve was evaluated (config.json's ``evaluation``): the samples of its
    points, and the phase its best-so-far is taken over. A run recorded before either was
    said drew every point from one stream and took its best over the whole curve."""
    evaluation = config.get("evaluation") or {}
    return {"curve_samples": str(evaluation.get("curve_samples", "one stream for every point")),
            "best_so_far_over": str(evaluation.get("best_so_far_over", "the whole curve"))}


def made_on(config: dict) -> str:
    """What computed a run, as a table shows it: the device kind, and the precision where
    it is not fp32 (e.g. ``cpu``, ``cuda``, ``cuda/tf32``)."""
    kind = str(config.get("device", "cpu")).partition(":")[0]
    precision = config.get("precision", "fp32")
    return kind if precision == "fp32" else f"{kind}/{precision}"


def collect_files(results: Path | str | None, name: str) -> pd.DataFrame:
    """Every finished run's ``name`` file (curve.csv or sweep.csv), with its run id, data
    set, method and seed."""
    frames = []
    for key, directory in store.runs(results, finished_only=True):
        if (directory / name).exists():
            frame = store.read_csv(directory / name)
            frame["run_id"], frame["dataset"] = key.run_id, key.dataset
            frame["method"], frame["seed"] = key.method, key.seed
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def unfinished(results: Path | str | None) -> list[str]:
    """'directory: status (reason)' for each run under ``results`` that has not finished."""
    found = []
    for _, directory in store.runs(results):
        if not (directory / store.METRICS).exists():
            status = store.run_status(directory)
            reason = f" ({status['reason']})" if status.get("reason") else ""
            found.append(f"{directory}: {status['status']}{reason}")
    return found


def run_notes(results: Path | str | None) -> dict[tuple[str, str], list[str]]:
    """(run id, data set) -> what the runs asked the table to say (``ctx.note``)."""
    notes: dict[tuple[str, str], list[str]] = {}
    for key, directory in store.runs(results, finished_only=True):
        config = store.read_config(directory)
        overrides = ", ".join(f"{k}={v}" for k, v in sorted(config.get("settings", {}).items()))
        said = [f"{key.method}: run with --set {overrides}"] if overrides else []
        for note in said + config.get("notes", []):
            found = notes.setdefault((key.run_id, key.dataset), [])
            if note not in found:
                found.append(note)
    return notes


# --- what the plugins say about a data set -----------------------------------------------

def dataset_view(name: str, present: set[str]) -> Dataset:
    """The registered data set's metadata, its headline defaulting to the curve metric;
    for results of a data set no plugin registers here, a generic view."""
    from harness.plugins import registry

    try:
        found = registry().dataset(name)
    except HarnessError:  # results of a data set no plugin here registers
        found = Dataset(name, load=None)
    curve = next((m for m in CURVE_METRICS if m in present), CURVE_METRICS[0])
    return dataclasses.replace(found, headline=found.headline or (curve,))


def method_order(methods: set[str]) -> list[str]:
    """The reference rows first (ceiling, floor), then the methods in the order their
    plugins registered them, then any others by name."""
    from harness.plugins import registry

    registered = list(registry().methods)
    rank = {"ceiling": 0, "floor": 1}

    def key(name: str):
        method = registry().methods.get(name)
        reference = method.reference if method is not None else None
        return (rank.get(reference, 2), registered.index(name) if name in registered
                else len(registered), name)
    return sorted(methods, key=key)


def published_figures(dataset: str | None = None) -> pd.DataFrame:
    """Every published figure shipped by a registered data set or method (their
    ``published`` CSV files), optionally of one data set."""
    from harness.plugins import registry

    found = registry()
    files = {str(f): f for item in [*found.datasets.values(), *found.methods.values()]
             for f in item.published}
    frames = [pd.read_csv(f.open(encoding="utf-8")) for f in files.values()]
    figures = pd.concat(frames, ignore_index=True).drop_duplicates() if frames else \
        pd.DataFrame(columns=PUBLISHED_COLUMNS)
    figures = figures.reindex(columns=PUBLISHED_COLUMNS).fillna(
        {"protocol": "", "conditions": "", "note": ""})
    # A figure's ``dataset`` may name several tables, e.g. "oracle-relgan|oracle": the data
    # set it was made on, and others where it is shown as not comparable.
    shown_on = figures.dataset.astype(str).str.split("|")
    return figures if dataset is None else figures[shown_on.apply(lambda names: dataset in names)]


# --- statistics ---------------------------------------------------------------------------

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


def verdict(mine: pd.Series, baseline: pd.Series, lower_better: bool, alpha: float = 0.05) -> str:
    """'better', 'worse' or 'no difference' than the baseline, with Welch's p."""
    p = welch_p(mine, baseline)
    if math.isnan(p):
        return "–"
    if p >= alpha:
        return f"no difference (p={p:.2g})"
    better = (mine.mean() < baseline.mean()) == lower_better
    return f"{'better' if better else 'worse'} (p={p:.2g})"


# --- one data set's tables ------------------------------------------------------------------

def _values(rows: pd.DataFrame, method: str, metric: str) -> pd.Series:
    return rows[(rows.method == method) & (rows.metric == metric)].value


def table_metrics(view: Dataset, present: set[str]) -> list[str]:
    """The headline metrics (each with its best-so-far value, labelled), NLL-test and the
    data set's diversity metric, where the runs have them."""
    best = [f"{m}_best_so_far" for m in view.headline if m in CURVE_METRICS]
    metrics = [*view.headline, *best, "nll_test", view.diversity]
    return [m for m in dict.fromkeys(metrics) if m in present]


def comparison(rows: pd.DataFrame, dataset: str, baseline: str | None = None) -> pd.DataFrame:
    """One data set's table: a row per method; each metric as mean ± stderr over seeds, and
    whether the method beats the baseline row (Welch's t-test over seeds) on the first
    headline metric and on NLL-test."""
    rows = rows[rows.dataset == dataset].dropna(subset=["value"])
    present = set(rows.metric)
    view = dataset_view(dataset, present)
    baseline = baseline or view.baseline
    metrics = table_metrics(view, present)
    tested = [m for m in dict.fromkeys([metrics[0], "nll_test"]) if m in present] if metrics else []
    table = []
    for method in method_order(set(rows.method)):
        mine = rows[rows.method == method]
        line = {"method": method + architecture_label(mine), "seeds": mine.seed.nunique()}
        bound = (mine[mine.metric == "nll_test_is_bound"].value > 0).any()
        for metric in metrics:
            values = mine[mine.metric == metric].value
            line[metric] = mean_pm_stderr(values) if len(values) else "–"
            if metric == "nll_test" and bound and len(values):
                line[metric] += " (bound)"  # an IWAE upper bound, not the exact NLL
        if baseline in set(rows.method):
            for metric in tested:
                line[f"vs {baseline}: {metric}"] = "–" if method == baseline else verdict(
                    _values(rows, method, metric), _values(rows, baseline, metric),
                    lower_is_better(metric, view.lower_is_better))
        table.append(line)
    return pd.DataFrame(table)


def architecture_label(rows: pd.DataFrame) -> str:
    """" (transformer)" after a method's name where its runs trained another generator than
    the LSTM or its own."""
    made = {value for text in set(rows.get("conditions", ()))
            for value in parse_conditions(text).get("architecture", ())}
    other = sorted(made - FIGURE_ARCHITECTURES["architecture"])
    return f" ({', '.join(other)})" if other else ""


def beside_the_paper(rows: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Every published figure of the data set beside ours: the column of ours it is
    compared with (its ``metric``), ours as mean ± stderr, and the gap where ours was made
    under the figure's conditions; otherwise "not comparable" and the condition that differs."""
    rows = rows[rows.dataset == dataset].dropna(subset=["value"])
    view = dataset_view(dataset, set(rows.metric))
    lines = []
    for figure in published_figures(dataset).itertuples():
        ours = _values(rows, figure.method, figure.metric)
        if figure.method not in set(rows.method):
            continue
        conditions = {**FIGURE_ARCHITECTURES, **parse_conditions(figure.conditions)}
        differs = differing_condition(conditions,
                                      our_conditions(rows[rows.method == figure.method], view))
        gap = "–" if not len(ours) else f"not comparable: {differs}" if differs else \
            f"{ours.mean() - figure.value:+.4f}" + inferred(conditions)
        lines.append({"method": figure.method, "paper": f"{figure.value:g}",
                      "ours": mean_pm_stderr(ours) if len(ours) else "not measured",
                      "gap (ours - paper)": gap, "column of ours": figure.metric,
                      "how the paper's was made": figure.protocol, "source": figure.source})
    return pd.DataFrame(lines)


def parse_conditions(text: str) -> dict[str, set[str]]:
    """A figure's ``conditions``, ``key=value|value; key=value``: what ours must match."""
    found = {}
    for part in filter(None, (p.strip() for p in str(text).split(";"))):
        key, _, values = part.partition("=")
        found[key.strip()] = {v.strip() for v in values.split("|")}
    return found


def our_conditions(rows: pd.DataFrame, view: Dataset) -> dict[str, set[str]]:
    """Under what one method's rows were made: the data set's conditions, the harness's
    evaluation, the runs' profiles and data, then what ``run_conditions`` says of each run
    (its ``conditions`` column: it may override the evaluation's, e.g. logits its generator
    scales, and names the ``--set`` changes to a profile). A key the runs disagree on holds
    every value they have."""
    ours = {key: {value} for key, value in {**view.conditions, **EVALUATION}.items()}
    ours.update({column: set(rows[column]) for column in ("profile", "data") if column in rows})
    by_run = [parse_conditions(text) for text in set(rows.get("conditions", ()))]
    for key in {key for found in by_run for key in found}:
        ours[key] = set().union(*(found.get(key, ours.get(key, {"unknown"})) for found in by_run))
    return ours


# Two conditions a figure may carry about its source rather than about our runs:
# ``assumed=WHAT``, the condition rests on an assumption, so no run of ours meets it and no
# gap is printed; ``inferred=WHAT``, the condition is our reading of the source, so the gap
# is printed marked "inferred".
ASSUMED, INFERRED = "assumed", "inferred"


def inferred(figure: dict[str, set[str]]) -> str:
    """What to print after a gap whose figure's condition is our inference ("" otherwise)."""
    return f" (inferred: {'; '.join(sorted(figure[INFERRED]))})" if INFERRED in figure else ""


def differing_condition(figure: dict[str, set[str]], ours: dict[str, set[str]]) -> str:
    """The first condition of the figure that ours does not meet, said as "key: ours
    (the figure's: allowed)"; "" when ours meets them all. A figure whose conditions rest
    on an assumption (``assumed``) meets none of ours."""
    if ASSUMED in figure:
        return f"its conditions rest on an assumption ({'; '.join(sorted(figure[ASSUMED]))})"
    for key, allowed in figure.items():
        if key == INFERRED:
            continue
        mine = ours.get(key, {"unknown"})
        if not mine <= allowed:
            return f"{key} {', '.join(sorted(mine)) or 'unknown'} (the figure's: " \
                   f"{' or '.join(sorted(allowed))})"
    return ""


# --- at matched diversity (Caccia et al. 2020) -------------------------------------------

def interpolate_at(sweep: pd.DataFrame, target: float, x: str, y: str) -> tuple[float, float]:
    """(temperature, ``y``) where the sweep's ``x`` equals ``target``, linear between the two
    temperatures that bracket it; of several crossings (a curve need not be monotone), the
    one nearest temperature 1. NaN, NaN when the sweep never reaches ``target``."""
    points = sweep.sort_values("temperature")[["temperature", x, y]].dropna().to_numpy()
    found = []
    for (t0, x0, y0), (t1, x1, y1) in zip(points, points[1:]):
        if (x0 - target) * (x1 - target) <= 0 and x0 != x1:
            w = (target - x0) / (x1 - x0)
            found.append((t0 + w * (t1 - t0), y0 + w * (y1 - y0)))
        elif x0 == target:
            found.append((t0, y0))
    if points.size and points[-1][1] == target:
        found.append((points[-1][0], points[-1][2]))
    if not found:
        return math.nan, math.nan
    return min(found, key=lambda point: abs(point[0] - 1.0))


def matched_diversity(sweeps: pd.DataFrame, dataset: str, baseline: str | None = None
                      ) -> pd.DataFrame:
    """Each method's quality at the temperature where its diversity equals the baseline's at
    temperature 1 (per seed, interpolated along its sweep), against the baseline's quality
    at temperature 1 (Welch's t-test over seeds): a gain that holds at matched diversity."""
    sweeps = sweeps[sweeps.dataset == dataset] if not sweeps.empty else sweeps
    if sweeps.empty:
        return pd.DataFrame()
    view = dataset_view(dataset, set(sweeps.columns))
    baseline = baseline or view.baseline
    quality, diversity = view.headline[0], view.diversity
    if baseline not in set(sweeps.method) or not {quality, diversity} <= set(sweeps.columns):
        return pd.DataFrame()
    at_one = sweeps[(sweeps.method == baseline) & (sweeps.temperature == 1.0)].set_index("seed")
    lines = []
    for method in method_order(set(sweeps.method)):
        found = []
        for seed, sweep in sweeps[sweeps.method == method].groupby("seed"):
            if seed in at_one.index:
                found.append((seed, *interpolate_at(sweep, at_one.loc[seed, diversity],
                                                    diversity, quality)))
        frame = pd.DataFrame(found, columns=["seed", "temperature", quality]).dropna()
        line = {"method": method, "seeds matched": f"{len(frame)} of {len(found)}",
                f"temperature at {baseline}'s {diversity}": mean_pm_stderr(frame.temperature)
                if len(frame) else "not reached",
                f"{quality} at matched {diversity}": mean_pm_stderr(frame[quality])
                if len(frame) else "–"}
        line[f"vs {baseline} at T=1"] = "–" if method == baseline else verdict(
            frame[quality], at_one[quality], lower_is_better(quality, view.lower_is_better))
        lines.append(line)
    return pd.DataFrame(lines)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Every run id, data set and method in one frame: each data set's table metrics as
    mean ± stderr (for CSV)."""
    metrics: list[str] = []
    for dataset, part in rows.groupby("dataset"):
        present = set(part.metric)
        metrics += table_metrics(dataset_view(dataset, present), present)
    metrics = list(dict.fromkeys(metrics))
    rows = rows[rows.metric.isin(metrics)].dropna(subset=["value"])
    keys = ["run_id", "dataset", "data", "device", "method"]
    table = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc=mean_pm_stderr)
    table = table.join(rows.groupby(keys).seed.nunique().rename("seeds"))
    return table[[m for m in metrics if m in table.columns] + ["seeds"]].reset_index()


def _figure_notes(figures: pd.DataFrame, methods: set[str]) -> list[str]:
    """One bullet per distinct note of the published figures, naming the methods it is about."""
    said = figures[(figures.note != "") & figures.method.isin(methods)]
    bullets = [f"- {', '.join(dict.fromkeys(group.method))}: {note}"
               for note, group in said.groupby("note", sort=False)]
    return ["\n".join(bullets)] if bullets else []


def render(rows: pd.DataFrame, fmt: str = "markdown", baseline: str | None = None,
           results: Path | str | None = None) -> str:
    """CSV: one long summary. Markdown or LaTeX: per run id and data set, our table, the
    comparison at matched diversity, the published figures beside ours, and what the runs
    asked to be said."""
    if fmt == "csv":
        return summary(rows).to_csv(index=False)
    notes = run_notes(results) if results is not None else {}
    sweeps = collect_files(results, store.SWEEP) if results is not None else pd.DataFrame()
    sections = []
    for (run_id, dataset), part in rows.groupby(["run_id", "dataset"], sort=True):
        data = ", ".join(sorted(set(part.data) - {""}))
        title = f"{dataset} ({run_id}; computed on {', '.join(sorted(set(part.device)))})" + \
            (f" — data: {data}" if data else "")
        blocks = [f"### {title}", _format(comparison(part, dataset, baseline), fmt)]
        matched = matched_diversity(sweeps[sweeps.run_id == run_id] if not sweeps.empty
                                    else sweeps, dataset, baseline)
        if not matched.empty:
            blocks += ["At matched diversity (each method's temperature set so that its "
                       "diversity equals the baseline's at temperature 1):", _format(matched, fmt)]
        paper = beside_the_paper(part, dataset)
        if not paper.empty:
            blocks += ["Beside the published figures (a gap only where ours was made under "
                       "the figure's conditions):",
                       _format(paper, fmt)]
            blocks += _figure_notes(published_figures(dataset), set(part.method))
        if notes.get((run_id, dataset)):
            blocks.append("\n".join(f"- {note}" for note in notes[(run_id, dataset)]))
        sections.append("\n\n".join(blocks))
    note = ("mean ± standard error over seeds; lower is better for NLL, Self-BLEU and "
            "train_copy, higher for BLEU; `_train`: BLEU against the training split (the "
            "paper's and Texygen's protocol), otherwise against the held-out split; "
            "`best_so_far`: the best point of the learning curve inside the phase where the "
            "method's authors kept it (the final value is the result); vs: Welch's t-test over seeds against the baseline row.")
    return "\n\n".join(sections) + f"\n\n{note}"


def _format(frame: pd.DataFrame, fmt: str) -> str:
    return frame.to_latex(index=False) if fmt == "latex" else frame.to_markdown(index=False)
