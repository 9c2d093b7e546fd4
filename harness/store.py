"""The results store: the one module that knows where results live, and how they are
written (atomically: a file is either complete or absent, never half-written).

Layout under the results directory (``./results``, ``--results`` or ``HARNESS_RESULTS``)::

    <run-id>/plan.json                               the plan of the runs (executors)
    <run-id>/jobs/                                   cluster jobs' logs
    <run-id>/<dataset>/<method>/seed-<n>/            one run: the files named below
    _shared/<dataset>/seed-<n>/<device>/             work shared between runs (pre-training,
                                                     the judge LM) on one device kind and
                                                     precision: cpu, cuda, cuda-tf32, ...
    tensorboard/<run-id>/..., mlflow/                 what --log-to trackers write
    plots/                                           harness plot's figures

Everything else asks this module for a path or for the runs it holds.
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

RESULTS_ENV = "HARNESS_RESULTS"
CONFIG, METRICS, STATUS = "config.json", "metrics.json", "status.json"
CURVE, SWEEP, SAMPLES = "curve.csv", "sweep.csv", "samples.txt"
CHECKPOINT, GENERATOR, LOG = "checkpoint.pt", "generator.pt", "run.log"
RUN_LOCK = "run.lock"  # held by the process running the run
PLAN = "plan.json"
SHARED = "_shared"


@dataclass(frozen=True)
class RunKey:
    """What names one run in the results."""

    run_id: str
    dataset: str
    method: str
    seed: int

    def __str__(self) -> str:
        return f"{self.method}/{self.dataset}/seed-{self.seed}"


def dataset_dir_name(dataset: str) -> str:
    """A data set's directory name: its name, or for a name that is no plain file name
    (``text:/home/me/lines.txt``) a readable slug of it and a hash that keeps it unique."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-.")[-48:]
    if slug == dataset:
        return dataset
    return f"{slug}-{hashlib.sha1(dataset.encode()).hexdigest()[:8]}"


def results_dir(results: str | Path | None = None) -> Path:
    return Path(results or os.environ.get(RESULTS_ENV) or "results")


def run_dir(results: str | Path | None, key: RunKey) -> Path:
    return (results_dir(results) / key.run_id / dataset_dir_name(key.dataset) / key.method
            / f"seed-{key.seed}")


def run_id_dir(results: str | Path | None, run_id: str) -> Path:
    return results_dir(results) / run_id


def plan_path(results: str | Path | None, run_id: str) -> Path:
    return run_id_dir(results, run_id) / PLAN


def plan_paths(results: str | Path | None, run_id: str | None = None) -> list[Path]:
    return sorted(results_dir(results).glob(f"{run_id or '*'}/{PLAN}"))


def jobs_dir(results: str | Path | None, run_id: str) -> Path:
    return run_id_dir(results, run_id) / "jobs"


def shared_dir(results: str | Path | None, dataset: str, seed: int, device: str = "cpu",
               precision: str = "fp32") -> Path:
    """Work shared by the runs of one data set and seed, computed on one kind of device in
    one precision (a snapshot trained on a GPU is not a CPU run's pre-training)."""
    made_on = device if precision == "fp32" else f"{device}-{precision}"
    return results_dir(results) / SHARED / dataset_dir_name(dataset) / f"seed-{seed}" / made_on


def tracker_dir(results: str | Path | None, tracker: str, key: RunKey | None = None) -> Path:
    """Where an experiment tracker (``--log-to``) writes: one directory per tracker, with
    one subdirectory per run when ``key`` is given."""
    root = results_dir(results) / tracker
    if key is None:
        return root
    return root / key.run_id / dataset_dir_name(key.dataset) / key.method / f"seed-{key.seed}"


def plots_dir(results: str | Path | None) -> Path:
    return results_dir(results) / "plots"


def runs(results: str | Path | None, finished_only: bool = False) -> Iterator[tuple[RunKey, Path]]:
    """Every run under ``results`` (a results directory, one run id's directory or one
    run's directory), with its key as its config.json records it."""
    root = results_dir(results)
    if (root / CONFIG).exists():
        candidates = [root / CONFIG]
    else:
        candidates = sorted(root.glob(f"*/*/seed-*/{CONFIG}")) + \
            sorted(root.glob(f"*/*/*/seed-*/{CONFIG}"))
    for path in candidates:
        if finished_only and not path.with_name(METRICS).exists():
            continue
        try:
            config = read_json(path)
            key = RunKey(config["run_id"], config["dataset"], config["method"], int(config["seed"]))
        except (OSError, ValueError, KeyError):
            continue  # not a run's config
        yield key, path.parent


def other_seeds(run_dir: Path) -> list[Path]:
    """The finished runs beside ``run_dir`` that differ from it by their seed only (the
    other seeds of its table row)."""
    run_dir = Path(run_dir)
    mine = _row_of(read_json(run_dir / CONFIG))
    found = []
    for other in sorted(run_dir.parent.glob("seed-*")):
        if other.resolve() == run_dir.resolve() or not (other / METRICS).exists():
            continue
        try:
            if _row_of(read_json(other / CONFIG)) == mine:
                found.append(other)
        except (OSError, ValueError):
            continue
    return found


def _row_of(config: dict) -> str:
    """What a run shares with the other seeds of its row (runs made before the precision
    was recorded were fp32)."""
    return json.dumps({**{key: config.get(key) for key in
                          ("run_id", "method", "dataset", "profile", "settings", "sweep")},
                       "device": str(config.get("device", "cpu")).partition(":")[0],
                       "precision": config.get("precision") or "fp32"}, sort_keys=True)


def run_id_dir_of(run_dir: Path) -> Path:
    """The run id's directory that holds a run's directory."""
    return Path(run_dir).parents[2]


def find_run(results: str | Path | None, method: str, dataset: str, seed: int = 0,
             run_id: str | None = None) -> list[Path]:
    """The finished runs of (method, data set, seed), optionally of one run id."""
    return [directory for key, directory in runs(results, finished_only=True)
            if (key.method, key.dataset, key.seed) == (method, dataset, seed)
            and run_id in (None, key.run_id)]


# --- atomic writes -----------------------------------------------------------------

def _write_atomic(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_temporaries(directory: Path) -> None:
    """Delete the temporary files of writes that a killed process never finished."""
    for leftover in Path(directory).glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    _write_atomic(path, lambda f: json.dump(data, f, indent=2, sort_keys=True, default=str))


def write_text(path: Path, text: str) -> None:
    _write_atomic(path, lambda f: f.write(text))


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_torch(path: Path, obj: Any) -> None:
    _write_atomic(path, lambda f: torch.save(obj, f), mode="wb")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing), so that runs beside each other
    (``--jobs``, Slurm) make a shared file once and the others wait and read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class RunInUse(Exception):
    """Another process holds the run directory's lock: it is running that run."""


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while its run runs; RunInUse at once, with nothing written,
    when another process holds it. The system drops the lock when its holder ends, however
    it ends, so a killed run never leaves its directory locked."""
    with open(Path(run_dir) / RUN_LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUse(run_dir) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_torch(path: Path) -> Any:
    """A file written by ``write_torch``, read onto the CPU as tensors and plain values only
    (``weights_only``): a file from someone else cannot run code. Modules and optimisers
    move their tensors to their own device in ``load_state_dict``; random states must stay
    on the CPU (a torch.Generator's state is a CPU byte tensor whatever its device)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_status(run_dir: Path, status: str, **details) -> None:
    """running, failed (with the reason), interrupted or finished: status.json."""
    write_json(Path(run_dir) / STATUS, {"status": status, "updated": now(), **details})


DIED = "the process ended without saying why (killed?)"


def run_status(run_dir: Path) -> dict:
    """A run directory's state: finished when metrics.json exists (written last), else what
    status.json says, else unfinished. A run killed outright still says ``running``: when
    its process on this machine has ended, it is reported failed (``DIED``); a process on
    another machine cannot be checked from here."""
    run_dir = Path(run_dir)
    if (run_dir / METRICS).exists():
        return {"status": "finished"}
    try:
        status = read_json(run_dir / STATUS)
    except (OSError, ValueError):
        return {"status": "unfinished"}
    # "finished" without metrics.json: the metrics were deleted, the run is to be redone.
    if status.get("status") == "finished":
        return {"status": "unfinished"}
    if status.get("status") == "running" and status.get("host", platform.node()) == \
            platform.node() and not alive(status.get("pid")):
        return {**status, "status": "failed", "reason": DIED}
    return status


def alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie has finished)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive all the same
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:  # no /proc: trust kill
        return True
