"""harness: train and compare sequence generators the way the SeqGAN paper did."""
import pluggy

hookimpl = pluggy.HookimplMarker("harness")

import os as _os  # noqa: E402

# cuBLAS reads this when CUDA starts: set it first, here and in every process that imports
# the harness (harness.devices says why).
_os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from harness.api import (Corpus, Dataset, Diverged, Generator, HarnessError, Method,  # noqa: E402
                         RunContext, check_finite)


def load_generator(run_dir, device="cpu", corpus=None):
    """The trained generator of a finished run (``generator.pt``), loaded as tensors only:
    it samples (``sample(n, temperature)``) and scores (``log_likelihood(tokens)``). Given
    the run's ``corpus``, its sizes must be the generator's."""
    from pathlib import Path

    from harness import generator, store

    path = Path(run_dir) / store.GENERATOR
    if not path.exists():
        raise HarnessError(f"{run_dir} kept no trained generator ({store.GENERATOR})")
    return generator.load_generator(path, device, corpus)


__all__ = ["hookimpl", "Corpus", "Dataset", "Diverged", "Generator", "HarnessError", "Method",
           "RunContext", "check_finite", "load_generator"]
__version__ = "0.3.0"  # 0.3: results files carry a schema version; shared files their sha256
