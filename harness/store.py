"""The results store: the one module that knows where results live, and how they are
written (atomically: a file is either complete or absent, never half-written).

Layout under a results directory (``./runs`` by default, ``--results`` or ``HARNESS_RESULTS``;
the committed reference sets are run ids of the clone's own ``results/``)::

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
import errno
import fcntl
import functools
import hashlib
import io
import json
import os
import platform
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import torch

from harness import streams
from harness.errors import HarnessError, StorageError

RESULTS_ENV = "HARNESS_RESULTS"
# A user's runs go to ./runs (ignored by git), apart from the committed reference sets:
# each a run id of the clone's results/ directory, beside this package.
DEFAULT_RESULTS = "runs"
REFERENCE_RESULTS = Path(__file__).resolve().parents[1] / "results"
CONFIG, METRICS, STATUS = "config.json", "metrics.json", "status.json"
CURVE, SWEEP, SAMPLES = "curve.csv", "sweep.csv", "samples.txt"
CHECKPOINT, GENERATOR, LOG = "checkpoint.pt", "generator.pt", "run.log"
RUN_LOCK = "run.lock"  # held by the process running the run
PLAN = "plan.json"
SHARED = "_shared"
PLOTS = "plots"
# The version written into config.json, metrics.json, status.json and plan.json; a file
# without one was written before versions were recorded and reads as version 1.
VERSION = 1
# Names the store makes directories of (run ids, methods): a safe character set and a
# length limit, so a name can never climb out of the results directory.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESERVED = (SHARED, PLOTS, "tensorboard", "mlflow", "jobs")


@dataclass(frozen=True)
class RunKey:
    """What names one run in the results."""

    run_id: str
    dataset: str
    method: str
    seed: int

    def __str__(self) -> str:
        return f"{self.method}/{self.dataset}/seed-{self.seed}"


def check_name(kind: str, name: Any) -> str:
    """``name`` when it is safe as one directory name of the results (HarnessError otherwise,
    raised before anything is written)."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in RESERVED:
        raise HarnessError(f"{kind} {name!r} is not a valid name: use 1 to 100 letters, digits, "
                           f"'.', '_' or '-', starting with a letter or digit (and none of "
                           f"{', '.join(RESERVED)})")
    return name


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise HarnessError(f"seed {seed!r} must be an integer of 0 or more")
    return seed


def dataset_dir_name(dataset: str) -> str:
    """A data set's directory name: its name, or for a name that is no plain file name
    (``text:/home/me/lines.txt``) a readable slug of it and a hash that keeps it unique."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-.")[-48:]
    if slug == dataset:
        return dataset
    return f"{slug}-{hashlib.sha1(dataset.encode()).hexdigest()[:8]}"


def results_dir(results: str | Path | None = None) -> Path:
    return Path(results or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def reference_sets() -> list[str]:
    """The committed reference sets' names (their run ids); none outside a clone."""
    return [path.parent.name for path in plan_paths(REFERENCE_RESULTS)]


def reference_dir(name: str | None = None) -> Path:
    """The committed reference set ``name``, or with no name the directory of them all."""
    names = reference_sets()
    if not names:
        raise HarnessError(f"no reference sets in {REFERENCE_RESULTS}: they come with a clone "
                           f"of the repository; table a copy of one with --results DIR")
    if name is None:
        return REFERENCE_RESULTS
    if name not in names:
        raise HarnessError(f"no reference set {name!r}; choose one of: {', '.join(names)}")
    return run_id_dir(REFERENCE_RESULTS, name)


def run_dir(results: str | Path | None, key: RunKey) -> Path:
    return (run_id_dir(results, key.run_id) / dataset_dir_name(key.dataset)
            / check_name("method", key.method) / f"seed-{check_seed(key.seed)}")


def run_id_dir(results: str | Path | None, run_id: str) -> Path:
    return results_dir(results) / check_name("run id", run_id)


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


def snapshot_path(shared: Path, method: str, key: dict, step: int) -> Path:
    """Where a run of ``method`` keeps its result after ``step`` steps in ``shared`` (its
    ``shared_dir``) for the runs that start from it; ``key`` holds what decides that
    result (settings, data, seed, device), hashed into the name."""
    # The streams' scheme is part of the key: a snapshot drawn under another is not reused.
    key = {**key, "streams": streams.SCHEME}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return Path(shared) / f"{method}-{digest[:12]}-epoch-{step}.pt"


def tracker_dir(results: str | Path | None, tracker: str, key: RunKey | None = None) -> Path:
    """Where an experiment tracker (``--log-to``) writes: one directory per tracker, with
    one subdirectory per run when ``key`` is given."""
    root = results_dir(results) / tracker
    if key is None:
        return root
    return root / key.run_id / dataset_dir_name(key.dataset) / key.method / f"seed-{key.seed}"


def plots_dir(results: str | Path | None) -> Path:
    return results_dir(results) / PLOTS


def plot_path(out: Path, kind: str, run_id: str, dataset: str) -> Path:
    """Where ``harness plot`` writes one figure (``kind``: curves, quality-diversity)."""
    return Path(out) / f"{kind}-{check_name('run id', run_id)}-{dataset_dir_name(dataset)}.png"


def runs(results: str | Path | None, finished_only: bool = False) -> Iterator[tuple[RunKey, Path]]:
    """Every run under ``results`` (a results directory, one run id's directory or one
    run's directory), with its key. The key comes from where the run lies (a run id, a
    method and a seed are directory names); its config.json must agree."""
    root = results_dir(results)
    if (root / CONFIG).exists():
        candidates = [root / CONFIG]
    else:
        candidates = sorted(root.glob(f"*/*/seed-*/{CONFIG}")) + \
            sorted(root.glob(f"*/*/*/seed-*/{CONFIG}"))
    for path in candidates:
        if finished_only and not path.with_name(METRICS).exists():
            continue
        yield key_of(path.parent), path.parent


def key_of(run_dir: Path) -> RunKey:
    """A run directory's key: its run id, method and seed from the directory names, the
    data set from config.json; HarnessError naming the file when the two disagree."""
    run_dir = Path(run_dir).absolute()
    config = read_config(run_dir)
    expected = Path(dataset_dir_name(config["dataset"]), config["method"], f"seed-{config['seed']}")
    if len(run_dir.parents) < 3 or run_dir.relative_to(run_dir.parents[2]) != expected:
        raise HarnessError(f"{run_dir / CONFIG} describes {config['method']} on "
                           f"{config['dataset']}, seed {config['seed']}, which lies in "
                           f"<run-id>/{expected}, not in {run_dir}; move it there or delete it")
    run_id = run_dir.parents[2].name
    return RunKey(check_name("run id", run_id), config["dataset"],
                  check_name("method", config["method"]), config["seed"])


def other_seeds(run_dir: Path) -> list[Path]:
    """The finished runs beside ``run_dir`` that differ from it by their seed only (the
    other seeds of its table row)."""
    run_dir = Path(run_dir)
    mine = _row_of(read_config(run_dir))
    return [other for other in sorted(run_dir.parent.glob("seed-*"))
            if other.resolve() != run_dir.resolve() and (other / METRICS).exists()
            and _row_of(read_config(other)) == mine]


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

# The process's umask, read once (reading it means setting it): a results file gets the
# permissions any new file would, not mkstemp's owner-only ones, so a shared results
# directory stays readable to the group.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: a crash, a full disk or a refused
    permission leaves the previous file (the last good checkpoint) as it was. An OSError
    becomes a StorageError naming the path and the system's reason."""
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise StorageError(f"cannot write {path}: {_reason(error)}; the files written before "
                           f"are intact: free space or fix the permissions, then run the "
                           f"command again") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _cannot_read(path: Path | str, error: OSError) -> StorageError:
    return StorageError(f"cannot read {path}: {_reason(error)}")


def _reason(error: OSError) -> str:
    code = errno.errorcode.get(error.errno or 0, "")
    return f"{error.strerror or error} ({code})" if code else str(error.strerror or error)


def remove_temporaries(directory: Path) -> None:
    """Delete the temporary files of writes that a killed process never finished."""
    for leftover in Path(directory).glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    _write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode())


def write_record(path: Path, data: dict) -> None:
    """config.json, metrics.json, status.json or plan.json, with the format's version."""
    write_json(path, {**data, "version": VERSION})


def write_text(path: Path, text: str) -> None:
    _write_atomic(path, text.encode())


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _torch_bytes(obj: Any) -> bytes:
    # Serialised in memory first: torch's writer turns a full disk into an obscure
    # RuntimeError, a plain write gives the OSError that says what happened.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def write_torch(path: Path, obj: Any) -> None:
    _write_atomic(path, _torch_bytes(obj))


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


@contextlib.contextmanager
def run_lock(run_dir: Path, key: RunKey) -> Iterator[None]:
    """Hold ``run_dir``'s lock while its run runs; at once, with nothing written, a
    HarnessError naming the process that holds it (``in_use``). The system drops the lock
    when its holder ends, however it ends, so a killed run never leaves its directory locked."""
    with open(Path(run_dir) / RUN_LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise in_use(key, run_dir) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def in_use(key: RunKey, run_dir: Path) -> HarnessError:
    """The error for a run that another process is running: which, where, since when."""
    status = run_status(run_dir)
    holder = "another process"  # until it has written its status.json
    if status["status"] == "running":
        holder = f"process {status.get('pid')} on host {status.get('host')} " \
                 f"(since {status.get('updated')})"
    return HarnessError(f"{key} of run id {key.run_id} is being run by {holder}; wait for it "
                        f"to end or stop it, then run the command again")


# --- reading: every file checked, a bad one is one line naming it --------------------

def read_torch(path: Path, fix: str = "delete it and run the command again",
               data: bytes | None = None) -> Any:
    """A file written by ``write_torch``, read onto the CPU as tensors and plain values only
    (``weights_only``): a file from someone else cannot run code, and one that is not the
    harness's is a HarnessError naming it and ``fix``. Modules and optimisers move their
    tensors to their own device in ``load_state_dict``; random states must stay on the CPU
    (a torch.Generator's state is a CPU byte tensor whatever its device). ``data``: the
    file's bytes, already read."""
    try:
        return torch.load(path if data is None else io.BytesIO(data), map_location="cpu",
                          weights_only=True)
    except OSError as error:
        raise _cannot_read(path, error) from None
    except Exception as error:  # torch's own message may suggest unsafe loading: not shown
        raise HarnessError(f"{path} is damaged or was not written by the harness "
                           f"({type(error).__name__}); {fix}") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_bytes())
    except OSError as error:
        raise _cannot_read(path, error) from None
    except ValueError as error:
        raise HarnessError(f"{path} is not valid JSON ({error})") from None


@functools.cache
def _schema(kind: str) -> Any:
    from jsonschema import Draft202012Validator

    text = resources.files("harness").joinpath(f"schemas/{kind}.schema.json").read_text()
    return Draft202012Validator(json.loads(text))


def read_record(path: Path, kind: str) -> dict:
    """``path`` (a ``kind`` file: config, metrics, status or plan) checked against its
    schema (harness/schemas/), without its version field; HarnessError naming the file and
    what is wrong with it."""
    from jsonschema.exceptions import best_match

    data = read_json(path)
    error = best_match(_schema(kind).iter_errors(data))
    if error is not None:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise HarnessError(f"{path} is not a valid {kind}.json: {where.lstrip('.') or 'the file'}"
                           f": {_shortened(error.message)}")
    version = data.pop("version", 1)
    if version > VERSION:
        raise HarnessError(f"{path} was written by a newer harness ({kind}.json version "
                           f"{version}; this one reads up to {VERSION}): upgrade the harness")
    return data


def _shortened(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[:limit] + "..."


def read_config(run_dir: Path) -> dict:
    return read_record(Path(run_dir) / CONFIG, "config")


def read_metrics(run_dir: Path) -> dict:
    return read_record(Path(run_dir) / METRICS, "metrics")


def read_samples(run_dir: Path, count: int) -> list[str]:
    """The first ``count`` sequences of a run's samples.txt, as text."""
    path = Path(run_dir) / SAMPLES
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise _cannot_read(path, error) from None
    return text.strip("\n").split("\n\n")[:count]


def read_csv(path: Path):
    """A curve.csv or sweep.csv as a DataFrame; HarnessError naming a file pandas cannot read."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except OSError as error:
        raise _cannot_read(path, error) from None
    except (ValueError, pd.errors.ParserError) as error:
        raise HarnessError(f"{path} is not a valid CSV file ({str(error).splitlines()[0]})") from None


# --- shared files: made by one run, reused by others, checked by their digest --------

def digest_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def write_shared(path: Path, obj: Any) -> str:
    """Write a shared file (a pre-trained generator, a judge LM) with its sha256 beside it;
    the digest (written first, so a file is never without one) is returned."""
    data = _torch_bytes(obj)
    digest = hashlib.sha256(data).hexdigest()
    _write_atomic(digest_path(path), f"{digest}  {Path(path).name}\n".encode())
    _write_atomic(path, data)
    return digest


def read_shared(path: Path) -> tuple[Any, str]:
    """A file ``write_shared`` wrote and its sha256, after checking that digest: a shared
    file that was edited, damaged or has no digest is a HarnessError naming it (delete it
    and the next run makes it again)."""
    fix = f"delete {path} and run the command again to make it anew"
    try:
        data = Path(path).read_bytes()
        recorded = digest_path(path).read_text().split()[0] if digest_path(path).exists() else None
    except (OSError, IndexError) as error:
        raise HarnessError(f"cannot read {path} or its digest ({error}); {fix}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != recorded:
        raise HarnessError(f"{path} does not match its sha256 in {digest_path(path).name} "
                           f"({'none recorded' if recorded is None else 'edited or damaged'}); {fix}")
    return read_torch(path, fix, data), digest


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_status(run_dir: Path, status: str, **details) -> None:
    """running, failed (with the reason), interrupted or finished: status.json."""
    write_record(Path(run_dir) / STATUS, {"status": status, "updated": now(), **details})


DIED = "the process ended without saying why (killed?)"


def run_status(run_dir: Path) -> dict:
    """A run directory's state: finished when metrics.json exists (written last), else what
    status.json says, else unfinished. A run killed outright still says ``running``: when
    its process on this machine has ended, it is reported failed (``DIED``); a process on
    another machine cannot be checked from here."""
    run_dir = Path(run_dir)
    if (run_dir / METRICS).exists():
        return {"status": "finished"}
    if not (run_dir / STATUS).exists():
        return {"status": "unfinished"}
    status = read_record(run_dir / STATUS, "status")
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
