"""Running methods on data sets: one directory per run, written atomically."""
from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import os
import platform
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import harness
from harness import config, store
from harness.api import HarnessError, RunContext
from harness.evaluate import curve_metrics, evaluate, temperature_sweep
from harness.plugins import load_errors, registry

log = logging.getLogger("harness")
RESULTS_ENV = "HARNESS_RESULTS"
SHOWN_SAMPLES = 100  # generated sequences kept as text in each run's samples.txt


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str
    seed: int
    profile: str = "default"

    def directory(self, results: Path, run_id: str) -> Path:
        return Path(results) / run_id / self.dataset / self.method / f"seed-{self.seed}"


def results_dir(results: str | Path | None = None) -> Path:
    return Path(results or os.environ.get(RESULTS_ENV) or "results")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise HarnessError(f"--device {device}: choose auto, cpu or cuda")
    return torch.device(device)


def plan(methods: list[str] | None, datasets: list[str] | None, seeds: list[int],
         profile: str) -> list[RunSpec]:
    """Methods x data sets x seeds, every name checked; a method may decline a data set."""
    found = registry()
    methods = methods or sorted(found.methods)
    datasets = datasets or sorted(found.datasets)
    _check_names("method", methods, found.methods)
    _check_names("data set", datasets, found.datasets)
    profiles = config.known_profiles(found.methods.values())
    if profile not in profiles:
        raise HarnessError(f"unknown profile {profile!r}; choose one of: {', '.join(profiles)}")
    return [RunSpec(m, d, seed, profile) for m in methods for d in datasets for seed in seeds
            if getattr(found.methods[m], "supports", lambda name: True)(d)]


def _check_names(kind: str, names: list[str], known: dict) -> None:
    for name in names:
        if name not in known:
            raise HarnessError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(known))}")


@functools.cache
def environment() -> dict:
    """What produced a result: versions, machine and the source commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"harness": harness.__version__, "git_commit": commit, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_one(spec: RunSpec, *, settings: dict[str, str] | None = None, results: Path | None = None,
            run_id: str | None = None, device: str = "auto", mirror: str | None = None,
            show_progress: bool = True) -> dict:
    """Train ``spec.method`` on ``spec.dataset`` and evaluate it; returns its metrics.

    A run whose metrics.json exists is finished and is not repeated.
    """
    settings = settings or {}
    found = registry()
    method, dataset = found.methods[spec.method], found.datasets[spec.dataset]
    run_dir = spec.directory(results_dir(results), run_id or config.run_id_for(spec.profile, settings))
    if (run_dir / "metrics.json").exists():
        log.info("%s/%s seed %d: finished earlier, skipped (%s)", spec.dataset, spec.method,
                 spec.seed, run_dir)
        return store.read_json(run_dir / "metrics.json")
    torch_device = resolve_device(device)
    cfg = config.resolve(method, spec.profile, settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        for plugin, error in load_errors.items():
            log.warning("plugin %s %s", plugin, error)
        seed_everything(spec.seed)
        corpus = dataset.load(profile=spec.profile, seed=spec.seed, mirror=mirror).to(torch_device)
        store.write_json(run_dir / "config.json", {
            **dataclasses.asdict(spec), "run_id": run_dir.parents[2].name,
            "plugin": found.plugin_of[f"method:{spec.method}"], "device": str(torch_device),
            "settings": settings, "config": dataclasses.asdict(cfg), "corpus": corpus.info,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "environment": environment()})
        ctx = RunContext(corpus=corpus, config=cfg, device=torch_device, seed=spec.seed,
                         profile=spec.profile, run_dir=run_dir, log=log,
                         evaluate_curve=lambda g: curve_metrics(g, corpus, spec.seed),
                         show_progress=show_progress,
                         shared_dir=results_dir(results) / "_shared" / spec.dataset / f"seed-{spec.seed}")
        log.info("%s/%s seed %d on %s -> %s", spec.dataset, spec.method, spec.seed, torch_device, run_dir)
        started = time.perf_counter()
        generator = method.train(ctx)
        trained = time.perf_counter()
        metrics, samples = evaluate(generator, corpus, spec.seed)
        store.write_text(run_dir / "samples.txt",
                         "\n\n".join(corpus.show(samples[:SHOWN_SAMPLES])) + "\n")
        store.write_csv(run_dir / "sweep.csv", temperature_sweep(generator, corpus, spec.seed))
        if isinstance(generator, torch.nn.Module):
            store.write_torch(run_dir / "generator.pt", generator)
        metrics.update(_best_so_far(ctx.curve))
        metrics.update(train_seconds=round(trained - started, 2),
                       eval_seconds=round(time.perf_counter() - trained, 2))
        store.write_json(run_dir / "metrics.json", metrics)  # last: marks the run finished
        log.info("%s/%s seed %d: %s", spec.dataset, spec.method, spec.seed,
                 ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        return metrics
    finally:
        log.removeHandler(handler)
        handler.close()


def _best_so_far(curve: list[dict]) -> dict:
    """The authors saved SeqGAN's result at each new best NLL-oracle; we report the final
    value as the result and this best-so-far beside it, labelled."""
    values = [row["nll_oracle"] for row in curve if row.get("nll_oracle") is not None]
    return {"nll_oracle_best_so_far": min(values)} if values else {}


def run_plan(specs: list[RunSpec], **options) -> list[tuple[RunSpec, str]]:
    """Run every spec, showing the plan and the overall progress with an ETA; a failing
    run is logged and recorded, the others go on. Returns the failures as (spec, reason)."""
    log.info("plan: %d runs (%s)", len(specs), ", ".join(
        f"{s.method}/{s.dataset}/seed-{s.seed}" for s in specs))
    failures, started = [], time.perf_counter()
    for number, spec in enumerate(specs, 1):
        log.info("run %d of %d: %s on %s, seed %d (%s profile)%s", number, len(specs),
                 spec.method, spec.dataset, spec.seed, spec.profile, _eta(started, number - 1,
                                                                           len(specs)))
        try:
            run_one(spec, **options)
        except HarnessError:
            raise
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            log.exception("%s on %s, seed %d failed: %s", spec.method, spec.dataset, spec.seed, reason)
            failures.append((spec, reason))
    log.info("all %d runs done in %.1f min", len(specs), (time.perf_counter() - started) / 60)
    return failures


def _eta(started: float, done: int, total: int) -> str:
    if done == 0:
        return ""
    elapsed = time.perf_counter() - started
    return f"; {elapsed / 60:.1f} min so far, about {elapsed / done * (total - done) / 60:.1f} min left"
