"""The results store: atomic writes (a file is either complete or absent, never
half-written) and each run's status."""
from __future__ import annotations

import csv
import datetime
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


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


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_status(run_dir: Path, status: str, **details) -> None:
    """running, failed (with the reason), interrupted or finished: status.json."""
    write_json(Path(run_dir) / "status.json", {"status": status, "updated": now(), **details})


def run_status(run_dir: Path) -> dict:
    """A run directory's state: finished when metrics.json exists (written last), else what
    status.json says (a run killed outright still says ``running``), else unfinished."""
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").exists():
        return {"status": "finished"}
    try:
        status = read_json(run_dir / "status.json")
    except (OSError, ValueError):
        return {"status": "unfinished"}
    # "finished" without metrics.json: the metrics were deleted, the run is to be redone.
    return {"status": "unfinished"} if status.get("status") == "finished" else status
