"""Executors: who runs a plan. ``local`` runs it in this process, one run after another;
``slurm`` hands every (method, data set, seed) to a Slurm cluster as a job through
submitit. Both write to the same results store, so ``harness table`` and ``harness status``
do not care which ran the work; a plugin adds another executor with ``register_executors``.

Every ``harness run`` records its plan in ``<results>/<run-id>/plan.json`` (the runs, the
executor, each job's id), which ``harness status`` reads back.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness import hookimpl, store
from harness.api import HarnessError
from harness.plugins import registry
from harness.runner import (RunSpec, preflight, results_dir, run_one, run_plan,
                            stop_on_signals)

log = logging.getLogger("harness")


@hookimpl
def register_executors(register):
    register(Local())
    register(Submitit("slurm", cluster="slurm"))


@dataclass
class Resources:
    """What each job asks a cluster for (``harness run --partition ...``)."""

    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 2
    time_min: int = 60
    mem_gb: float | None = None


@dataclass
class Plan:
    """A submitted plan: the runs, who runs them, and each run's job id once submitted."""

    run_id: str
    executor: str
    runs: list[RunSpec]
    options: dict[str, Any]                      # run_one's keyword arguments
    jobs: dict[str, str] = field(default_factory=dict)  # spec key -> job id

    @property
    def directory(self) -> Path:
        return results_dir(self.options.get("results")) / self.run_id

    def save(self) -> None:
        store.write_json(self.directory / "plan.json", {
            "run_id": self.run_id, "executor": self.executor, "options": self.options,
            "runs": [dataclasses.asdict(s) for s in self.runs], "jobs": self.jobs})

    @classmethod
    def load(cls, path: Path) -> "Plan":
        data = store.read_json(path)
        return cls(data["run_id"], data["executor"], [RunSpec(**r) for r in data["runs"]],
                   data["options"], data["jobs"])


def key(spec: RunSpec) -> str:
    return f"{spec.method}/{spec.dataset}/seed-{spec.seed}"


class Executor(Protocol):
    """Runs a plan's runs somewhere and tells which of its jobs are still alive."""

    name: str

    def launch(self, plan: Plan, pending: list[RunSpec],
               resources: Resources) -> list[tuple[RunSpec, str]]:
        """Start ``pending`` (in dependency order); record job ids in ``plan.jobs``. Returns
        failures known now as (spec, reason), e.g. from runs done in this process."""

    def live(self, plan: Plan) -> dict[str, str]:
        """spec key -> ``queued`` or ``running``, for the jobs still in the executor's hands."""


def waits_for(spec: RunSpec, runs: list[RunSpec]) -> list[RunSpec]:
    """The runs of ``runs`` that ``spec`` starts from (a method's ``after``: SeqGAN and
    PG-BLEU start from the MLE run's generator, same data set, seed and profile)."""
    after = getattr(registry().methods[spec.method], "after", ())
    return [other for other in runs if other.method in after and
            (other.dataset, other.seed, other.profile) == (spec.dataset, spec.seed, spec.profile)]


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


def run_states(plan: Plan) -> list[dict]:
    """One row per run: its state (done, running, queued, failed, interrupted or missing)
    and, for a failure, the reason (from status.json or the job's log)."""
    executor = executors()[plan.executor] if plan.executor in executors() else None
    live = executor.live(plan) if executor is not None else {}
    rows = []
    for spec in plan.runs:
        run_dir = spec.directory(results_dir(plan.options.get("results")), plan.run_id)
        status = store.run_status(run_dir)
        job = plan.jobs.get(key(spec))
        state, reason = _state(status, live.get(key(spec)), job is not None)
        if state == "failed" and not reason:
            reason = _job_log_tail(plan, job) or "the job ended without a result"
        rows.append({"method": spec.method, "dataset": spec.dataset, "seed": spec.seed,
                     "state": state, "job": job or "", "reason": reason})
    return rows


def _state(status: dict, live: str | None, submitted: bool) -> tuple[str, str]:
    if status["status"] == "finished":
        return "done", ""
    if status["status"] == "failed":
        return "failed", status.get("reason", "")
    if live is not None:
        return live, ""
    if status["status"] == "interrupted":
        return "interrupted", status.get("reason", "")
    if status["status"] == "running" and status.get("host", platform.node()) == platform.node() \
            and _alive(status.get("pid")):
        return "running", ""
    if status["status"] == "running" or submitted:
        return "failed", ""  # the process died without saying why: killed, timed out, lost
    return "missing", ""


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie has finished)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:  # no /proc: trust kill
        return True


def _job_log_tail(plan: Plan, job: str | None, lines: int = 3) -> str:
    """The last lines of a submitit job's stderr: why a job died before the run said so."""
    if not job:
        return ""
    logs = sorted((plan.directory / "jobs").glob(f"{job}_*_log.err"))
    if not logs:
        return ""
    tail = [line for line in logs[-1].read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(tail[-lines:])


def executors() -> dict[str, Executor]:
    return registry().executors


def submit(specs: list[RunSpec], executor_name: str, resources: Resources,
           run_id: str, **options) -> list[tuple[RunSpec, str]]:
    """Check the inputs, record the plan, and start every run that is not done, queued or
    running (rerunning the same command resubmits only what is missing or failed)."""
    found = executors()
    if executor_name not in found:
        raise HarnessError(f"unknown executor {executor_name!r}; choose one of: "
                           f"{', '.join(sorted(found))}")
    # A cluster's jobs may see devices this machine lacks: they check their own.
    preflight(specs, **{**options, "device": options.get("device", "auto")
                        if executor_name == "local" else "auto"})
    # Jobs run elsewhere, maybe in another directory: every path absolute.
    options = {**options, "run_id": run_id,
               "results": str(results_dir(options.get("results")).absolute())}
    if options.get("mirror"):
        options["mirror"] = str(Path(options["mirror"]).absolute())
    plan_path = Path(options["results"]) / run_id / "plan.json"
    previous = Plan.load(plan_path) if plan_path.exists() else None
    same = previous is not None and previous.executor == executor_name
    runs = list(dict.fromkeys((previous.runs if previous else []) + specs))
    plan = Plan(run_id, executor_name, runs, options, jobs=dict(previous.jobs) if same else {})
    states = {(r["method"], r["dataset"], r["seed"]): r["state"] for r in run_states(plan)}
    pending = [s for s in specs
               if states[(s.method, s.dataset, s.seed)] in ("missing", "failed", "interrupted")]
    for spec in pending:
        plan.jobs.pop(key(spec), None)
        run_dir = spec.directory(Path(options["results"]), run_id)
        if run_dir.exists():  # an earlier failure must not be read as this attempt's
            store.write_status(run_dir, "submitted", executor=executor_name)
    plan.save()
    failures = found[executor_name].launch(plan, in_dependency_order(pending), resources)
    plan.save()
    return failures


def wait(plan_path: Path, poll_seconds: float = 5.0, timeout: float | None = None) -> list[dict]:
    """Block until no run of the plan is queued or running; the final states."""
    started = time.monotonic()
    while True:
        rows = run_states(Plan.load(plan_path))
        if not any(r["state"] in ("queued", "running") for r in rows):
            return rows
        if timeout is not None and time.monotonic() - started > timeout:
            raise TimeoutError(f"runs of {plan_path} still queued or running after {timeout} s")
        time.sleep(poll_seconds)


# --- the executors -------------------------------------------------------------------

class Local:
    """Every run here, in this process, one after another (the default)."""

    name = "local"

    def launch(self, plan, pending, resources):
        return run_plan(pending, **plan.options)

    def live(self, plan):
        return {}


class Submitit:
    """One job per run through submitit: ``cluster="slurm"`` submits to Slurm with job
    dependencies; other submitit clusters (``local``: subprocesses here) have none, so the
    runs a job waits for are awaited before it is submitted. Jobs are requeued on timeout
    or pre-emption and resume from their checkpoints."""

    def __init__(self, name: str, cluster: str):
        self.name = name
        self.cluster = cluster

    def launch(self, plan, pending, resources):
        import submitit

        executor = submitit.AutoExecutor(folder=plan.directory / "jobs", cluster=self.cluster)
        live, submitted = self.live(plan), set()
        for spec in pending:
            # The jobs of the runs this one starts from: submitted now, or earlier and alive.
            waits = [key(first) for first in waits_for(spec, plan.runs)
                     if key(first) in submitted or key(first) in live]
            extra = {}
            if waits and self.cluster == "slurm":
                extra = {"dependency": "afterany:" + ":".join(plan.jobs[k] for k in waits)}
            elif waits:  # no job dependencies on this cluster: wait for those jobs here
                while any(k in self.live(plan) for k in waits):
                    time.sleep(1)
            executor.update_parameters(**self._parameters(spec, resources, extra))
            job = executor.submit(RunJob(spec, plan.options))
            plan.jobs[key(spec)] = str(job.job_id)
            submitted.add(key(spec))
            plan.save()
            log.info("submitted %s as job %s", key(spec), job.job_id)
        return []

    def _parameters(self, spec: RunSpec, resources: Resources, extra: dict) -> dict:
        params: dict[str, Any] = {"name": f"harness-{spec.method}-{spec.dataset}-{spec.seed}",
                                  "timeout_min": resources.time_min,
                                  "cpus_per_task": resources.cpus_per_run}
        if resources.gpus_per_run:
            params["gpus_per_node"] = resources.gpus_per_run
        if resources.mem_gb:
            params["mem_gb"] = resources.mem_gb
        if self.cluster == "slurm":
            if resources.partition:
                params["slurm_partition"] = resources.partition
            params["slurm_additional_parameters"] = extra
        return params

    def live(self, plan):
        ids = {job: name for name, job in plan.jobs.items()}
        if not ids:
            return {}
        if self.cluster != "slurm":  # a local submitit job's id is its process id
            return {ids[j]: "running" for j in ids if _alive(int(j))}
        try:
            out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(ids)],
                                 capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return {}
        states = {}
        for line in out.splitlines():
            job, _, state = line.partition(" ")
            if job in ids and state in SLURM_STATES:
                states[ids[job]] = SLURM_STATES[state]
        return states


SLURM_STATES = {"PENDING": "queued", "CONFIGURING": "running", "RUNNING": "running",
                "COMPLETING": "running", "REQUEUED": "queued", "RESIZING": "running",
                "SUSPENDED": "queued"}


def _checkpointable():
    try:
        from submitit.helpers import Checkpointable
        return Checkpointable
    except ImportError:  # submitit is only needed when a submitit executor is used
        return object


class RunJob(_checkpointable()):
    """One run as a submitit job. On timeout or pre-emption submitit requeues it (the
    Checkpointable default); the SIGTERM that Slurm sends first stops the run at its next
    checkpoint, and the requeued job resumes from there."""

    def __init__(self, spec: RunSpec, options: dict):
        self.spec = spec
        self.options = options

    def __call__(self) -> dict:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        with stop_on_signals() as stop_requested:
            return run_one(self.spec, **{**self.options, "show_progress": False,
                                         "stop_requested": stop_requested})
