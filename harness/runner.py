"""Running methods on data sets: one directory per run, written atomically.

A run: load the data set, seed every random state, train the method, check the result is
finite, evaluate it with the harness's own code, and write its files to the store
(metrics.json last, so its presence marks a finished run)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import platform
import random
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

import harness
from harness import api, config, devices, evaluate, language_model, loggers, memory, store
from harness.api import Dataset, HarnessError, Interrupted, RunContext, check_finite
from harness.generator import save_generator
from harness.plugins import load_errors, registry

log = logging.getLogger("harness")
SHOWN_SAMPLES = 100  # generated sequences kept as text in each run's samples.txt


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


def environment(device: torch.device = torch.device("cpu")) -> dict:
    """What produced a result: versions, machine, the source commit, and what decides the
    last bits on ``device`` (``devices.describe``)."""
    return {**_versions(), **devices.describe(device)}


@functools.cache
def _versions() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"harness": harness.__version__, "git_commit": commit, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RunFailed(Exception):
    """A run that raised or diverged; its status.json holds the reason."""


def run_one(spec: RunSpec, options: RunOptions, stop_requested=lambda: False) -> dict:
    """Train ``spec.method`` on ``spec.dataset`` and evaluate it; returns its metrics.

    A run whose metrics.json exists is finished and is not repeated; an unfinished one
    resumes from its checkpoint. Raises RunFailed (status ``failed``) when the method
    raises or diverges, api.Interrupted (status ``interrupted``) after SIGINT/SIGTERM,
    HarnessError (nothing written) when another process is running it.
    """
    found = registry()
    method, dataset = found.methods[spec.method], found.dataset(spec.dataset)
    run_dir = options.run_dir(spec)
    refuse_other_device(run_dir, devices.device_kind(options.device), options.precision)
    if (run_dir / store.METRICS).exists():
        log.info("%s/%s seed %d: finished earlier, skipped (%s)", spec.dataset, spec.method,
                 spec.seed, run_dir)
        return store.read_metrics(run_dir)
    torch_device = devices.resolve_device(options.device)
    devices.configure(torch_device, options.precision)
    if options.threads:
        torch.set_num_threads(options.threads)
    memory_kept = memory.keep_freed_memory()
    cfg = config.resolve(method, spec.profile, options.settings, dataset)
    # Loaded before anything is written: a bad data file leaves the results untouched.
    corpus = _load_corpus(dataset, spec, options)
    corpus.to(torch_device)
    # Seeded after the data are loaded, so nothing a loader draws (or reseeds) reaches
    # the run's random streams.
    seed_everything(spec.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    plugin = found.plugin_of[f"method:{spec.method}"]
    with store.run_lock(run_dir, spec.key(options.run_id)), _logging_to(run_dir / store.LOG):
        store.remove_temporaries(run_dir)  # left by a process killed while writing
        for name, error in load_errors.items():
            log.warning("plugin %s %s", name, error)
        record = {**dataclasses.asdict(spec), "run_id": options.run_id,
                  "plugin": plugin, "device": str(torch_device), "precision": options.precision,
                  "settings": options.settings,
                  "config": dataclasses.asdict(cfg), "corpus": corpus.info,
                  "dataset_config": dataclasses.asdict(dataset_config(dataset, spec, options))
                  if dataset.Config else None,
                  "torch_threads": torch.get_num_threads(), "freed_memory_kept": memory_kept,
                  "sweep": list(options.sweep),
                  "started": store.now(), "environment": environment(torch_device)}
        store.write_record(run_dir / store.CONFIG, record)
        store.write_status(run_dir, "running", pid=os.getpid(), host=platform.node())
        trackers = loggers.open_trackers(tuple(options.log_to), options.results,
                                         spec.key(options.run_id), record)
        ctx = RunContext(corpus=corpus, config=cfg, device=torch_device, seed=spec.seed,
                         profile=spec.profile, run_dir=run_dir, log=log,
                         evaluate_curve=lambda g: evaluate.curve_metrics(g, corpus, spec.seed),
                         show_progress=options.show_progress, stop_requested=stop_requested,
                         shared_dir=store.shared_dir(options.results, spec.dataset, spec.seed,
                                                     torch_device.type, options.precision),
                         on_record=[tracker.curve for tracker in trackers],
                         precision=options.precision)
        log.info("%s/%s seed %d on %s -> %s", spec.dataset, spec.method, spec.seed, torch_device, run_dir)
        try:
            with devices.autocast(torch_device, options.precision):
                metrics = _train_and_evaluate(method, ctx, tuple(options.sweep))
        except (Interrupted, KeyboardInterrupt) as error:
            store.write_status(run_dir, "interrupted", reason=str(error) or "KeyboardInterrupt")
            raise
        except HarnessError as error:  # a file of the run or the store: the user's to fix
            with contextlib.suppress(HarnessError):  # the disk may be full
                store.write_status(run_dir, "failed", reason=str(error))
            raise
        except Exception as error:
            reason = (memory.out_of_memory(error) or
                      f"plugin {plugin}: {type(error).__name__}: {error}")
            store.write_status(run_dir, "failed", reason=reason)
            raise RunFailed(reason) from error
        store.write_record(run_dir / store.CONFIG, {
            **record, "notes": ctx.notes, "shared_files": ctx.shared_files, "random_streams": {
                "python, numpy and torch global state": spec.seed, **ctx.rngs,
                "evaluation": spec.seed + evaluate.EVAL_SEED_OFFSET}})
        store.write_record(run_dir / store.METRICS, metrics)  # marks the run finished
        store.write_status(run_dir, "finished")
        for tracker in trackers:
            tracker.close(metrics)
        log.info("%s/%s seed %d: %s", spec.dataset, spec.method, spec.seed,
                 ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        return metrics


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """The harness log also written to ``path`` (a run's run.log) while the block runs."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def refuse_other_device(run_dir: Path, kind: str, precision: str) -> None:
    """HarnessError, before anything is written, when ``run_dir`` holds a run (finished or
    checkpointed) computed on another kind of device or in another precision: it is
    neither to be skipped as done nor resumed (another device draws other random streams)."""
    if (run_dir / store.METRICS).exists():
        recorded = store.read_config(run_dir)
        then = (str(recorded.get("device", "cpu")).partition(":")[0],
                recorded.get("precision", "fp32"))
        if then != (kind, precision):
            raise HarnessError(f"{run_dir} holds a run made on {then[0]} ({then[1]}), not on "
                               f"{kind} ({precision}); choose another --run-id")
    elif (run_dir / store.CHECKPOINT).exists():
        api.refuse_other_device(api.read_checkpoint(run_dir / store.CHECKPOINT),
                                run_dir / store.CHECKPOINT, {"device": kind, "precision": precision})


def load_corpus(dataset: Dataset, profile: str, seed: int, mirror: str | None,
                settings: dict[str, str] | None = None):
    """The data set's corpus for a profile and seed (with its settings from ``--set``, for
    a data set that has a Config)."""
    extra = {"config": config.resolve(dataset, profile, settings or {})} if dataset.Config else {}
    return dataset.load(profile=profile, seed=seed, mirror=mirror, **extra)


def dataset_config(dataset: Dataset, spec: RunSpec, options: RunOptions):
    return config.resolve(dataset, spec.profile, options.settings)


def _load_corpus(dataset: Dataset, spec: RunSpec, options: RunOptions):
    """The data set's corpus; a user's bad file is a HarnessError, a broken data-set
    plugin (or a corpus too big for the memory) fails only the runs that need it."""
    try:
        return load_corpus(dataset, spec.profile, spec.seed, options.mirror, options.settings)
    except HarnessError:
        raise
    except Exception as error:
        plugin = registry().plugin_of.get(f"dataset:{dataset.name.partition(':')[0]}")
        raise RunFailed(memory.out_of_memory(error) or
                        f"data set plugin {plugin}: {type(error).__name__}: {error}") from error


def _train_and_evaluate(method, ctx: RunContext, sweep: tuple[float, ...]) -> dict:
    """Train, check the result is finite, evaluate; every file but metrics.json written."""
    started = time.perf_counter()
    generator = api.trained_generator(method, method.train(ctx))
    trained = time.perf_counter()
    if isinstance(generator, torch.nn.Module):
        for name, weight in generator.state_dict().items():
            if weight.is_floating_point():
                check_finite(weight, f"the trained generator's {name}")
    # Real text's judge, an LM of the training split: trained once per data set and seed.
    judge = None if ctx.corpus.oracle is not None else \
        language_model.reference_lm(ctx.corpus, ctx.seed, ctx.shared_dir, ctx.shared_files)
    judged = time.perf_counter()
    metrics, samples = evaluate.evaluate(generator, ctx.corpus, ctx.seed, judge=judge,
                                         standard_errors=True)
    store.write_text(ctx.run_dir / store.SAMPLES,
                     "\n\n".join(ctx.corpus.show(samples[:SHOWN_SAMPLES])) + "\n")
    store.write_csv(ctx.run_dir / store.SWEEP,
                    evaluate.temperature_sweep(generator, ctx.corpus, ctx.seed, sweep))
    if hasattr(generator, "constructor_args"):
        save_generator(ctx.run_dir / store.GENERATOR, generator)
    metrics.update(best_so_far(ctx.curve))
    metrics.update(train_seconds=round(trained - started, 2),
                   judge_lm_seconds=round(judged - trained, 2),
                   eval_seconds=round(time.perf_counter() - judged, 2))
    return metrics


def best_so_far(curve: list[dict]) -> dict:
    """The best value of each curve metric over the run (the authors kept their SeqGAN,
    SS and PG-BLEU results at each new best NLL-oracle); the final value stays the result."""
    best = {}
    for metric in evaluate.CURVE_METRICS:
        values = [row[metric] for row in curve if row.get(metric) is not None]
        if values:
            best[f"{metric}_best_so_far"] = min(values)
    return best


def run_plan(specs: list[RunSpec], options: RunOptions) -> list[tuple[RunSpec, str]]:
    """Run every spec (checked by ``preflight`` first: executors.submit does), showing the
    plan and the overall progress with an ETA. A failing run is recorded and the others go
    on; returns the failures as (spec, reason). SIGINT/SIGTERM stop the plan at the running
    method's next checkpoint (raising api.Interrupted); a second signal stops it at once."""
    log.info("plan: %d runs (%s)", len(specs), ", ".join(
        f"{s.method}/{s.dataset}/seed-{s.seed}" for s in specs))
    failures, started = [], time.perf_counter()
    with stop_on_signals() as stop_requested:
        for number, spec in enumerate(specs, 1):
            if stop_requested():
                raise Interrupted("stopped by a signal between runs")
            log.info("run %d of %d: %s on %s, seed %d (%s profile)%s", number, len(specs),
                     spec.method, spec.dataset, spec.seed, spec.profile,
                     _eta(started, number - 1, len(specs)))
            try:
                run_one(spec, options, stop_requested=stop_requested)
            except RunFailed as error:
                # A plugin's error shows where it arose; running out of memory is the
                # sizes' fault, and its line says all there is.
                cause = None if memory.out_of_memory(error.__cause__) else error.__cause__
                log.error("%s on %s, seed %d failed: %s", spec.method, spec.dataset, spec.seed,
                          error, exc_info=cause)
                failures.append((spec, str(error)))
    log.info("all %d runs done in %.1f min", len(specs), (time.perf_counter() - started) / 60)
    return failures


def preflight(specs: list[RunSpec], options: RunOptions, check_device: bool = True) -> None:
    """Every check that can fail on the user's input, before anything is written: the
    device and, where the runs will run here, that each generator fits in its memory; each
    method's settings; the results directory; every data set's files."""
    for spec in specs:
        options.run_dir(spec)  # every name it is made of checked (the run id above all)
    device = devices.resolve_device(options.device) if check_device else None
    devices.check_precision(options.precision, devices.device_kind(options.device))
    loggers.check(tuple(options.log_to))
    found = registry()
    configs = {}
    for method, dataset, profile in sorted({(s.method, s.dataset, s.profile) for s in specs}):
        configs[dataset, profile, method] = config.resolve(
            found.methods[method], profile, options.settings, found.dataset(dataset))
    check_writable(store.results_dir(options.results))
    vocab_sizes, warnings = {}, []
    for name, profile, seed in sorted({(s.dataset, s.profile, s.seed) for s in specs}):
        corpus = _try_loading(found.dataset(name), profile, seed, options)
        if corpus is not None:
            vocab_sizes[name, profile] = corpus.vocab_size
            warnings += [corpus.warning] if corpus.warning not in warnings else []
    for warning in filter(None, warnings):  # once per command, not per process or seed
        log.warning(warning)
    if device is not None:
        for (dataset, profile, _), cfg in configs.items():
            if (dataset, profile) in vocab_sizes:
                memory.check_generator_fits(cfg, vocab_sizes[dataset, profile], device)


def _try_loading(dataset: Dataset, profile: str, seed: int, options: RunOptions):
    """The corpus, or None from a broken data-set plugin (its runs fail and say why); a
    corpus too big for the memory is the settings' fault: a HarnessError."""
    try:
        return load_corpus(dataset, profile, seed, options.mirror, options.settings)
    except HarnessError:
        raise
    except Exception as error:
        reason = memory.out_of_memory(error)
        if reason is None:
            return None
        raise HarnessError(f"data set {dataset.name}: {reason} while loading it; lower its "
                           f"sizes (--set) or free memory") from None


def check_writable(path: Path) -> None:
    """HarnessError unless ``path`` is, or can be made, a writable directory (nothing is
    left behind by the check)."""
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise HarnessError(f"results directory {path}: {existing} is a file, not a directory; "
                           f"choose another --results")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise HarnessError(f"results directory {path} is not writable ({error.strerror}); "
                           f"fix its permissions or choose another --results") from None


@contextlib.contextmanager
def stop_on_signals():
    """Yield a function telling whether SIGINT or SIGTERM arrived (its ``signals``: which).
    The first signal only asks the running method to stop at its next checkpoint; the
    second acts at once."""
    received: list[int] = []

    def requested() -> bool:
        return bool(received)

    requested.signals = received

    def handle(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        log.warning("%s: stopping at the next checkpoint (send it again to stop now)",
                    signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _eta(started: float, done: int, total: int) -> str:
    if done == 0:
        return ""
    elapsed = time.perf_counter() - started
    return f"; {elapsed / 60:.1f} min so far, about {elapsed / done * (total - done) / 60:.1f} min left"
