"""The shape of the code: the core names no built-in method or data set and its modules
import each other without a cycle; a generator is saved as tensors plus constructor
arguments and loaded without pickle; no library function reseeds the global random state."""
from __future__ import annotations

import ast
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import harness
from harness import generator as G
from harness import oracle, store
from harness.api import HarnessError
from harness.plugins import BUILTIN_PLUGINS, registry

CORE = Path(harness.__file__).parent


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module but its docstrings, with its line."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_no_string_literal_in_the_core_names_a_builtin_method_or_data_set():
    builtins = [p for p in BUILTIN_PLUGINS if not p.startswith("harness.")]
    names = {name for name, _ in registry().methods.items()
             if registry().plugin_of[f"method:{name}"] in builtins}
    names |= {name for name in registry().datasets
              if registry().plugin_of[f"dataset:{name}"] in builtins}
    assert {"mle", "seqgan", "real", "oracle", "poems"} <= names
    found = [f"{path.name}:{line}: {value!r}" for path in sorted(CORE.glob("*.py"))
             for line, value in _string_literals(path) if value in names]
    assert found == []


def test_the_core_imports_no_builtin_plugin():
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
        assert not {m for m in imported if m and m.split(".")[0] in
                    ("harness_plugins", "harness_datasets")}, path.name


def _core_imports(path: Path) -> set[str]:
    """The core modules a module imports when it is loaded (imports inside functions, made
    when they run, do not count)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module == "harness":
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {alias.name.split(".")[1] for alias in node.names
                      if alias.name.startswith("harness.")}
    return {name for name in names if (CORE / f"{name}.py").exists()} - {path.stem}


def test_the_core_modules_import_each_other_without_a_cycle():
    imports = {path.stem: _core_imports(path) for path in CORE.glob("*.py")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join(path[path.index(module):] + (module,))
        if module not in done:
            for imported in sorted(imports[module]):
                visit(imported, path + (module,))
            done.add(module)

    for module in sorted(imports):
        visit(module, ())


@pytest.mark.slow
def test_a_generator_is_saved_as_tensors_and_loaded_without_pickle(tmp_path):
    generator = G.LSTMGenerator(vocab_size=30, seq_len=6, emb_dim=8, hidden_dim=8)
    G.save_generator(tmp_path / "generator.pt", generator)
    saved = torch.load(tmp_path / "generator.pt", weights_only=True)  # no class inside
    assert saved["class"] == "harness.generator:LSTMGenerator" and saved["args"]["vocab_size"] == 30
    loaded = harness.load_generator(tmp_path)
    tokens = generator.sample(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.log_likelihood(tokens), generator.log_likelihood(tokens))
    assert torch.equal(loaded.sample(5, generator=torch.Generator().manual_seed(1)),
                       generator.sample(5, generator=torch.Generator().manual_seed(1)))


def test_a_generator_file_naming_foreign_code_is_refused(tmp_path):
    generator = G.LSTMGenerator(vocab_size=10, seq_len=4, emb_dim=4, hidden_dim=4)
    store.write_torch(tmp_path / "generator.pt", {
        "format": G.FORMAT, "class": "os:system", "args": {"command": "true"},
        "state_dict": generator.state_dict()})
    with pytest.raises(HarnessError, match="refusing to load it"):
        harness.load_generator(tmp_path)
    # A file holding a pickled object (the old format) is refused by weights_only.
    torch.save(generator, tmp_path / "generator.pt")
    with pytest.raises(Exception):
        harness.load_generator(tmp_path)


def test_a_random_oracle_leaves_the_global_random_state_alone():
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    first = oracle.random_oracle(vocab_size=20, seq_len=5, emb_dim=4, hidden_dim=4, seed=123)
    assert (torch.rand(3).tolist(), random.random(), np.random.rand()) == (
        expected[0].tolist(), expected[1], expected[2])
    second = oracle.random_oracle(vocab_size=20, seq_len=5, emb_dim=4, hidden_dim=4, seed=123)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


@pytest.mark.slow
def test_two_seeds_differ_and_one_seed_repeats_on_the_random_oracle_data_set(cli, tiny_dataset,
                                                                             tmp_path):
    def run(seed: int, where: str) -> tuple[dict, list[torch.Tensor]]:
        result = cli("-q", "run", "-m", "random", "-m", "mle", "-d", "tiny", "--seed", str(seed),
                     "--set", "epochs=1", "--results", str(tmp_path / where))
        assert result.exit_code == 0, result.output
        found = {method: next((tmp_path / where).glob(f"*/tiny/{method}/seed-{seed}"))
                 for method in ("random", "mle")}
        metrics = {m: store.read_json(d / "metrics.json")["nll_oracle"] for m, d in found.items()}
        return metrics, list(harness.load_generator(found["random"]).parameters())

    zero, again, one = run(0, "a"), run(0, "b"), run(1, "c")
    assert zero[0] == again[0] and all(torch.equal(a, b) for a, b in zip(zero[1], again[1]))
    # The untrained generator's weights come from the run's seed, not from a seed the data
    # set's loader set (the tiny data set draws its oracle from seed 123 as it loads).
    assert zero[0]["mle"] != one[0]["mle"]
    assert not any(torch.equal(a, b) for a, b in zip(zero[1], one[1]))
