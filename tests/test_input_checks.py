"""Numbers a user gives (--set, --seed, --seeds, --sweep, --temperature) are finite and
within stated bounds, and sizes fit in memory: a refusal is one line with exit code 2
that names the bound, before anything is written. An allocation that fails during
training anyway fails its run as "out of memory"."""
from __future__ import annotations

import hashlib
import json
import os
import types
from pathlib import Path

import pytest
import torch

import harness
from harness import config, memory
from harness.api import Dataset, HarnessError
from harness.generator import LSTMGenerator
from harness.plugins import registry
from harness_datasets.text_file import TextFileConfig
from harness_tiny import ToyMethod


def results() -> Path:
    return Path(os.environ["HARNESS_RESULTS"])


def everything(root: Path) -> dict:
    """Every file (with its content hash and modification time) and directory under
    ``root``: an empty run directory counts as a change too."""
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            if p.is_file() else "directory" for p in root.rglob("*")}


def refused(cli, root: Path, *args: str) -> str:
    """Run the CLI; assert it refused with exit code 2, one line, no traceback and nothing
    written under ``root``; the line."""
    before = everything(root)
    result = cli(*args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert everything(root) == before
    return lines[0]


def refused_option(cli, root: Path, *args: str) -> str:
    """As ``refused``, for an option Click itself checks (its range): Click prints its
    usage line and help hint above the one error line."""
    before = everything(root)
    result = cli(*args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert everything(root) == before
    return errors[0]


@pytest.fixture
def lines_file(tmp_path) -> Path:
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line number {i} of the file\n" for i in range(300)))
    return path


# --- --set: finite numbers within their bounds ------------------------------------------

@pytest.mark.parametrize("method, setting, message", [
    ("mle", "lr=nan", "mle settings (lr=nan): lr must be a finite number, not nan"),
    ("mle", "lr=inf", "mle settings (lr=inf): lr must be a finite number, not inf"),
    ("mle", "hidden_dim=1000000000", "hidden_dim must be at most 1,000,000 (the bound on any "
                                     "integer setting), not 1,000,000,000"),
    ("mle", "emb_dim=1000000000", "emb_dim must be at most 1,000,000"),
    ("mle", "epochs=1000000000", "epochs must be at most 100,000 (a count of training work), "
                                 "not 1,000,000,000"),
    ("seqgan", "adv_batches=100001", "adv_batches must be at most 100,000 (a count of "
                                     "training work)"),
    ("vae", "kl_anneal_steps=200000", "kl_anneal_steps must be at most 100,000"),
])
def test_a_setting_out_of_bounds_is_refused(cli, tmp_path, tiny_dataset, method, setting,
                                            message):
    line = refused(cli, tmp_path, "run", "-m", method, "-d", "tiny", "--set", setting)
    assert message in line


def test_a_data_set_setting_out_of_bounds_is_refused(cli, tmp_path, lines_file):
    line = refused(cli, tmp_path, "run", "-m", "mle", "-d", f"text:{lines_file}",
                   "--set", "max_len=1000000000")
    assert "max_len must be at most 100,000 (the longest line read, in characters)" in line


# --- sizes against the memory -------------------------------------------------------------

@pytest.mark.skipif(memory.available_bytes(torch.device("cpu")) is None,
                    reason="no MemAvailable to compare with")
def test_a_generator_bigger_than_the_memory_is_refused(cli, tmp_path, tiny_dataset):
    # 4 x 10^12 LSTM weights: more than any machine has, so no machine trains it here.
    line = refused(cli, tmp_path, "run", "-m", "mle", "-d", "tiny",
                   "--set", "hidden_dim=1000000")
    weights = 40 * 32 + 4 * 10**6 * (32 + 10**6) + 8 * 10**6 + 10**6 * 40 + 40
    assert f"hidden_dim=1000000, emb_dim=32: the generator alone (over a vocabulary of 40) " \
           f"needs about {weights * 24 / 1e9:,.1f} GB, more than the" in line
    assert line.endswith("available; lower hidden_dim/emb_dim")


def test_the_embedding_counts_against_the_memory_too(cli, tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1_000_000)
    line = refused(cli, tmp_path, "run", "-m", "mle", "-d", "tiny", "--set", "emb_dim=1000")
    weights = 40 * 1000 + 4 * 32 * (1000 + 32) + 8 * 32 + 32 * 40 + 40
    assert f"emb_dim=1000: the generator alone (over a vocabulary of 40) needs about " \
           f"{weights * 24 / 1e6:.1f} MB, more than the 1.0 MB available" in line


def test_token_rows_bigger_than_the_memory_are_refused(cli, tmp_path, lines_file, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1_000_000)
    line = refused(cli, tmp_path, "run", "-m", "mle", "-d", f"text:{lines_file}",
                   "--set", "max_len=10000")
    assert "max_len=10,000 (300 sequences of 10,000 tokens) needs about 72.0 MB, more than " \
           "the 1.0 MB available; lower max_len" in line


def _dataset_plugin(register_plugin, name: str, load) -> None:
    module = types.ModuleType(f"harness_{name}")

    @harness.hookimpl
    def register_datasets(register):
        register(Dataset(name, load, "a data set for the tests"))

    module.register_datasets = register_datasets
    register_plugin(module, f"harness_{name}")


@pytest.mark.parametrize("failure, message", [
    ("allocation", "data set huge: out of memory: tried to allocate 1,125,899.9 GB while "
                   "loading it; lower its sizes (--set) or free memory"),
    ("MemoryError", "data set huge: out of memory while loading it"),
])
def test_running_out_of_memory_while_loading_is_a_user_error(cli, tmp_path, register_plugin,
                                                            failure, message):
    def load(profile, seed, mirror=None):
        if failure == "allocation":
            torch.empty(2**50, dtype=torch.uint8)  # a petabyte: no machine gives it
        raise MemoryError

    _dataset_plugin(register_plugin, "huge", load)
    line = refused(cli, tmp_path, "run", "-m", "mle", "-d", "huge")
    assert message in line


def test_running_out_of_memory_in_training_fails_the_run_and_says_so(cli, register_plugin,
                                                                     tiny_dataset):
    def train(ctx):
        torch.empty(2**50, dtype=torch.uint8)

    module = types.ModuleType("harness_greedy")
    method = ToyMethod("greedy", train)
    module.register_methods = harness.hookimpl(lambda register: register(method))
    register_plugin(module, "harness_greedy")
    result = cli("-q", "run", "-m", "greedy", "-d", "tiny")
    assert result.exit_code == 1, result.output
    assert "greedy on tiny, seed 0: out of memory: tried to allocate 1,125,899.9 GB" \
        in result.output
    assert "RuntimeError" not in result.output and "Traceback" not in result.output
    run_dir = next(results().glob("*/tiny/greedy/seed-0"))
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed"
    assert status["reason"] == "out of memory: tried to allocate 1,125,899.9 GB"


# --- seeds, temperatures --------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "'--seed': -1 is not in the range 0<=x<=2147483647"),
    (["--seed", str(2**31)], "'--seed': 2147483648 is not in the range 0<=x<=2147483647"),
    (["--seeds", "1001"], "'--seeds': 1001 is not in the range 1<=x<=1000"),
])
def test_a_seed_out_of_range_is_refused(cli, tmp_path, tiny_dataset, args, message):
    line = refused_option(cli, tmp_path, "run", "-m", "mle", "-d", "tiny", *args)
    assert message in line


def test_every_command_bounds_its_seed(cli, tmp_path, tiny_dataset):
    for args in (["samples", "-m", "mle", "-d", "tiny"], ["generate", str(tmp_path)],
                 ["interpolate", "-d", "tiny"]):
        line = refused_option(cli, tmp_path, *args, "--seed", "-1")
        assert "'--seed': -1 is not in the range 0<=x<=2147483647" in line


@pytest.mark.parametrize("sweep", ["nan", "inf", "0", "0.5,1000", "-1"])
def test_a_sweep_temperature_out_of_range_is_refused(cli, tmp_path, tiny_dataset, sweep):
    line = refused(cli, tmp_path, "run", "-m", "mle", "-d", "tiny", "--sweep", sweep)
    assert f"--sweep {sweep}: expected temperatures from 0.01 to 100 separated by commas" \
        in line


@pytest.mark.parametrize("temperature", ["nan", "inf", "0", "1000"])
def test_a_generate_temperature_out_of_range_is_refused(cli, tmp_path, temperature):
    line = refused(cli, tmp_path, "generate", str(tmp_path), "--temperature", temperature)
    assert "expected a temperature from 0.01 to 100" in line


# --- a text corpus that cannot be split ---------------------------------------------------

def test_identical_lines_are_counted_as_one_distinct_sequence(cli, tmp_path):
    path = tmp_path / "same.txt"
    path.write_text("the same line\n" * 300)
    line = refused(cli, tmp_path, "run", "-m", "mle", "-d", f"text:{path}")
    assert "1 distinct sequence in 300 line(s) cannot be split into a training and a " \
           "held-out part; give more distinct lines" in line


def test_a_test_share_that_empties_a_part_says_so(cli, tmp_path, lines_file):
    line = refused(cli, tmp_path, "run", "-m", "mle", "-d", f"text:{lines_file}",
                   "--set", "test_share=0")
    assert "test_share=0.0 leaves the held-out part empty" in line


# --- the rules themselves ---------------------------------------------------------------

@pytest.mark.parametrize("name, bound", [
    ("epochs", config.MAX_TRAINING_WORK), ("pretrain_epochs", config.MAX_TRAINING_WORK),
    ("adv_batches", config.MAX_TRAINING_WORK), ("kl_anneal_steps", config.MAX_TRAINING_WORK),
    ("disc_pretrain_rounds", config.MAX_TRAINING_WORK),
    ("pretrain_cycles", config.MAX_TRAINING_WORK),
    ("split_seed", config.MAX_SEED),
    ("hidden_dim", config.MAX_INTEGER), ("step_size", config.MAX_INTEGER),
    ("disc_negatives", config.MAX_INTEGER), ("steps_per_epoch", config.MAX_INTEGER),
])
def test_an_integer_is_allowed_up_to_its_bound(name, bound):
    assert config.upper_bound(name)[0] == bound
    config.check_number(name, bound)
    with pytest.raises(ValueError, match=f"{name} must be at most {bound:,} "):
        config.check_number(name, bound + 1)


def test_a_float_need_only_be_finite():
    config.check_number("grad_clip", 1e30)  # a rate or a clip sizes nothing
    for value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError, match=f"lr must be a finite number, not {value}"):
            config.check_number("lr", value)
    config.check_number("shuffle", True)  # not a number: other checks' business
    config.check_number("disc_size", "paper")


def _method(**profiles) -> ToyMethod:
    return ToyMethod("toy", fields=[("epochs", int, 8), ("width", int, 10**7)], profiles=profiles)


def test_profiles_are_held_to_the_bounds_and_a_plugin_s_own_defaults_are_not():
    with pytest.raises(HarnessError, match="toy settings \\(long profile\\): epochs must be "
                                           "at most 100,000"):
        config.resolve(_method(long={"epochs": 10**6}), "long", {})
    assert config.resolve(_method(), "default", {}).width == 10**7  # its author's choice


def test_temperatures_are_allowed_from_the_least_to_the_greatest():
    assert config.parse_temperatures("100,0.01,1") == (0.01, 1.0, 100.0)
    config.check_temperature(100.0)
    with pytest.raises(HarnessError, match="--temperature 0.001: expected a temperature from "
                                           "0.01 to 100"):
        config.check_temperature(0.001)
    for text in ("0.0099", "100.5", "nan", "1,inf"):
        with pytest.raises(HarnessError, match="from 0.01 to 100"):
            config.parse_temperatures(text)


def test_a_max_len_longer_than_any_line_is_refused():
    assert TextFileConfig(max_len=100_000).max_len == 100_000
    with pytest.raises(ValueError, match="max_len must be at most 100,000"):
        TextFileConfig(max_len=100_001)


def test_every_built_in_profile_resolves_and_its_generator_fits(tiny_dataset):
    found = registry()
    for method in found.methods.values():
        for profile in config.known_profiles([method]):
            for dataset in found.datasets.values():
                cfg = config.resolve(method, profile, {}, dataset)
                # 5,000 words: the built-in data sets' largest vocabulary
                memory.check_generator_fits(cfg, 5_000, 20, torch.device("cpu"))


@pytest.mark.parametrize("vocab, emb, hidden", [(40, 8, 8), (5000, 32, 32), (7, 3, 11)])
def test_the_generator_s_weights_are_counted_without_building_it(vocab, emb, hidden):
    built = LSTMGenerator(vocab, 5, emb, hidden)
    assert LSTMGenerator.parameter_count(vocab, emb, hidden) == \
        sum(p.numel() for p in built.parameters())


def test_an_allocation_failure_is_told_from_other_errors():
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                       "can't allocate memory: you tried to allocate 512000000000 bytes.")
    cuda = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 "
                                       "has a total capacity of 79.1 GiB")
    assert memory.out_of_memory(cpu) == "out of memory: tried to allocate 512.0 GB"
    assert memory.out_of_memory(cuda) == "out of memory: tried to allocate 2.00 GiB"
    assert memory.out_of_memory(MemoryError()) == "out of memory"
    assert memory.out_of_memory(RuntimeError("shapes do not match")) is None
    assert memory.out_of_memory(ValueError("can't allocate memory")) is None
