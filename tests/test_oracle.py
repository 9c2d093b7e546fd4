import shutil

import numpy as np
import pytest
import torch

from harness import oracle
from harness_datasets import oracle as paper
from harness.api import HarnessError
from harness.download import DataFile, fetch, sha256_of
from harness.evaluate import mean_token_nll


@pytest.mark.slow
def test_the_authors_samples_score_5_761(mirror):
    real = oracle.read_token_file(fetch(paper.REAL_DATA, mirror))
    assert real.shape == (9984, 20)
    assert mean_token_nll(paper.seqgan_oracle(mirror), real) == pytest.approx(5.761, abs=0.01)


def test_uniform_random_sequences_score_about_11_4(mirror):
    uniform = torch.randint(0, 5000, (2000, 20), generator=torch.Generator().manual_seed(0))
    assert mean_token_nll(paper.seqgan_oracle(mirror), uniform) == pytest.approx(11.42, abs=0.1)


def test_npz_is_derived_from_the_pickle_without_trusting_it(mirror, tmp_path):
    # A mirror holding only the authors' pickle: the npz is made from it, byte for byte.
    only_pickle = tmp_path / "mirror"
    (only_pickle / "seqgan_oracle").mkdir(parents=True)
    shutil.copy(mirror / paper.PARAMS_PICKLE.path, only_pickle / paper.PARAMS_PICKLE.path)
    derived = fetch(paper.PARAMS, only_pickle)
    assert sha256_of(derived) == paper.PARAMS.sha256
    with np.load(derived, allow_pickle=False) as a, np.load(mirror / paper.PARAMS.path) as b:
        assert all(np.array_equal(a[k], b[k]) for k in paper.PARAM_NAMES)


def test_the_unpickler_refuses_anything_but_arrays(tmp_path):
    import os
    import pickle

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(os.system))
    with open(evil, "rb") as f, pytest.raises(pickle.UnpicklingError, match="refusing"):
        paper._ArraysOnly(f).load()


def test_a_corrupt_file_is_refused_with_both_checksums(tmp_path):
    (tmp_path / "seqgan_oracle").mkdir()
    (tmp_path / paper.PARAMS.path).write_bytes(b"not the oracle")
    with pytest.raises(HarnessError, match="does not match the expected 14cbf716"):
        fetch(paper.PARAMS, tmp_path)


def test_a_file_with_no_source_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(HarnessError, match="data mirror"):
        fetch(DataFile("nowhere/file.txt", "0" * 64), tmp_path)


def test_oracle_data_is_reproducible_by_seed():
    tiny = oracle.random_oracle(vocab_size=20, seq_len=6, seed=4)
    a, b = oracle.oracle_corpus(tiny, "t", seed=1, n_train=50, n_test=20), \
        oracle.oracle_corpus(tiny, "t", seed=1, n_train=50, n_test=20)
    c = oracle.oracle_corpus(tiny, "t", seed=2, n_train=50, n_test=20)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train, c.train)
    assert not torch.equal(a.train[:20], a.test)   # held-out set is a separate draw


def test_random_oracle_is_seeded_normal():
    first, second = oracle.random_oracle(100, 5, seed=3), oracle.random_oracle(100, 5, seed=3)
    weights = first.output.weight
    assert torch.equal(weights, second.output.weight)
    assert abs(weights.std().item() - 1.0) < 0.1
