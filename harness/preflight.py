"""The checks on a user's input that run before anything of a plan is written: the device
and memory, each method's settings, the results directory, every data set's files."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from harness import config, devices, loggers, memory, store
from harness.api import Dataset, HarnessError
from harness.plan import RunOptions, RunSpec
from harness.plugins import registry
from harness.runner import load_corpus

log = logging.getLogger("harness")


def preflight(specs: list[RunSpec], options: RunOptions, check_device: bool = True) -> None:
    """Every check that can fail on the user's input, before anything is written: the
    device and, where the runs will run here, that each generator fits in its memory; each
    method's settings; the results directory; every data set's files."""
    for spec in specs:
        options.run_dir(spec)  # every name it is made of checked (the run id above all)
    device = devices.resolve_device(options.device) if check_device else None
    devices.check_precision(options.precision, devices.device_kind(options.device))
    loggers.check(tuple(options.log_to))
    found = registry()
    configs = {}
    for method, dataset, profile in sorted({(s.method, s.dataset, s.profile) for s in specs}):
        configs[dataset, profile, method] = config.resolve(
            found.methods[method], profile, options.settings, found.dataset(dataset))
    check_writable(store.results_dir(options.results))
    vocab_sizes, warnings = {}, []
    for name, profile, seed in sorted({(s.dataset, s.profile, s.seed) for s in specs}):
        corpus = _try_loading(found.dataset(name), profile, seed, options)
        if corpus is not None:
            vocab_sizes[name, profile] = corpus.vocab_size, corpus.seq_len
            warnings += [corpus.warning] if corpus.warning not in warnings else []
    for warning in filter(None, warnings):  # once per command, not per process or seed
        log.warning(warning)
    if device is not None:
        for (dataset, profile, _), cfg in configs.items():
            if (dataset, profile) in vocab_sizes:
                memory.check_generator_fits(cfg, *vocab_sizes[dataset, profile], device)


def _try_loading(dataset: Dataset, profile: str, seed: int, options: RunOptions):
    """The corpus, or None from a broken data-set plugin (its runs fail and say why); a
    corpus too big for the memory is the settings' fault: a HarnessError."""
    try:
        return load_corpus(dataset, profile, seed, options.mirror, options.settings)
    except HarnessError:
        raise
    except Exception as error:
        reason = memory.out_of_memory(error)
        if reason is None:
            return None
        raise HarnessError(f"data set {dataset.name}: {reason} while loading it; lower its "
                           f"sizes (--set) or free memory") from None


def check_writable(path: Path) -> None:
    """HarnessError unless ``path`` is, or can be made, a writable directory (nothing is
    left behind by the check)."""
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise HarnessError(f"results directory {path}: {existing} is a file, not a directory; "
                           f"choose another --results")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise HarnessError(f"results directory {path} is not writable ({error.strerror}); "
                           f"fix its permissions or choose another --results") from None
