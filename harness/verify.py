"""Re-run a finished run from what its directory records and compare the metrics: the
check that a result is what the code at its commit produces.

On the machine that made it, with the same torch threads, a run repeats bit for bit
(``--exact`` demands that). Elsewhere it cannot: another CPU (another instruction set,
another oneDNN) or a GPU rounds differently in the last bits, a sampled token then
changes, and a trained run behaves like a new seed. So each metric is judged against its
noise:

- where the run's row has at least two other seeds, their spread: the repeated value
  and the recorded one are two draws of the row, their difference has standard deviation
  s·√2, s estimated from the other seeds (Student's t with k−1 degrees of freedom for k
  other seeds; the verified seed is left out, so an edited metrics.json cannot widen its
  own interval);
- otherwise the metric's sampling standard error, which the evaluation stores
  (``standard_errors`` in metrics.json): the two values' errors combined (normal quantile).
  That is the noise of evaluating one trained generator, not of training it.

Each metric is identical, within noise (inside its ``LEVEL`` two-sided interval) or
outside. The verdict is a stated test at ``VERDICT_LEVEL``, with m metrics judged: the run
differs when (a) as many metrics or more fall outside as chance gives with binomial
probability below it (about m·LEVEL fall outside by chance), or (b) the largest difference
is beyond chance even for the largest of m (Bonferroni: m times its two-sided p below it),
which catches one edited or planted metric. (The metrics are correlated, BLEU-2..5 above
all, so the levels are a guide, not exact.)
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness import devices, store
from harness.api import HarnessError
from harness.plan import RunOptions, plan
from harness.runner import run_one

TIMINGS = ("train_seconds", "eval_seconds", "judge_lm_seconds")
LEVEL = 0.05          # a metric is outside when beyond its 95% interval
VERDICT_LEVEL = 0.01  # the run fails when that many outside has binomial p below this
SCRATCH_RUN_ID = "verify"


@dataclass
class Comparison:
    metric: str
    recorded: float | None
    repeated: float | None
    verdict: str  # identical, within noise, outside, missing, no noise estimate; differs (exact)
    noise: float | None = None    # the standard deviation of the difference
    units: float | None = None    # |repeated - recorded| / noise
    limit: float | None = None    # the interval's half-width in noise units
    basis: str = ""               # "3 other seeds (t, 2 df)" or "standard errors"
    p: float | None = None        # two-sided: the chance of a difference this large or larger

    @property
    def matches(self) -> bool:
        return self.verdict in ("identical", "within noise")


@dataclass
class Report:
    comparisons: list[Comparison]
    exact: bool
    environment: dict = field(default_factory=dict)   # key -> (recorded, repeated), differing
    conclusions: list[str] = field(default_factory=list)  # table verdicts that would change
    left_out: list[str] = field(default_factory=list)  # metrics not compared, and why

    def count(self, verdict: str) -> int:
        return sum(row.verdict == verdict for row in self.comparisons)

    @property
    def judged(self) -> int:
        return sum(row.verdict in ("identical", "within noise", "outside", "missing")
                   for row in self.comparisons)

    @property
    def outside(self) -> int:
        return self.count("outside") + self.count("missing")

    @property
    def p_value(self) -> float:
        """The chance of as many metrics outside or more, were each outside with LEVEL."""
        from scipy.stats import binom

        return 1.0 if self.outside == 0 else float(binom.sf(self.outside - 1, self.judged, LEVEL))

    @property
    def bonferroni_p(self) -> float:
        """The smallest metric p-value times the number judged (at most 1)."""
        ps = [row.p for row in self.comparisons if row.p is not None]
        return min(1.0, min(ps) * self.judged) if ps else 1.0

    @property
    def passed(self) -> bool:
        if self.exact:
            return all(row.verdict == "identical" for row in self.comparisons)
        return self.count("missing") == 0 and self.p_value >= VERDICT_LEVEL \
            and self.bonferroni_p >= VERDICT_LEVEL

    @property
    def largest(self) -> Comparison | None:
        measured = [row for row in self.comparisons if row.units is not None]
        return max(measured, key=lambda row: row.units, default=None)

    def summary(self) -> str:
        if self.exact:
            differ = [row.metric for row in self.comparisons if row.verdict != "identical"]
            return (f"{len(differ)} of {len(self.comparisons)} metrics differ: {', '.join(differ)}"
                    if differ else f"all {len(self.comparisons)} metrics match bit for bit")
        counts = (f"{self.count('identical')} identical, {self.count('within noise')} within "
                  f"noise, {self.outside} outside their {1 - LEVEL:.0%} interval of "
                  f"{self.judged} judged (by chance: {self.judged * LEVEL:.1f}; binomial "
                  f"p={self.p_value:.2g}; largest difference, Bonferroni p="
                  f"{self.bonferroni_p:.2g}; the run differs below {VERDICT_LEVEL})")
        unjudged = self.count("no noise estimate")
        if unjudged:
            counts += f"; {unjudged} differ with no noise estimate (not judged)"
        largest = self.largest
        if largest is not None and largest.units > 0:
            counts += f"; largest difference {largest.units:.2f} noise units ({largest.metric})"
        verdict = "within noise" if self.passed else "differs"
        if self.passed and self.count("identical") == len(self.comparisons):
            verdict = "identical"
        return f"{verdict}: {counts}"


def verify(run_dir: Path, mirror: str | None = None, device: str | None = None,
           exact: bool = False, cross_device: bool = False) -> Report:
    """Re-run the finished run in ``run_dir`` in a scratch results directory (on its
    recorded kind of device, in its precision, with its torch threads) and judge every
    metric against the recorded one."""
    run_dir = Path(run_dir)
    if not (run_dir / store.METRICS).exists():
        raise HarnessError(f"{run_dir} holds no finished run (no {store.METRICS}); give a run's "
                           f"directory, e.g. {store.DEFAULT_RESULTS}/<run-id>/<dataset>/<method>"
                           f"/seed-0")
    store.key_of(run_dir)  # config.json checked, and where the run lies agrees with it
    config, recorded = store.read_config(run_dir), store.read_metrics(run_dir)
    kind = _device_to_use(run_dir, config, device, cross_device)
    found = plan([config["method"]], [config["dataset"]], [config["seed"]], config["profile"])
    if not found:
        raise HarnessError(f"{run_dir}: {config['method']} does not run on {config['dataset']} "
                           f"with the plugins installed here")
    spec = found[0]
    threads = config.get("torch_threads") or config.get("environment", {}).get("torch_threads")
    sweep = {"sweep": tuple(config["sweep"])} if "sweep" in config else {}
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as scratch:
        options = RunOptions(run_id=SCRATCH_RUN_ID, results=scratch,
                             settings=config.get("settings", {}), device=kind,
                             precision=config.get("precision") or "fp32", mirror=mirror,
                             threads=threads, show_progress=False, **sweep)
        repeated = run_one(spec, options)
        repeated_config = store.read_config(options.run_dir(spec))
    recorded, repeated, left_out = _defined_alike(config, recorded, repeated)
    if exact:
        rows = [row if row.verdict == "identical" else Comparison(
            row.metric, row.recorded, row.repeated, "differs") for row in compare(recorded, repeated)]
    else:
        rows = compare(recorded, repeated, _other_seed_values(run_dir),
                       recorded.get("standard_errors"), repeated.get("standard_errors"))
    report = Report(rows, exact, environment_differences(config, repeated_config),
                    left_out=left_out)
    if not all(row.verdict == "identical" for row in rows):
        report.conclusions = changed_conclusions(run_dir, config, repeated)
    return report


def _defined_alike(config: dict, recorded: dict, repeated: dict) -> tuple[dict, dict, list[str]]:
    """The metrics as both runs define them: a run recorded before its curve's evaluation was
    (config.json's ``evaluation``) took ``*_best_so_far`` over its whole curve, which today's
    code takes over one phase, so those are left out (and named) rather than judged."""
    if "evaluation" in config:
        return recorded, repeated, []
    best = sorted(key for key in {*recorded, *repeated} if key.endswith("_best_so_far"))
    keep = lambda metrics: {k: v for k, v in metrics.items() if k not in best}  # noqa: E731
    return keep(recorded), keep(repeated), [
        f"{key}: recorded over the whole curve, over the method's best-so-far phase now"
        for key in best]


def _device_to_use(run_dir: Path, config: dict, device: str | None, cross_device: bool) -> str:
    """The recorded kind of device, or the one asked for when ``cross_device`` allows it."""
    recorded = str(config.get("device", "cpu")).partition(":")[0]
    kind = devices.device_kind(device) if device else recorded
    if kind != recorded and not cross_device:
        raise HarnessError(
            f"{run_dir} was made on {recorded}; a re-run on {kind} rounds differently and draws "
            f"other random streams, so it says little about the result: verify it on "
            f"{recorded}, or pass --cross-device to judge it within noise anyway")
    if kind == "cuda" and not torch.cuda.is_available():
        raise HarnessError(f"{run_dir} was made on cuda and this machine has no GPU: verify it "
                           f"where there is one, or pass --device cpu --cross-device")
    return kind


def compare(recorded: dict, repeated: dict, seeds: dict[str, list[float]] | None = None,
            recorded_errors: dict | None = None, repeated_errors: dict | None = None
            ) -> list[Comparison]:
    """Metric by metric (timings and nested values aside). Without ``seeds`` or standard
    errors, a metric is identical, missing or without a noise estimate."""
    rows = []
    for metric in sorted(set(recorded) | set(repeated)):
        a, b = recorded.get(metric), repeated.get(metric)
        if metric in TIMINGS or isinstance(a, dict) or isinstance(b, dict):
            continue
        rows.append(judge(metric, a, b, (seeds or {}).get(metric, []),
                          (recorded_errors or {}).get(metric), (repeated_errors or {}).get(metric)))
    return rows


def judge(metric: str, a: float | None, b: float | None, others: list[float],
          error_a: float | None = None, error_b: float | None = None) -> Comparison:
    """One metric: identical, within its noise, outside it, or without a noise estimate."""
    from scipy.stats import norm, t

    if a is None or b is None:
        return Comparison(metric, a, b, "missing")
    if a == b or (_nan(a) and _nan(b)):
        return Comparison(metric, a, b, "identical")
    others = [v for v in others if v is not None and not _nan(v)]
    if len(others) >= 2:
        spread = float(torch.tensor(others, dtype=torch.float64).std())
        distribution = t(len(others) - 1)
        noise, basis = spread * math.sqrt(2), f"{len(others)} other seeds (t, {len(others) - 1} df)"
    elif error_a is not None or error_b is not None:
        # A run recorded before standard errors were: both values have the same error.
        ea, eb = error_a if error_a is not None else error_b, error_b if error_b is not None else error_a
        distribution, noise, basis = norm(), math.hypot(ea, eb), "standard errors"
    else:
        return Comparison(metric, a, b, "no noise estimate")
    limit = float(distribution.ppf(1 - LEVEL / 2))
    if _nan(a) or _nan(b):
        units = math.inf
    else:
        units = abs(b - a) / noise if noise > 0 else math.inf
    return Comparison(metric, a, b, "within noise" if units <= limit else "outside",
                      noise, units, limit, basis, float(2 * distribution.sf(units)))


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _other_seed_values(run_dir: Path) -> dict[str, list[float]]:
    """Each metric's values in the other seeds of the run's row."""
    values: dict[str, list[float]] = {}
    for other in store.other_seeds(run_dir):
        for metric, value in store.read_metrics(other).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values.setdefault(metric, []).append(float(value))
    return values


def environment_differences(recorded: dict, repeated: dict) -> dict[str, tuple]:
    """What differs between the two runs' environments, torch threads and data (the
    corpus's provenance: a data file that changed makes another run): what may explain a
    difference."""
    def described(config: dict) -> dict:
        data = json.loads(json.dumps(config.get("corpus", {}), default=str))  # as recorded
        return {**config.get("environment", {}), "torch_threads": config.get("torch_threads"),
                **{f"data {key}": value for key, value in data.items()}}

    a, b = described(recorded), described(repeated)
    return {key: (a.get(key), b.get(key)) for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key)}


def changed_conclusions(run_dir: Path, config: dict, repeated: dict) -> list[str]:
    """The table's "vs baseline" verdicts of the run's data set that change when the
    repeated metrics take the recorded ones' place ("mle vs mle" rows aside)."""
    from harness import table

    rows = table.collect(store.run_id_dir_of(run_dir))
    rows = rows[rows.dataset == config["dataset"]]
    if rows.empty:
        return []
    mine = (rows.method == config["method"]) & (rows.seed == config["seed"])
    swapped = rows.copy()
    swapped.loc[mine, "value"] = [float(repeated.get(m, math.nan)) if isinstance(
        repeated.get(m), (int, float)) else math.nan for m in rows[mine].metric]
    before = table.comparison(rows, config["dataset"]).set_index("method")
    after = table.comparison(swapped, config["dataset"]).set_index("method")
    changed = []
    for column in [c for c in before.columns if c.startswith("vs ")]:
        for method in before.index:
            was, now = _word(before.at[method, column]), _word(after.at[method, column])
            if was != now:
                changed.append(f"{method} {column}: {was} -> {now}")
    return changed


def _word(verdict: str) -> str:
    """'better (p=0.01)' -> 'better': the conclusion without its p-value."""
    return str(verdict).split(" (")[0]
