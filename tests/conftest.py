"""Shared fixtures: no plugin autoload, a private results and cache directory, tiny data."""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

import harness
from harness import oracle, plugins
from harness.api import Dataset

MIRROR = Path(os.environ.get("HARNESS_DATA_MIRROR") or
              Path(__file__).resolve().parents[2] / "shared" / "corpora")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny tensors: one thread avoids spinning thread pools (10x faster on a
    busy 2-core machine) and keeps results independent of the core count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test: only the built-in plugins, results and downloads in its own tmp dir."""
    monkeypatch.setenv(plugins.NO_AUTOLOAD_ENV, "1")
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HARNESS_DATA_MIRROR", raising=False)
    plugins.plugin_manager.cache_clear()
    plugins.load_errors.clear()
    yield
    plugins.plugin_manager.cache_clear()
    plugins.load_errors.clear()


@pytest.fixture
def mirror() -> Path:
    """The mirrored corpora (../shared/corpora); tests needing them skip without it."""
    if not (MIRROR / "seqgan_oracle" / "target_params.npz").exists():
        pytest.skip(f"no corpus mirror at {MIRROR}")
    return MIRROR


def tiny_oracle_corpus(profile: str, seed: int, mirror=None):
    """A 40-token, length-8 random oracle with a few hundred sequences: trains in a second."""
    tiny = oracle.random_oracle(vocab_size=40, seq_len=8, emb_dim=8, hidden_dim=8, seed=123)
    return oracle.oracle_corpus(tiny, "tiny", seed, n_train=256, n_test=128, eval_samples=256)


@pytest.fixture
def register_plugin():
    """Register plugin modules (as a third-party package would be) and remove them after."""
    registered = []

    def register(module: types.ModuleType, name: str | None = None) -> None:
        name = name or module.__name__
        plugins.plugin_manager().register(module, name)
        registered.append(name)

    yield register
    for name in registered:
        plugins.plugin_manager().unregister(name=name)


@pytest.fixture
def tiny_dataset(register_plugin):
    module = types.ModuleType("tiny_data_plugin")

    @harness.hookimpl
    def register_datasets(register):
        register(Dataset("tiny", tiny_oracle_corpus, "a tiny random oracle for tests"))

    module.register_datasets = register_datasets
    register_plugin(module)
    return "tiny"


def readme_plugin_example() -> types.ModuleType:
    """The plugin example from README.md, loaded as a module: the README stays true."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = text.split("<!-- plugin-example -->")[1].split("```python")[1].split("```")[0]
    module = types.ModuleType("harness_unigram")
    sys.modules["harness_unigram"] = module  # dataclasses look their module up
    exec(compile(code, "README.md:harness_unigram", "exec"), module.__dict__)
    return module


@pytest.fixture
def unigram_plugin(register_plugin):
    module = readme_plugin_example()
    register_plugin(module, "harness_unigram")
    return "unigram"


@pytest.fixture
def cli():
    """Invoke the harness CLI in-process; returns Click's Result."""
    from click.testing import CliRunner

    from harness.cli import main

    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)
