"""Running methods on data sets: one directory per run, written atomically.

A run: load the data set, seed every random state, train the method, check the result is
finite, evaluate it with the harness's own code, and write its files to the store
(metrics.json last, so its presence marks a finished run)."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import time
from pathlib import Path
from typing import Iterator

import torch

from harness import (api, config, devices, evaluate, language_model, loggers, memory, store,
                     training)
from harness.api import Dataset, HarnessError, Interrupted, RunContext, check_finite
from harness.environment import environment
from harness.streams import GLOBAL_STREAM, seed_everything, stream_seed
from harness.generator import save_generator
from harness.plan import RunOptions, RunSpec
from harness.plugins import load_errors, registry
from harness.signals import stop_on_signals

log = logging.getLogger("harness")
SHOWN_SAMPLES = 100  # generated sequences kept as text in each run's samples.txt


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
    if "architecture" in options.settings and not training.takes_architecture(method):
        log.warning("%s keeps its own generator: --set architecture=%s does not apply to it",
                    spec.method, options.settings["architecture"])
    fresh = config.canonical_profile(spec.profile) in evaluate.FRESH_CURVE_DRAWS
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
                  "evaluation": evaluation_record(method, fresh),
                  "started": store.now(), "environment": environment(torch_device)}
        store.write_record(run_dir / store.CONFIG, record)
        store.write_status(run_dir, "running", pid=os.getpid(), host=platform.node())
        trackers = loggers.open_trackers(tuple(options.log_to), options.results,
                                         spec.key(options.run_id), record)
        ctx = RunContext(corpus=corpus, config=cfg, device=torch_device, seed=spec.seed,
                         profile=spec.profile, run_dir=run_dir, log=log,
                         evaluate_curve=lambda g, point: evaluate.curve_metrics(
                             g, corpus, spec.seed, point),
                         fresh_curve_draws=fresh,
                         show_progress=options.show_progress, stop_requested=stop_requested,
                         shared_dir=store.shared_dir(options.results, spec.dataset, spec.seed,
                                                     torch_device.type, options.precision),
                         on_record=[tracker.curve for tracker in trackers],
                         precision=options.precision, methods=found.methods)
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
                GLOBAL_STREAM: stream_seed(spec.seed, GLOBAL_STREAM), **ctx.rngs,
                **evaluate.random_streams(spec.seed),
                **(evaluate.curve_streams(spec.seed, ctx.curve) if fresh else {})}})
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
    if generator.constructor_args is not None:
        save_generator(ctx.run_dir / store.GENERATOR, generator)
    metrics.update(best_so_far(ctx.curve, method.best_so_far_phase))
    metrics.update(train_seconds=round(trained - started, 2),
                   judge_lm_seconds=round(judged - trained, 2),
                   eval_seconds=round(time.perf_counter() - judged, 2))
    return metrics


def best_so_far(curve: list[dict], phase: str | None) -> dict:
    """The best value of each curve metric over the points of ``phase`` (the method's
    ``best_so_far_phase``: the authors of SeqGAN and PG-BLEU kept their best NLL-oracle
    inside the adversarial loop, MLE pre-training left out); nothing where the method
    declares no phase. The final value stays the result."""
    best = {}
    rows = [row for row in curve if phase is not None and row.get("phase") == phase]
    for metric in evaluate.CURVE_METRICS:
        values = [row[metric] for row in rows if row.get(metric) not in (None, "")]
        if values:
            best[f"{metric}_best_so_far"] = min(values)
    return best


def evaluation_record(method, fresh: bool) -> dict:
    """How the run's curve was evaluated, for config.json (the table's conditions read it)."""
    return {"curve_samples": CURVE_SAMPLES["fresh" if fresh else "shared"],
            "best_so_far_over": method.best_so_far_phase}


# What a run's config.json says of its curve's samples; a run recorded before the setting
# existed drew every point from the one evaluation stream.
CURVE_SAMPLES = {"fresh": "fresh at every point", "shared": "one stream for every point"}


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


def _eta(started: float, done: int, total: int) -> str:
    if done == 0:
        return ""
    elapsed = time.perf_counter() - started
    return f"; {elapsed / 60:.1f} min so far, about {elapsed / done * (total - done) / 60:.1f} min left"
