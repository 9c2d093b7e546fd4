"""The ``local`` executor: a plan's runs on this machine, one after another in this
process, or ``--jobs N`` at once, each in a worker process of its own (with a GPU of its
own on a GPU machine)."""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import click

from harness import hookimpl
from harness.api import Interrupted
from harness.executors import option
from harness.plan import RunOptions, RunSpec, key, longest_first, past_seconds, waits_for
from harness.runner import RunFailed, run_one, run_plan
from harness.signals import stop_on_signals

log = logging.getLogger("harness")


@hookimpl
def register_executors(register):
    register(Local())


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
