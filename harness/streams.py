"""A run's random streams: every seed a run uses is derived here from the run's seed and
the stream's name, the global random state's included, so seeding has one owner."""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

SCHEME = "sha256(seed/name), 63 bits"  # in the keys of shared files drawn from these streams
GLOBAL_STREAM = "python, numpy and torch global state"


def stream_seed(seed: int, name: str) -> int:
    """The seed of the random stream ``name`` in a run seeded ``seed``: a stable hash of
    both (SHA-256, 63 bits), so no two streams share a seed by accident, and adding or
    renaming one stream moves no other."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def stream(seed: int, name: str, device: torch.device | str | None = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (default: the CPU) for the stream ``name``."""
    return torch.Generator(device=device or "cpu").manual_seed(stream_seed(seed, name))


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global random state for a run seeded ``seed``."""
    derived = stream_seed(seed, GLOBAL_STREAM)
    random.seed(derived)
    np.random.seed(derived % 2**32)  # numpy's legacy seeds are 32-bit
    torch.manual_seed(derived)
