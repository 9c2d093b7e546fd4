"""RelGAN's TensorFlow-seeded oracle (data set ``oracle-relgan``): the packaged weights are
the pinned ones, the data set samples reproducibly, its forward pass is the authors' step,
and (with TensorFlow) the script remakes the file byte for byte."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from harness import oracle, store, table
from harness.api import HarnessError
from harness.download import sha256_of
from harness.plugins import registry
from harness_datasets import make_relgan_oracle as make
from harness_datasets import oracle_relgan

PACKAGED = oracle_relgan.resources.files("harness_datasets") / "oracles" / oracle_relgan.NPZ


def test_the_packaged_npz_is_the_pinned_one():
    with oracle_relgan.resources.as_file(PACKAGED) as path:
        assert sha256_of(path) == oracle_relgan.SHA256
        with np.load(path, allow_pickle=False) as params:
            assert params.files == [name for name, *_ in make.WEIGHTS]
            assert params["embeddings"].shape == (5000, 32) and params["Wo"].shape == (32, 5000)
            assert all(params[name].dtype == np.float32 for name in params.files)
            # Wi and Uc share op seed 111 and shape in the authors' code: equal draws.
            assert np.array_equal(params["Wi"], params["Uc"])


def test_a_damaged_npz_is_refused_in_one_line(tmp_path):
    damaged = tmp_path / oracle_relgan.NPZ
    with oracle_relgan.resources.as_file(PACKAGED) as path:
        shutil.copy(path, damaged)
    data = bytearray(damaged.read_bytes())
    data[-100] ^= 1
    damaged.write_bytes(bytes(data))
    with pytest.raises(HarnessError, match="does not match the pinned 776f6496") as error:
        oracle_relgan.check(damaged)
    assert "\n" not in str(error.value)


def test_the_data_set_is_registered_with_its_condition():
    dataset = registry().datasets["oracle-relgan"]
    assert dataset.conditions == {"oracle": "relgan-seeded-tf"}
    assert dataset.headline == ("nll_oracle",) and dataset.baseline == "mle"


def test_a_tiny_corpus_is_reproducible_by_seed():
    relgan = oracle_relgan.relgan_oracle()
    a, b = (oracle.oracle_corpus(relgan, "oracle-relgan", seed=1, n_train=64, n_test=32)
            for _ in range(2))
    c = oracle.oracle_corpus(relgan, "oracle-relgan", seed=2, n_train=64, n_test=32)
    assert a.train.shape == (64, 20) and a.vocab_size == 5000 and a.start_token == 0
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train, c.train)
    assert a.oracle is relgan


def _authors_log_probs(params: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
    """Teacher-forced log G(y_t | y_<t) by the numpy transcription of the authors' step (the
    one that remakes Texygen's TF 1 samples token for token: datasets/README.md)."""
    n, hidden = len(tokens), params["Ui"].shape[0]
    x = params["embeddings"][np.zeros(n, dtype=int)]  # start token 0
    h = c = np.zeros((n, hidden), np.float32)
    steps = []
    for t in range(tokens.shape[1]):
        log_probs, h, c = make.oracle_step(params, x, h, c)
        steps.append(log_probs[np.arange(n), tokens[:, t]])
        x = params["embeddings"][tokens[:, t]]
    return np.stack(steps, axis=1)


def test_the_forward_pass_is_the_authors_step():
    tokens = np.array([[0] * 20, [4999] * 20, list(range(20)), list(range(4980, 5000)),
                       [7, 4242, 7, 4242, 1, 2, 3, 2500, 2500, 0] * 2,
                       [(i * 997) % 5000 for i in range(20)]])
    with oracle_relgan.resources.as_file(PACKAGED) as path, np.load(path) as params:
        theirs = _authors_log_probs({k: params[k] for k in params.files}, tokens)
    ours = oracle_relgan.relgan_oracle().token_log_probs(torch.from_numpy(tokens))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, atol=1e-4)


def test_the_script_remakes_the_npz_byte_for_byte(tmp_path):
    pytest.importorskip("tensorflow")
    make.save(make.draw_oracle(), tmp_path / "remade.npz")
    assert sha256_of(tmp_path / "remade.npz") == oracle_relgan.SHA256


def _relgan_rows(tmp_path, dataset: str) -> pd.DataFrame:
    run = tmp_path / "r" / dataset / "relgan" / "seed-0"
    store.write_json(run / "config.json", {"run_id": "r", "dataset": dataset, "method": "relgan",
                                           "seed": 0, "corpus": {}, "profile": "authors"})
    store.write_json(run / "metrics.json", {"nll_oracle": 6.9})
    return table.collect(tmp_path)


def test_the_relgan_figure_compares_on_its_own_oracle_only(tmp_path):
    mine = table.beside_the_paper(_relgan_rows(tmp_path, "oracle-relgan"), "oracle-relgan")
    assert mine.set_index("method").loc["relgan", "gap (ours - paper)"] == f"{6.9 - 6.680:+.4f}"
    # On SeqGAN's oracle's table it is shown, and its oracle condition refuses the gap.
    seqgans = table.beside_the_paper(_relgan_rows(tmp_path, "oracle"), "oracle")
    assert seqgans.set_index("method").loc["relgan", "gap (ours - paper)"].startswith(
        "not comparable: oracle seqgan-target-params (the figure's: relgan-seeded-tf)")
