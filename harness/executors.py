"""Executors: who runs a plan. ``local`` runs it in this process, one run after another;
``slurm`` (harness/slurm.py) hands every run to a cluster. All write to the same results
store, so ``harness table`` and ``harness status`` do not care which ran the work; a
plugin adds another executor with ``register_executors``.

An executor declares its own ``harness run`` options as the fields of its ``Options``
dataclass (``cli_options`` turns them into Click options), and says with ``runs_here``
whether ``launch`` runs the plan in this process (then the runs' device is checked here)
or hands it to something else.

Every ``harness run`` records its plan in ``<results>/<run-id>/plan.json`` (the runs, the
executor, the run options, each job's id), which ``harness status`` reads back.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import logging

import click

from harness import hookimpl, store
from harness.api import HarnessError, method_info
from harness.plugins import registry
from harness.runner import RunOptions, RunSpec, preflight, run_plan

log = logging.getLogger("harness")


@hookimpl
def register_executors(register):
    register(Local())


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


class Executor(Protocol):
    """Runs a plan's runs somewhere and tells which of its jobs are still alive."""

    name: str
    Options: type       # a dataclass: each field is a `harness run` option of this executor
    runs_here: bool     # launch() runs the plan in this process and returns when it is done

    def launch(self, plan: Plan, pending: list[RunSpec],
               options: Any) -> list[tuple[RunSpec, str]]:
        """Start ``pending`` (in dependency order); record job ids in ``plan.jobs``. Returns
        failures known now as (spec, reason), e.g. from runs done in this process."""

    def live(self, plan: Plan) -> dict[str, str]:
        """spec key -> ``queued`` or ``running``, for the jobs still in the executor's hands."""


def option(help: str, **click_settings: Any) -> dict:
    """A field's metadata for an executor's Options: its help text and Click settings."""
    return {"help": help, **click_settings}


def cli_options(executor: Executor) -> list:
    """The Click options of an executor's ``Options`` fields: ``--field-name``, the field's
    default, type and help."""
    options = []
    for item in dataclasses.fields(executor.Options):
        default = item.default if item.default is not dataclasses.MISSING else None
        settings = {k: v for k, v in item.metadata.items() if k != "help"}
        if isinstance(default, bool):
            settings.setdefault("is_flag", True)
        elif default is not None:
            settings.setdefault("type", type(default))
        options.append(click.Option([f"--{item.name.replace('_', '-')}"], default=default,
                                    show_default=default is not None,
                                    help=f"[{executor.name}] {item.metadata.get('help', '')}",
                                    **settings))
    return options


def parse_options(executor: Executor, values: dict[str, Any]) -> Any:
    """The executor's typed Options from the CLI's values (its own fields only)."""
    return executor.Options(**{item.name: values[item.name]
                               for item in dataclasses.fields(executor.Options)
                               if item.name in values})


def waits_for(spec: RunSpec, runs: list[RunSpec]) -> list[RunSpec]:
    """The runs of ``runs`` that ``spec`` starts from (its method's ``starts_from``, same
    data set, seed and profile): SeqGAN and PG-BLEU start from the MLE run's generator."""
    starts_from = method_info(registry().methods[spec.method]).starts_from
    return [other for other in runs if other.method in starts_from and
            (other.dataset, other.seed, other.profile) == (spec.dataset, spec.seed, spec.profile)]


def past_seconds(options: RunOptions) -> dict[tuple[str, str, str], float]:
    """(method, data set, profile) -> the median wall time (training, judge LM and
    evaluation) of its finished runs in this results store, any run id or seed, made with
    the same ``--set`` settings: what a run is expected to take."""
    seconds: dict[tuple[str, str, str], list[float]] = {}
    for _, directory in store.runs(options.results, finished_only=True):
        config, metrics = store.read_config(directory), store.read_metrics(directory)
        if config.get("settings", {}) != options.settings:
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


# --- the state of every run of a plan ------------------------------------------------

STATES = ("done", "running", "queued", "failed", "interrupted", "missing")


def live_jobs(plan: Plan) -> dict[str, str]:
    """Spec key -> ``queued`` or ``running`` for the plan's jobs its executor still holds."""
    executor = registry().executors.get(plan.executor)
    return executor.live(plan) if executor is not None else {}


def run_states(plan: Plan, live: dict[str, str] | None = None) -> list[dict]:
    """One row per run: its state (done, running, queued, failed, interrupted or missing)
    and, for a failure, the reason (from status.json or the job's log). ``live``: the
    executor's word on its jobs, asked here when not given."""
    live = live_jobs(plan) if live is None else live
    rows = []
    for spec in plan.runs:
        status = store.run_status(plan.run_dir(spec))
        job = plan.jobs.get(key(spec))
        state, reason = _state(status, live.get(key(spec)), job is not None)
        if state == "failed" and reason in ("", store.DIED):  # the job's log may say why
            reason = _job_log_tail(plan, job) or reason or "the job ended without a result"
        rows.append({"method": spec.method, "dataset": spec.dataset, "seed": spec.seed,
                     "state": state, "job": job or "", "reason": reason})
    return rows


def _state(status: dict, live: str | None, submitted: bool) -> tuple[str, str]:
    """A run's state from its ``store.run_status`` and the executor's word on its job."""
    if status["status"] == "finished":
        return "done", ""
    if live is not None:  # the job is in the executor's hands (a requeued one, too)
        return live, ""
    if status["status"] in ("failed", "interrupted"):
        return status["status"], status.get("reason", "")
    if submitted:
        return "failed", ""  # the job ended without a result: killed, timed out, lost
    if status["status"] == "running":  # its process lives (or runs on another machine)
        return "running", ""
    return "missing", ""


def _job_log_tail(plan: Plan, job: str | None, lines: int = 3) -> str:
    """The last lines of a job's stderr: why a job died before the run said so."""
    if not job:
        return ""
    logs = sorted(store.jobs_dir(plan.options.results, plan.run_id).glob(f"{job}_*_log.err"))
    if not logs:
        return ""
    tail = [line for line in logs[-1].read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(tail[-lines:])


def get(name: str) -> Executor:
    found = registry().executors
    if name not in found:
        raise HarnessError(f"unknown executor {name!r}; choose one of: {', '.join(found)}")
    return found[name]


def submit(specs: list[RunSpec], executor: Executor, executor_options: Any,
           options: RunOptions) -> list[tuple[RunSpec, str]]:
    """Check the inputs, record the plan, and start every run that is not done, queued or
    running (rerunning the same command resubmits only what is missing or failed)."""
    # An executor's jobs elsewhere may see devices this machine lacks: they check their own.
    preflight(specs, options, check_device=executor.runs_here)
    # Jobs run elsewhere, maybe in another directory: every path absolute.
    options = dataclasses.replace(
        options, results=str(store.results_dir(options.results).absolute()),
        mirror=str(Path(options.mirror).absolute()) if options.mirror else None)
    path = store.plan_path(options.results, options.run_id)
    previous = Plan.load(path) if path.exists() else None
    same = previous is not None and previous.executor == executor.name
    runs = list(dict.fromkeys((previous.runs if previous else []) + specs))
    plan = Plan(executor.name, runs, options, jobs=dict(previous.jobs) if same else {})
    states = {(r["method"], r["dataset"], r["seed"]): r["state"] for r in run_states(plan)}
    if executor.runs_here:  # handed-on runs: the same command again resubmits the failed
        for spec in specs:
            if states[(spec.method, spec.dataset, spec.seed)] == "running":
                raise store.in_use(spec.key(options.run_id), plan.run_dir(spec))
    pending = [s for s in specs
               if states[(s.method, s.dataset, s.seed)] in ("missing", "failed", "interrupted")]
    for spec in pending:
        plan.jobs.pop(key(spec), None)
        if plan.run_dir(spec).exists():  # an earlier failure must not be read as this attempt's
            with store.run_lock(plan.run_dir(spec), spec.key(options.run_id)):  # nor overwrite a run
                store.write_status(plan.run_dir(spec), "submitted", executor=executor.name)
    plan.save()
    failures = executor.launch(plan, in_dependency_order(pending), executor_options)
    plan.save()
    return failures


def wait(plan_path: Path, poll_seconds: float = 5.0, timeout: float | None = None) -> list[dict]:
    """Block until no run of the plan is queued or running and the executor holds none of
    its jobs (a job lives on for a moment after its run's metrics are written); the final
    states."""
    started = time.monotonic()
    while True:
        plan = Plan.load(plan_path)
        live = live_jobs(plan)  # asked once a poll (squeue on Slurm)
        rows = run_states(plan, live)
        if not live and not any(r["state"] in ("queued", "running") for r in rows):
            return rows
        if timeout is not None and time.monotonic() - started > timeout:
            raise TimeoutError(f"runs of {plan_path} still queued or running after {timeout} s")
        time.sleep(poll_seconds)


@dataclass
class LocalOptions:
    jobs: int = field(default=1, metadata=option(
        "Runs at once on this machine, each in a process of its own with --threads torch "
        "threads (default: the cores shared out); a run starts after the runs it starts from.",
        type=click.IntRange(min=1)))


class Local:
    """The runs here: one after another in this process, or ``--jobs N`` at once."""

    name = "local"
    Options = LocalOptions
    runs_here = True

    def launch(self, plan, pending, options):
        if options.jobs == 1 or len(pending) < 2:
            return run_plan(pending, plan.options)
        threads = plan.options.threads or max(1, (os.cpu_count() or 1) // options.jobs)
        return run_in_parallel(pending, dataclasses.replace(
            plan.options, threads=threads, show_progress=False),
            min(options.jobs, len(pending)))  # no more workers than runs

    def live(self, plan):
        return {}


def run_in_parallel(pending: list[RunSpec], options: RunOptions,
                    jobs: int) -> list[tuple[RunSpec, str]]:
    """Up to ``jobs`` runs at once, each in a fresh process; a run starts when the runs it
    starts from have ended, the longest chains of work first (timed by earlier runs). A
    SIGINT from the terminal reaches every process, a SIGTERM to this one is passed on:
    each run stops at its next checkpoint, no new one starts, and api.Interrupted is raised
    once they all have. A kill -9 of this process ends the workers too (``_end_with``)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait as wait_for

    from harness.api import Interrupted
    from harness.runner import stop_on_signals

    waiting, running, failures = longest_first(pending, past_seconds(options)), {}, []
    started, done, passed_on = time.perf_counter(), 0, False
    context = multiprocessing.get_context("spawn")  # clean processes: no forked torch state
    gpus = context.Queue()  # on a GPU machine, each worker takes a GPU of its own
    for index in range(jobs):
        gpus.put(index % max(_gpu_count(), 1))
    with stop_on_signals() as stop_requested, \
            ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                initializer=_start_worker,
                                initargs=(gpus, os.getpid())) as pool:
        while waiting or running:
            ended = set(pending) - set(waiting) - set(running.values())
            for spec in [s for s in waiting if set(waits_for(s, pending)) <= ended]:
                if len(running) < jobs and not stop_requested():
                    waiting.remove(spec)
                    running[pool.submit(_run_one_here, spec, options)] = spec
            if not running:
                break
            if signal.SIGTERM in stop_requested.signals and not passed_on:
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGTERM)
                passed_on = True
            finished, _ = wait_for(running, timeout=1, return_when=FIRST_COMPLETED)
            for future in finished:
                spec, (state, reason) = running.pop(future), future.result()
                done += 1
                if state == "failed":
                    failures.append((spec, reason))
                elapsed = time.perf_counter() - started
                log.info("%d of %d runs ended (%s: %s); %.1f min so far, about %.1f min left",
                         done, len(pending), key(spec), state, elapsed / 60,
                         elapsed / done * (len(pending) - done) / 60)
        if stop_requested():
            raise Interrupted("stopped by a signal; the runs saved their checkpoints")
    return failures


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _start_worker(gpus, parent: int) -> None:
    """A worker's start: it ends with ``parent``, the pool's process, then takes a GPU."""
    threading.Thread(target=_end_with, args=(parent,), daemon=True).start()
    _take_a_gpu(gpus)


_between_runs = threading.Event()  # in a worker: set while no run is in progress
_between_runs.set()


def _end_with(parent: int) -> None:
    """End this worker once ``parent`` (the pool's process) has ended, kill -9 included:
    nobody would hand it a run or read a result again. One SIGTERM ends an idle worker, or
    stops its run at the next checkpoint (a second would stop it at once), and then it
    exits. Polled, not Linux's parent-death signal: that cannot wait for the run to stop,
    and polling works everywhere. ``parent`` comes from the pool, so a parent gone before
    this thread starts counts too."""
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)
    _between_runs.wait()
    os._exit(1)


def _take_a_gpu(gpus) -> None:
    """A worker's start: use the GPU it drew (round robin over the machine's GPUs)."""
    index = gpus.get()
    if _gpu_count():
        import torch

        torch.cuda.set_device(index)


def _run_one_here(spec: RunSpec, options: RunOptions) -> tuple[str, str]:
    """One run in a worker process: ('finished' | 'failed' | 'interrupted', reason)."""
    import logging

    from harness.api import Interrupted
    from harness.runner import RunFailed, run_one, stop_on_signals

    logging.getLogger("harness").setLevel(logging.INFO)  # run.log keeps everything
    with stop_on_signals() as stop_requested:
        _between_runs.clear()
        try:
            run_one(spec, options, stop_requested)
        except RunFailed as error:
            return "failed", str(error)
        except (Interrupted, KeyboardInterrupt) as error:
            return "interrupted", str(error)
        finally:
            _between_runs.set()
    return "finished", ""
