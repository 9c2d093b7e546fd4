"""Shared fixtures: no plugin autoload, a private results and cache directory, tiny data."""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

import harness_tiny
from harness import plugins

TESTS = Path(__file__).resolve().parent

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
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def mirror() -> Path:
    """The mirrored corpora (../shared/corpora); tests needing them skip without it."""
    if not (MIRROR / "seqgan_oracle" / "target_params.npz").exists():
        pytest.skip(f"no corpus mirror at {MIRROR}")
    return MIRROR


@pytest.fixture
def register_plugin():
    """Register plugin modules (as a third-party package would be) and remove them after."""
    registered = []

    def register(module: types.ModuleType, name: str | None = None) -> None:
        name = name or module.__name__
        plugins.plugin_manager().register(module, name)
        plugins.registry.cache_clear()
        registered.append(name)

    yield register
    for name in registered:
        plugins.plugin_manager().unregister(name=name)
    plugins.registry.cache_clear()


@pytest.fixture
def tiny_dataset(register_plugin):
    register_plugin(harness_tiny)
    return "tiny"


@pytest.fixture
def tiny_everywhere(monkeypatch) -> dict:
    """The tiny data set in this process and in every process it starts: the environment."""
    monkeypatch.setenv(plugins.PLUGINS_ENV, "harness_tiny")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    plugins.reset()
    return dict(os.environ)


def docs_plugin_example() -> types.ModuleType:
    """The plugin example from docs/plugins.md, loaded as a module: the docs stay true."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    code = text.split("<!-- plugin-example -->")[1].split("```python")[1].split("```")[0]
    module = types.ModuleType("harness_unigram")
    sys.modules["harness_unigram"] = module  # dataclasses look their module up
    exec(compile(code, "docs/plugins.md:harness_unigram", "exec"), module.__dict__)
    return module


@pytest.fixture
def unigram_plugin(register_plugin):
    module = docs_plugin_example()
    register_plugin(module, "harness_unigram")
    return "unigram"


@pytest.fixture
def cli():
    """Invoke the harness CLI in-process; returns Click's Result."""
    from click.testing import CliRunner

    from harness.cli import main

    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)
