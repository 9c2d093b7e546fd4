"""The plan of a ``harness run``: its runs (methods x data sets x seeds), how they are
made, its ``plan.json``, and the order they run in (a run after the runs it starts from).

Every ``harness run`` records its plan in ``<results>/<run-id>/plan.json`` (the runs, the
executor, the run options, each job's id), which ``harness status`` reads back.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from harness import config, evaluate, store
from harness.api import HarnessError
from harness.plugins import registry


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str
    seed: int
    profile: str = "default"

    def key(self, run_id: str) -> store.RunKey:
        return store.RunKey(run_id, self.dataset, self.method, self.seed)


@dataclass(frozen=True)
class RunOptions:
    """How a plan's runs are made, whoever runs them (kept in plan.json for cluster jobs)."""

    run_id: str
    results: str | None = None                # the results directory (absolute in a plan)
    settings: dict[str, str] = field(default_factory=dict)  # --set overrides, raw strings
    device: str = "auto"                      # auto, cpu or cuda
    precision: str = "fp32"                   # on CUDA: fp32, tf32 or bf16 (harness.devices)
    mirror: str | None = None                 # local copy of the corpora
    threads: int | None = None                # torch CPU threads per run (None: torch's default)
    sweep: tuple[float, ...] = evaluate.SWEEP_TEMPERATURES  # the quality-diversity sweep
    log_to: tuple[str, ...] = ()              # experiment trackers mirroring each run (loggers)
    show_progress: bool = True

    def run_dir(self, spec: RunSpec) -> Path:
        return store.run_dir(self.results, spec.key(self.run_id))


def plan(methods: list[str] | None, datasets: list[str] | None, seeds: list[int],
         profile: str) -> list[RunSpec]:
    """Methods x data sets x seeds, every name checked; a method may decline a data set.
    Without names: every method that has the profile (the base profiles are everyone's),
    on every data set."""
    found = registry()
    profile = config.canonical_profile(profile)
    profiles = config.known_profiles(found.methods.values())
    if profile not in profiles:
        raise HarnessError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles)}")
    methods = methods or [m for m, method in found.methods.items()
                          if config.has_profile(method, profile)]
    _check_names("method", methods, found.methods)
    for name in methods:
        if not config.has_profile(found.methods[name], profile):
            raise HarnessError(f"{name} has no {profile!r} profile (its profiles: "
                               f"{', '.join(config.profiles_of(found.methods[name]))})")
    datasets = [found.dataset(d).name for d in datasets or
                [name for name, d in found.datasets.items() if not d.argument and d.in_all]]
    return [RunSpec(m, d, seed, profile) for m in methods for d in datasets for seed in seeds
            if found.methods[m].supports(d)]


def _check_names(kind: str, names: list[str], known: dict) -> None:
    for name in names:
        if name not in known:
            raise HarnessError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(known))}")

@dataclass
class Plan:
    """A submitted plan: the runs, who runs them, and each run's job id once submitted."""

    executor: str
    runs: list[RunSpec]
    options: RunOptions
    jobs: dict[str, str] = field(default_factory=dict)  # spec key -> job id

    @property
    def run_id(self) -> str:
        return self.options.run_id

    @property
    def path(self) -> Path:
        return store.plan_path(self.options.results, self.run_id)

    def run_dir(self, spec: RunSpec) -> Path:
        return self.options.run_dir(spec)

    def save(self) -> None:
        """plan.json, without the results directory: that is where the file lies, so a
        copied results directory reads as itself, not as the original."""
        options = {k: v for k, v in dataclasses.asdict(self.options).items()
                   if k not in ("run_id", "results")}
        store.write_record(self.path, {
            "run_id": self.run_id, "executor": self.executor, "options": options,
            "runs": [dataclasses.asdict(s) for s in self.runs], "jobs": self.jobs})

    @classmethod
    def load(cls, path: Path) -> "Plan":
        """A plan.json, checked against its schema; its results directory and run id are
        where it lies (a path recorded inside, as older plans did, is not used)."""
        data = store.read_record(path, "plan")
        run_id_dir = Path(path).absolute().parent
        options = {k: v for k, v in data["options"].items()
                   if k in {f.name for f in dataclasses.fields(RunOptions)}}
        options.update(run_id=store.check_name("run id", run_id_dir.name),
                       results=str(run_id_dir.parent))
        if "sweep" in options:
            options["sweep"] = tuple(options["sweep"])
        return cls(data["executor"], [RunSpec(**r) for r in data["runs"]],
                   RunOptions(**options), data["jobs"])


def key(spec: RunSpec) -> str:
    return f"{spec.method}/{spec.dataset}/seed-{spec.seed}"

def waits_for(spec: RunSpec, runs: list[RunSpec]) -> list[RunSpec]:
    """The runs of ``runs`` that ``spec`` starts from (its method's ``starts_from``, same
    data set, seed and profile), whose generator it starts from."""
    starts_from = registry().methods[spec.method].starts_from
    return [other for other in runs if other.method in starts_from and
            (other.dataset, other.seed, other.profile) == (spec.dataset, spec.seed, spec.profile)]


def past_seconds(options: RunOptions) -> dict[tuple[str, str, str], float]:
    """(method, data set, profile) -> the median wall time (training, judge LM and
    evaluation) of its finished runs made with the same ``--set`` settings, any run id or
    seed: what a run is expected to take. From this results store; where it has none, from
    the newest committed reference set that has it (in a clone; their names end in their
    date), so a first ``run --all`` starts its longest runs first too."""
    expected: dict[tuple[str, str, str], float] = {}
    if store.results_dir(options.results) != store.REFERENCE_RESULTS:
        for name in sorted(store.reference_sets(), key=lambda name: name[-10:]):
            expected.update(_median_seconds(store.reference_dir(name), options.settings))
    return {**expected, **_median_seconds(options.results, options.settings)}


def _median_seconds(results: str | Path | None, settings: dict
                    ) -> dict[tuple[str, str, str], float]:
    seconds: dict[tuple[str, str, str], list[float]] = {}
    for _, directory in store.runs(results, finished_only=True):
        config, metrics = store.read_config(directory), store.read_metrics(directory)
        if config.get("settings", {}) != settings:
            continue
        took = sum(metrics.get(part, 0.0) for part in ("train_seconds", "judge_lm_seconds",
                                                      "eval_seconds"))
        seconds.setdefault((config["method"], config["dataset"], config["profile"]), []).append(took)
    return {what: statistics.median(times) for what, times in seconds.items()}


def longest_first(runs: list[RunSpec], expected: dict[tuple[str, str, str], float]) -> list[RunSpec]:
    """``runs`` by the longest chain of work each one heads (its expected time plus the
    longest chain of the runs that start from it), longest first, so the long runs do not
    end up alone on a machine with idle cores. A run never timed counts as longest: with no
    history the order stays as given."""
    chain: dict[RunSpec, float] = {}

    def heads(spec: RunSpec) -> float:
        if spec not in chain:
            after = [other for other in runs if spec in waits_for(other, runs)]
            own = expected.get((spec.method, spec.dataset, spec.profile), math.inf)
            chain[spec] = own + max(map(heads, after), default=0.0)
        return chain[spec]

    return sorted(runs, key=heads, reverse=True)  # stable: ties keep their order


def in_dependency_order(runs: list[RunSpec]) -> list[RunSpec]:
    """``runs`` with every run after the runs it waits for (stable otherwise)."""
    ordered: list[RunSpec] = []
    for spec in runs:
        for first in waits_for(spec, runs):
            if first not in ordered:
                ordered.append(first)
        if spec not in ordered:
            ordered.append(spec)
    return ordered
