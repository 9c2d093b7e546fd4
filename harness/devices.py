"""Where a run computes and in what precision: the device, the numerical settings that
decide a result's last bits, and the description of both that every run records.

On CUDA a run computes in fp32 unless ``--precision`` opts into TF32 or bf16, with
cuDNN's deterministic kernels and a fixed cuBLAS workspace, so a run repeated on the same
GPU gives the same numbers; what was in force is recorded in config.json.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
import platform
import re
import subprocess

import numpy as np
import torch

from harness.api import HarnessError

PRECISIONS = ("fp32", "tf32", "bf16")
# cuBLAS reduces in a fixed order only with a fixed workspace; it reads this variable when
# CUDA starts, so it is set when the harness is imported (spawned workers import it too).
# (harness/__init__.py sets the same value first.)
CUBLAS_WORKSPACE = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# Rows a sampling or scoring loop takes per step on a GPU: all of an evaluation's 10,000
# samples at once. A GPU is bound by kernel launches and host syncs, not by cache, so the
# small chunks measured best on a CPU (128-256 rows) would make ~80x more sequential steps.
CUDA_ROWS = 1 << 14


def rows_per_step(device: torch.device, cpu_rows: int) -> int:
    """``cpu_rows`` (chosen by measurement for the CPU's caches) on the CPU; on a GPU,
    ``CUDA_ROWS``."""
    return cpu_rows if device.type == "cpu" else CUDA_ROWS


def row_spans(n: int, chunk: int, rows: int) -> list[slice]:
    """Rows 0..n in slices of ``rows`` rounded down to whole ``chunk``s, the last, shorter
    chunk a slice of its own. A matmul over fewer than about 8 rows takes another path in
    the BLAS, with other floats, so with a chunk of many rows (the harness's 128 and 256)
    each row keeps the floats it had when the work went ``chunk`` by ``chunk`` (tested at
    the paper's sizes)."""
    full, step = n - n % chunk, chunk * max(1, rows // chunk)
    edges = [*range(0, full, step), full, n]
    return [slice(start, end) for start, end in itertools.pairwise(edges) if end > start]


def set_cuda_environment() -> None:
    """Before CUDA starts: the cuBLAS workspace that makes its reductions repeatable."""
    os.environ.setdefault(*CUBLAS_WORKSPACE)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``, ``cpu`` or ``cuda`` as the device a run will use here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise HarnessError(f"--device {device}: choose auto, cpu or cuda")
    return torch.device(device)


def device_kind(device: str) -> str:
    """The kind of device (``cpu`` or ``cuda``) a ``--device`` value means here, without
    starting CUDA; a device that cannot be had is refused later, by ``resolve_device``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device).partition(":")[0]


def check_precision(precision: str, kind: str) -> None:
    if precision not in PRECISIONS:
        raise HarnessError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and kind != "cuda":
        raise HarnessError(f"--precision {precision} applies to CUDA only; the CPU computes "
                           f"in fp32: drop --precision or use --device cuda")


def configure(device: torch.device, precision: str = "fp32") -> None:
    """Set the numerical flags a run on ``device`` computes under (CUDA: TF32 only when
    asked for, deterministic cuDNN and algorithms, no autotuning)."""
    check_precision(precision, device.type)
    if device.type != "cuda":
        return
    set_cuda_environment()
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    # warn_only: an op with no deterministic CUDA kernel warns (in run.log) instead of failing.
    torch.use_deterministic_algorithms(True, warn_only=True)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast around a run's training and evaluation, when asked for."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe(device: torch.device) -> dict:
    """What decides the last bits of a result computed on ``device``: the CPU and the
    kernels torch dispatches to on it, the math libraries' versions, the thread count, and
    on CUDA the GPU, driver, CUDA and cuDNN versions and the flags in force."""
    description = {**_cpu(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        description.update(_cuda(device))
    return description


@functools.cache
def _cpu() -> dict:
    config = torch.__config__.show()
    return {"cpu_model": _cpu_model(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl": _version_in(config, r"Math Kernel Library Version ([^\n]+?) for"),
            "onednn": _version_in(config, r"MKL-DNN v([\w.]+)"),
            "numpy_blas": _numpy_blas()}


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version_in(text: str, pattern: str) -> str | None:
    found = re.search(pattern, text)
    return found.group(1).strip() if found else None


def _numpy_blas() -> str | None:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (KeyError, TypeError, ValueError):
        return None
    return f"{blas.get('name')} {blas.get('version')}"


def _cuda(device: torch.device) -> dict:
    index = device.index if device.index is not None else torch.cuda.current_device()
    properties = torch.cuda.get_device_properties(index)
    return {"gpu": properties.name, "gpu_capability": f"{properties.major}.{properties.minor}",
            "cuda_driver": _driver_version(), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cublas_workspace_config": os.environ.get(CUBLAS_WORKSPACE[0])}


def _driver_version() -> str | None:
    try:
        shown = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return shown.stdout.strip().splitlines()[0] if shown.returncode == 0 and shown.stdout.strip() else None

