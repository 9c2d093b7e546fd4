"""Executors: who runs a plan. ``local`` (harness/local.py) runs it on this machine;
``slurm`` (harness/slurm.py) hands every run to a cluster. All write to the same results
store, so ``harness table`` and ``harness status`` do not care which ran the work; a
plugin adds another executor with ``register_executors``.

An executor declares its own ``harness run`` options as the fields of its ``Options``
dataclass (``cli_options`` turns them into Click options), and says with ``runs_here``
whether ``launch`` runs the plan in this process (then the runs' device is checked here)
or hands it to something else. ``submit`` records the plan and starts what is not done;
``wait`` follows it to the end.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Protocol

import click

from harness import store
from harness.api import HarnessError
from harness.plan import Plan, RunOptions, RunSpec, in_dependency_order, key
from harness.plugins import registry
from harness.preflight import preflight
from harness.run_state import live_jobs, run_states


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
