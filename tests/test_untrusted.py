"""A results directory from someone else: no path, cache or file in it can fake a
verification, write outside it or silently change new results. Every hostile file here is
made by the test; each must give one line naming it, exit code 2, no traceback."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import shutil
from pathlib import Path

import pytest
import torch

from harness import store
from harness.generator import FORMAT, LSTMGenerator, load_generator
from harness.errors import HarnessError, StorageError

TINY = ("--set", "epochs=2", "--set", "eval_every=1", "--set", "batch_size=32")
TIMINGS = ("train_seconds", "eval_seconds", "judge_lm_seconds")


def results() -> Path:
    return Path(os.environ["HARNESS_RESULTS"])


def files_under(root: Path) -> dict:
    """Every file under ``root`` with its content hash and modification time."""
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def one_line_error(result, *words: str) -> str:
    """The result is a user error: exit 2, one line, no traceback, naming ``words``."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def finished(cli, method: str = "mle", run_id: str = "mine", *extra: str) -> Path:
    result = cli("-q", "run", "-m", method, "-d", "tiny", "--run-id", run_id, *TINY, *extra)
    assert result.exit_code == 0, result.output
    return results() / run_id / "tiny" / method / "seed-0"


def metrics_of(run_dir: Path) -> dict:
    return {k: v for k, v in store.read_metrics(run_dir).items() if k not in TIMINGS}


# --- names and paths ------------------------------------------------------------------

@pytest.mark.parametrize("run_id", ["../../escape", "/tmp/elsewhere", "a/b", "x" * 300, "..",
                                    "_shared", "plots", "-rf"])
def test_a_run_id_that_is_no_plain_name_is_refused_before_anything_is_written(
        cli, tiny_dataset, tmp_path, run_id):
    before = files_under(tmp_path)
    result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--run-id", run_id, *TINY)
    one_line_error(result, "run id", "not a valid name")
    assert files_under(tmp_path) == before


def test_names_are_checked_where_the_store_makes_paths():
    for name in ("default", "reference-cpu-2026-12-02", "a.b_c-1"):
        assert store.check_name("run id", name) == name
    for bad in ("../x", "x/y", "a" * 101, "_shared", ".hidden", 7, None):
        with pytest.raises(HarnessError):
            store.check_name("run id", bad)
    with pytest.raises(HarnessError):
        store.run_dir("r", store.RunKey("default", "tiny", "../../mle", 0))
    with pytest.raises(HarnessError):
        store.run_dir("r", store.RunKey("default", "tiny", "mle", -1))


@pytest.mark.slow
def test_where_a_run_lies_decides_its_key_not_what_its_config_says(cli, tiny_dataset, tmp_path):
    run_dir = finished(cli)
    config = json.loads((run_dir / "config.json").read_text())
    config["run_id"] = "x/../../../../.."
    (run_dir / "config.json").write_text(json.dumps(config))
    out = tmp_path / "figures"
    assert cli("plot", "--out", str(out)).exit_code == 0
    written = [p for p in tmp_path.rglob("*.png")]
    assert written and all(p.parent == out for p in written)
    assert {p.name for p in written} == {"curves-mine-tiny.png", "quality-diversity-mine-tiny.png"}
    table = cli("table")
    assert table.exit_code == 0 and "tiny (mine;" in table.output
    # A config.json that names another run than the directory it lies in is refused.
    config["method"] = "seqgan"
    (run_dir / "config.json").write_text(json.dumps(config))
    one_line_error(cli("table"), str(run_dir / "config.json"), "mle")


@pytest.mark.slow
def test_verify_re_runs_in_its_own_scratch_directory_whatever_the_run_id_says(
        cli, tiny_dataset, tmp_path):
    run_dir = finished(cli)
    elsewhere = tmp_path / "elsewhere"
    config = json.loads((run_dir / "config.json").read_text())
    config["run_id"] = str(elsewhere)
    (run_dir / "config.json").write_text(json.dumps(config))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.update(bleu3=0.99, nll_test=0.01)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    before = files_under(results())
    result = cli("verify", str(run_dir))
    assert result.exit_code == 1 and result.output.splitlines()[-1].startswith("differs")
    outside = {line.split("|")[1].strip() for line in result.output.splitlines()
               if "| outside" in line}
    assert {"bleu3", "nll_test"} <= outside
    assert not elsewhere.exists() and files_under(results()) == before


# --- what runs reuse: shared files and checkpoints ------------------------------------

def _shared_files(pattern: str) -> list[Path]:
    return sorted((results() / store.SHARED).rglob(pattern))


@pytest.mark.slow
def test_a_tampered_mle_snapshot_is_refused_by_name_and_the_digest_is_recorded(
        cli, tiny_dataset):
    first = finished(cli, "mle", "first")
    snapshot = _shared_files("mle-*-epoch-2.pt")[0]
    recorded = store.read_config(first)["shared_files"]
    assert recorded[snapshot.name] == hashlib.sha256(snapshot.read_bytes()).hexdigest()
    again = finished(cli, "mle", "again")  # reuses the snapshot, records its digest
    assert store.read_config(again)["shared_files"] == {snapshot.name: recorded[snapshot.name]}
    assert metrics_of(again) == metrics_of(first)

    saved = torch.load(snapshot, weights_only=True)
    saved["generator"]["output.bias"] += 10.0
    torch.save(saved, snapshot)
    result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--run-id", "third", *TINY)
    one_line_error(result, str(snapshot), "sha256", "delete")
    assert not (results() / "third" / "tiny" / "mle" / "seed-0" / "metrics.json").exists()
    # Deleting it, as the message says, makes it anew and the run finishes as before.
    snapshot.unlink()
    result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--run-id", "third", *TINY)
    assert result.exit_code == 0, result.output
    assert metrics_of(results() / "third" / "tiny" / "mle" / "seed-0") == metrics_of(first)


def test_a_shared_file_without_its_digest_is_refused(tmp_path):
    path = tmp_path / "lm-0123.pt"
    digest = store.write_shared(path, {"lm": {"w": torch.ones(2)}})
    obj, read = store.read_shared(path)
    assert read == digest and torch.equal(obj["lm"]["w"], torch.ones(2))
    store.digest_path(path).unlink()
    with pytest.raises(HarnessError, match="none recorded"):
        store.read_shared(path)


@pytest.mark.slow
def test_a_tampered_judge_lm_is_refused_by_name(cli, tmp_path):
    corpus, rng = tmp_path / "lines.txt", random.Random(0)
    words = "the a cat dog sat ran on under mat log big small".split()
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 9)))
                                for _ in range(300)) + "\n")
    args = ("-q", "run", "-m", "mle", "-d", f"text:{corpus}", "--set", "epochs=1",
            "--set", "batch_size=32")
    assert cli(*args, "--run-id", "one").exit_code == 0
    judge = _shared_files("lm-*.pt")[0]
    saved = torch.load(judge, weights_only=True)
    saved["lm"]["output.bias"] -= 5.0
    torch.save(saved, judge)
    one_line_error(cli(*args, "--run-id", "two"), str(judge), "sha256")


def _checkpointed_run(cli) -> Path:
    """A finished tiny MLE run made unfinished again: its checkpoint is what resumes (no
    shared snapshot to reuse instead)."""
    run_dir = finished(cli)
    (run_dir / "metrics.json").unlink()
    shutil.rmtree(results() / store.SHARED)
    return run_dir


@pytest.mark.parametrize("damage, words", [
    (lambda saved: saved["state"].update(epoch=-3), ("epoch is -3", "0 to 2")),
    (lambda saved: saved["state"].update(epoch=7), ("epoch is 7",)),
    (lambda saved: saved["state"].update(epoch="1"), ("epoch is '1'",)),
    (lambda saved: saved["state"].pop("phase"), ("no phase name",)),
    (lambda saved: saved.update(curve="rows"), ("learning curve",)),
    (lambda saved: saved["state"]["generator"].pop("output.bias"), ("does not fit",)),
    (lambda saved: saved["state"]["rng"].update(torch=torch.zeros(3)), ("does not fit",)),
])
@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_the_run_is_refused_by_name(cli, tiny_dataset, damage,
                                                                   words):
    run_dir = _checkpointed_run(cli)
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    damage(saved)
    torch.save(saved, run_dir / "checkpoint.pt")
    result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--run-id", "mine", *TINY)
    one_line_error(result, str(run_dir / "checkpoint.pt"), "delete it", *words)
    assert not (run_dir / "metrics.json").exists()


class Payload:
    """Pickled, it would create a file when loaded: it must never be loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_damaged_or_hostile_checkpoint_is_refused_and_runs_nothing(cli, tiny_dataset,
                                                                     tmp_path):
    run_dir = _checkpointed_run(cli)
    marker = tmp_path / "payload-ran"
    for content in (b"not a checkpoint", pickle.dumps({"state": Payload(marker)}, protocol=2)):
        (run_dir / "checkpoint.pt").write_bytes(content)
        result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--run-id", "mine", *TINY)
        line = one_line_error(result, str(run_dir / "checkpoint.pt"), "damaged")
        assert "weights_only" not in line and not marker.exists()
    torch.save({"state": Payload(marker), "curve": []}, run_dir / "checkpoint.pt")
    one_line_error(cli("-q", "run", "-m", "mle", "-d", "tiny", "--run-id", "mine", *TINY),
                   "checkpoint.pt")
    assert not marker.exists()


# --- saved generators ---------------------------------------------------------------

def _save(path: Path, cls: str, args: dict, state: dict) -> None:
    store.write_torch(path, {"format": FORMAT, "class": cls, "args": args, "state_dict": state})


def test_only_registered_generator_classes_load_with_checked_arguments(tmp_path):
    generator = LSTMGenerator(vocab_size=10, seq_len=4, emb_dim=4, hidden_dim=4)
    args, state, path = dict(generator.constructor_args), generator.state_dict(), tmp_path / "g.pt"
    _save(path, "harness.generator:LSTMGenerator", args, state)
    assert isinstance(load_generator(path), LSTMGenerator)
    refused = [
        ("harness.generator:nn.Linear", {"in_features": 4, "out_features": 4}, {}, "registers"),
        ("torch.nn:Linear", {"in_features": 4, "out_features": 4}, {}, "registers"),
        ("os:system", {"command": "true"}, {}, "registers"),
        ("harness.generator:LSTMGenerator", {**args, "vocab_size": 10**9}, state, "shapes"),
        ("harness.generator:LSTMGenerator", {**args, "vocab_size": "10"}, state, "type"),
        ("harness.generator:LSTMGenerator", {**args, "hidden_dim": 4.5}, state, "type"),
        ("harness.generator:LSTMGenerator", {**args, "command": "true"}, state, "no argument"),
        ("harness.generator:LSTMGenerator", args, {**state, "extra": torch.ones(1)}, "shapes"),
    ]
    for cls, bad_args, bad_state, words in refused:
        _save(path, cls, bad_args, bad_state)
        with pytest.raises(HarnessError, match=words):
            load_generator(path)


def test_harness_generate_refuses_a_hostile_generator_in_one_line(cli, tiny_dataset, tmp_path):
    run_dir = finished(cli)
    saved = torch.load(run_dir / "generator.pt", weights_only=True)
    _save(run_dir / "generator.pt", saved["class"], {**saved["args"], "vocab_size": 10**9},
          saved["state_dict"])
    one_line_error(cli("generate", str(run_dir)), "vocab_size=1000000000", "tiny")
    marker = tmp_path / "payload-ran"
    (run_dir / "generator.pt").write_bytes(pickle.dumps(Payload(marker), protocol=2))
    line = one_line_error(cli("generate", str(run_dir)), "generator.pt")
    assert "weights_only" not in line and not marker.exists()


# --- every file a reader reads is checked ------------------------------------------------

@pytest.mark.parametrize("name, content, words", [
    ("metrics.json", "{not json", ("not valid JSON",)),
    ("metrics.json", json.dumps({"bleu3": "high"}), ("bleu3", "not of type")),
    ("metrics.json", json.dumps([1, 2]), ("metrics.json",)),
    ("metrics.json", json.dumps({"bleu3": 0.5, "version": 99}), ("newer harness",)),
    ("config.json", json.dumps({"method": "mle"}), ("config.json", "required")),
    ("config.json", "", ("not valid JSON",)),
])
@pytest.mark.slow
def test_a_malformed_file_is_one_line_naming_it_in_every_reader(cli, tiny_dataset, name,
                                                               content, words):
    run_dir = finished(cli)
    (run_dir / name).write_text(content)
    readers = [("table",), ("plot",), ("verify", str(run_dir))]
    if name == "config.json":  # these read no metrics
        readers += [("generate", str(run_dir)), ("samples", "-m", "mle", "-d", "tiny")]
    for args in readers:
        one_line_error(cli(*args), str(run_dir / name), *words)


@pytest.mark.parametrize("edit, words", [
    (lambda plan: plan.update(runs="all"), ("runs", "not of type")),
    (lambda plan: plan["runs"][0].update(seed=-1), ("seed",)),
    (lambda plan: plan["runs"][0].update(method="../../x"), ("method", "not a valid name")),
    (lambda plan: plan.pop("executor"), ("required",)),
])
def test_a_malformed_plan_is_one_line_naming_it(cli, tiny_dataset, edit, words):
    run_dir = finished(cli)
    path = run_dir.parents[2] / "plan.json"
    plan = json.loads(path.read_text())
    edit(plan)
    path.write_text(json.dumps(plan))
    one_line_error(cli("status"), *words)


def test_a_malformed_status_is_one_line_naming_it(cli, tiny_dataset):
    run_dir = _checkpointed_run(cli)
    (run_dir / "status.json").write_text(json.dumps({"status": "weird"}))
    one_line_error(cli("status"), str(run_dir / "status.json"), "weird")
    one_line_error(cli("table"), str(run_dir / "status.json"))


@pytest.mark.slow
def test_status_of_a_copied_results_directory_reads_the_copy(cli, tiny_dataset, tmp_path):
    run_dir = finished(cli)
    plan = json.loads((run_dir.parents[2] / "plan.json").read_text())
    assert "results" not in plan["options"] and plan["version"] == store.VERSION
    copy = tmp_path / "copy"
    shutil.copytree(results(), copy)
    (copy / "mine" / "tiny" / "mle" / "seed-0" / "metrics.json").unlink()
    # A plan written before plan.json left the path out names the original: not read.
    plan["options"]["results"] = str(results())
    (copy / "mine" / "plan.json").write_text(json.dumps(plan))
    copied, original = cli("status", "--results", str(copy)), cli("status")
    assert "1 done" in original.output and "1 done" not in copied.output, copied.output


def test_the_committed_reference_files_read_under_the_schemas():
    checked = 0
    for reference in map(store.reference_dir, store.reference_sets()):
        for key, run_dir in store.runs(reference):
            store.read_metrics(run_dir)
            checked += 1
        store.read_record(reference / store.PLAN, "plan")
    assert checked > 100


# --- writing: a full disk is one line, the last good files stay ---------------------------

@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_last_checkpoint_stays(cli, tiny_dataset, monkeypatch):
    clean = metrics_of(finished(cli, "mle", "clean"))
    shutil.rmtree(results() / store.SHARED)  # the faulty run must train, not reuse
    real_fsync, writes = os.fsync, []

    def full_after_first_checkpoint(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if "checkpoint.pt" in name:
            writes.append(name)
            if len(writes) >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(store.os, "fsync", full_after_first_checkpoint)
    result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--run-id", "mine", *TINY)
    run_dir = results() / "mine" / "tiny" / "mle" / "seed-0"
    one_line_error(result, str(run_dir / "checkpoint.pt"), "No space left on device", "ENOSPC")
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert saved["state"]["epoch"] == 1 and not list(run_dir.glob(".*.tmp"))
    assert store.run_status(run_dir)["status"] == "failed"
    monkeypatch.setattr(store.os, "fsync", real_fsync)
    result = cli("-q", "run", "-m", "mle", "-d", "tiny", "--run-id", "mine", *TINY)
    assert result.exit_code == 0, result.output
    assert metrics_of(run_dir) == clean


def test_a_file_that_cannot_be_read_is_one_line_naming_it(tmp_path):
    path = tmp_path / "metrics.json"
    path.mkdir()  # reading a directory fails with an OSError
    with pytest.raises(StorageError, match="cannot read"):
        store.read_json(path)


def test_results_files_get_the_permissions_of_any_new_file(tmp_path):
    store.write_json(tmp_path / "config.json", {"run_id": "x"})
    plain = tmp_path / "plain"
    plain.touch()
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


@pytest.mark.slow
def test_a_missing_samples_file_or_unknown_profile_is_one_line(cli, tiny_dataset):
    run_dir = finished(cli)
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "profile": "nonexistent"}))
    one_line_error(cli("generate", str(run_dir)), "profile 'nonexistent'")
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "samples.txt").unlink()
    one_line_error(cli("samples", "-m", "mle", "-d", "tiny"), "samples.txt", "cannot read")
