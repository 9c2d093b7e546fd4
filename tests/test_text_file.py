"""Your own corpus: `-d text:PATH` trains on a plain text file, `harness data inspect`
shows what the harness makes of it, and a bad file is one clear line with exit code 2."""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

import harness

WORDS = "the a cat dog sat ran on under mat log big small red blue".split()


@pytest.fixture
def lines_file(tmp_path) -> Path:
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(300)]
    path = tmp_path / "my corpus.txt"
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return path


def results() -> Path:
    return Path(os.environ["HARNESS_RESULTS"])


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


@pytest.mark.slow
def test_a_text_file_gives_a_trained_generator_its_row_and_samples(cli, lines_file):
    result = cli("-q", "run", "-m", "mle", "-d", f"text:{lines_file}", "--set", "epochs=2",
                 "--set", "max_len=8", "--set", "vocab_size=12")
    assert result.exit_code == 0, result.output
    assert f"### text:{lines_file}" in result.output and "| mle" in result.output
    run_dir = next(results().glob("*/*my-corpus.txt*/mle/seed-0"))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == f"text:{lines_file}"
    assert config["dataset_config"] == {"tokens": "words", "vocab_size": 12, "max_len": 8,
                                        "test_share": 0.1, "split_seed": 0}
    assert config["corpus"]["sha256"] == hashlib.sha256(lines_file.read_bytes()).hexdigest()
    assert config["corpus"]["n_lines"] == 300 and config["corpus"]["n_test"] >= 30
    samples = (run_dir / "samples.txt").read_text().split("\n\n")
    assert all(set(s.split()) <= set(WORDS) | {"<unk>"} for s in samples if s.strip())
    generator = harness.load_generator(run_dir)
    drawn = generator.sample(5)
    assert drawn.shape == (5, 8) and generator.log_likelihood(drawn).shape == (5,)
    shown = cli("samples", "-m", "mle", "-d", f"text:{lines_file}", "-n", "2")
    # The run's first two samples (one may be empty: a sequence that ends at once).
    assert shown.exit_code == 0 and shown.output == "\n\n".join(samples[:2]) + "\n"


def test_data_inspect_tells_what_the_harness_makes_of_a_file(cli, lines_file):
    shown = cli("data", "inspect", str(lines_file), "--set", "tokens=chars", "--set", "max_len=30")
    assert shown.exit_code == 0, shown.output
    assert "sequences: 300" in shown.output and "tokens: chars" in shown.output
    assert "unknown share:" in shown.output and "lengths (tokens before <eos>):" in shown.output
    assert cli("data", "inspect", str(lines_file), "--set", "nope=1").exit_code == 2


@pytest.mark.parametrize("content, message", [
    (b"", "no sequences (the file is empty or blank)"),
    (b"\n  \n", "no sequences (the file is empty or blank)"),
    (b"good line\nbad \xff\xfe byte\n", "line 2: not UTF-8"),
    (b"short\n" + b"x" * 100_001 + b"\n", "line 2: 100,001 characters"),
])
def test_a_bad_file_is_one_line_exit_2_and_nothing_written(cli, tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    before = snapshot(results())
    result = cli("run", "-m", "mle", "-d", f"text:{path}")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert snapshot(results()) == before
    assert cli("run", "-m", "mle", "-d", f"text:{tmp_path / 'missing.txt'}").exit_code == 2


def test_a_bad_setting_of_the_data_set_is_a_user_error(cli, lines_file):
    result = cli("run", "-m", "mle", "-d", f"text:{lines_file}", "--set", "tokens=bytes")
    assert result.exit_code == 2 and "tokens must be one of words, chars" in result.output


@pytest.mark.slow
def test_a_relative_path_names_the_same_runs_from_its_directory(cli, lines_file, monkeypatch):
    monkeypatch.chdir(lines_file.parent)
    result = cli("-q", "run", "-m", "mle", "-d", f"text:{lines_file.name}", "--set", "epochs=1",
                 "--set", "max_len=8")
    assert result.exit_code == 0, result.output
    assert "three of its samples:" in result.output  # one run: where it is, a few samples
    shown = cli("samples", "-m", "mle", "-d", f"text:{lines_file.name}", "-n", "1")
    assert shown.exit_code == 0, shown.output
