"""The ``slurm`` executor: one job per (method, data set, seed) through submitit, with
Slurm job dependencies where a run starts from another's result. Jobs are requeued on
timeout or pre-emption and resume from their checkpoints.

``Submitit(name, cluster)`` also drives submitit's other clusters (``local``: processes on
this machine, which the tests use); those have no job dependencies, so the runs a job
waits for are awaited before it is submitted.
"""
from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from harness import hookimpl, store
from harness.executors import option
from harness.plan import Plan, RunOptions, RunSpec, key, waits_for
from harness.runner import run_one
from harness.signals import stop_on_signals

log = logging.getLogger("harness")


@hookimpl
def register_executors(register):
    register(Submitit("slurm", cluster="slurm"))


@dataclass
class ClusterOptions:
    """What each job asks the cluster for."""

    partition: str | None = field(default=None, metadata=option("Partition for the jobs."))
    gpus_per_run: int = field(default=0, metadata=option("GPUs per job."))
    cpus_per_run: int = field(default=2, metadata=option("CPU cores per job."))
    time: int = field(default=60, metadata=option(
        "Minutes per job before the cluster requeues it (it resumes)."))
    mem_gb: float | None = field(default=None, metadata=option("Memory per job (GB).",
                                                                type=float))


SLURM_STATES = {"PENDING": "queued", "CONFIGURING": "running", "RUNNING": "running",
                "COMPLETING": "running", "REQUEUED": "queued", "RESIZING": "running",
                "SUSPENDED": "queued"}


class Submitit:
    """One job per run through submitit."""

    Options = ClusterOptions
    runs_here = False

    def __init__(self, name: str, cluster: str):
        self.name = name
        self.cluster = cluster

    def launch(self, plan: Plan, pending: list[RunSpec], options: ClusterOptions):
        import submitit

        executor = submitit.AutoExecutor(folder=store.jobs_dir(plan.options.results, plan.run_id),
                                         cluster=self.cluster)
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
            executor.update_parameters(**self._parameters(spec, options, extra))
            job = executor.submit(RunJob(spec, plan.options))
            plan.jobs[key(spec)] = str(job.job_id)
            submitted.add(key(spec))
            plan.save()
            log.info("submitted %s as job %s", key(spec), job.job_id)
        return []

    def _parameters(self, spec: RunSpec, options: ClusterOptions, extra: dict) -> dict:
        params: dict[str, Any] = {"name": f"harness-{spec.method}-{spec.dataset}-{spec.seed}",
                                  "timeout_min": options.time,
                                  "cpus_per_task": options.cpus_per_run}
        if options.gpus_per_run:
            params["gpus_per_node"] = options.gpus_per_run
        if options.mem_gb:
            params["mem_gb"] = options.mem_gb
        if self.cluster == "slurm":
            if options.partition:
                params["slurm_partition"] = options.partition
            params["slurm_additional_parameters"] = extra
        return params

    def live(self, plan: Plan) -> dict[str, str]:
        ids = {job: name for name, job in plan.jobs.items()}
        if not ids:
            return {}
        if self.cluster != "slurm":  # a local submitit job's id is its process id
            return {ids[j]: "running" for j in ids if store.alive(int(j))}
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

    def __init__(self, spec: RunSpec, options: RunOptions):
        self.spec = spec
        self.options = options

    def __call__(self) -> dict:
        import dataclasses

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        with stop_on_signals() as stop_requested:
            return run_one(self.spec, dataclasses.replace(self.options, show_progress=False),
                           stop_requested)
