"""Data files: from a local mirror, the download cache, or their public URL, sha256-checked.

A mirror is a directory laid out as the downloads are (``seqgan_oracle/``,
``chinese_poems/``, ``obama_speeches/``; ``--data-mirror`` or ``HARNESS_DATA_MIRROR``).
Downloads go to a per-user cache (``HARNESS_CACHE`` overrides it); ``HARNESS_OFFLINE=1``
switches downloads off. Every file is verified against its sha256 before use, or against
its git blob id where no sha256 is known.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import platformdirs

from harness.api import HarnessError

MIRROR_ENV = "HARNESS_DATA_MIRROR"
CACHE_ENV = "HARNESS_CACHE"
OFFLINE_ENV = "HARNESS_OFFLINE"


class DownloadError(HarnessError):
    """A file in no mirror or cache that could not be downloaded (or downloads are off)."""


@dataclass(frozen=True)
class DataFile:
    """One file of a corpus: where it sits in a mirror, its checksum, where to get it."""

    path: str                    # relative to the mirror / cache root
    sha256: str                  # "" when unknown: git_blob_sha1 is checked instead
    url: str | None = None       # public download URL; None when it must be derived
    derive: Callable[[Path, str | Path | None], None] | None = None  # derive(dest, mirror)
    git_blob_sha1: str = ""      # git's blob id (`git hash-object`), for files without sha256


def mirror_dir(mirror: str | Path | None = None) -> Path | None:
    mirror = mirror or os.environ.get(MIRROR_ENV)
    return Path(mirror).expanduser() if mirror else None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("harness"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> Path:
    actual = sha256_of(path)
    if actual != expected:
        raise HarnessError(
            f"{path}: sha256 {actual} does not match the expected {expected}; "
            f"delete the file to download it again, or point --data-mirror / {MIRROR_ENV} "
            f"at a good copy")
    return path


def git_blob_sha1(data: bytes) -> str:
    """Git's blob id of ``data``, as ``git hash-object`` prints it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify_file(path: Path, file: DataFile) -> Path:
    """``verify`` by sha256, or by git blob id when ``file`` has no sha256."""
    if file.sha256 or not file.git_blob_sha1:
        return verify(path, file.sha256)
    actual = git_blob_sha1(Path(path).read_bytes())
    if actual != file.git_blob_sha1:
        raise HarnessError(
            f"{path}: git blob id {actual} does not match the expected {file.git_blob_sha1}; "
            f"delete the file to download it again, or point --data-mirror / {MIRROR_ENV} "
            f"at a good copy")
    return path


def fetch(file: DataFile, mirror: str | Path | None = None) -> Path:
    """The verified local path of ``file``: mirror first, then cache, then download."""
    root = mirror_dir(mirror)
    if root is not None and (root / file.path).exists():
        return verify_file(root / file.path, file)
    cached = cache_dir() / file.path
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        if file.derive is not None:
            file.derive(cached, mirror)
        elif file.url is not None:
            _download(file.url, cached, root and root / file.path)
        else:
            raise DownloadError(f"{file.path} is in no data mirror and has no download URL; "
                                f"point --data-mirror / {MIRROR_ENV} at a copy")
    return verify_file(cached, file)


def _download(url: str, dest: Path, in_mirror: Path | None = None) -> None:
    """``url`` to ``dest``; a DownloadError says what to do (``in_mirror``: where the
    data mirror in use lacks the file)."""
    from torch.hub import download_url_to_file  # writes to a temporary file, then moves it

    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise DownloadError(f"{dest.name} is in no data mirror or cache and {OFFLINE_ENV} is "
                            f"set, so {url} is not downloaded")
    try:
        download_url_to_file(url, str(dest), progress=False)
    except Exception as error:  # network errors come in many types
        hint = (f"the data mirror has no {in_mirror}" if in_mirror is not None else
                f"without internet, point --data-mirror / {MIRROR_ENV} at a local copy")
        raise DownloadError(f"could not download {url} ({error}); {hint}") from error
