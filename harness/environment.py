"""What a run is made in: the environment its config.json records (versions, machine,
source commit, device)."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

import harness
from harness import devices


def environment(device: torch.device = torch.device("cpu")) -> dict:
    """What produced a result: versions, machine, the source commit, and what decides the
    last bits on ``device`` (``devices.describe``)."""
    return {**_versions(), **devices.describe(device)}


@functools.cache
def _versions() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"harness": harness.__version__, "git_commit": commit, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
