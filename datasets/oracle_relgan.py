"""RelGAN's synthetic oracle: the LSTM the RelGAN authors' code draws with TensorFlow.

RelGAN's NLL-oracle figures (Nie et al. 2019) were made on an oracle of its own, not on
SeqGAN's ``target_params``: weilinie/RelGAN's ``OracleLstm`` draws every weight from
N(0, 1) under TensorFlow graph seed 1234 and an op seed per weight. There is no file of it
to download; ``make_relgan_oracle.py`` (run with TensorFlow) draws it into
``oracles/relgan_oracle.npz``, shipped as package data and pinned here by its sha256.

Its step is SeqGAN's (gates from x @ W + h @ U + b, zero initial state, start token 0,
logits h @ Wo + bo), so the same mapping to :class:`LSTMGenerator` computes it exactly
(tests/test_oracle_relgan.py checks it against a numpy transcription of the authors' step).

The data set: 9,984 training sequences (the authors' 10,000 in whole batches of 64) and
10,000 held-out ones sampled from it, reproducibly by the run's seed; NLL-oracle and
NLL-test as on ``oracle``. The authors score NLL-oracle on 9,984 samples.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np

import harness
from harness.api import Corpus, Dataset, HarnessError
from harness.download import sha256_of
from harness.generator import LSTMGenerator
from harness.oracle import oracle_corpus
from harness_datasets.oracle import DEFAULT_EVAL_SAMPLES, PARAM_NAMES, from_seqgan_params

NPZ = "relgan_oracle.npz"
SHA256 = "776f649692d4779c5dd5e02f2388b1ed763208874f15c621d37e4ab2141a5226"
AUTHORS_SAMPLES = 9_984  # int(10,000 / 64) batches of 64: their training set and their scoring
CONDITION = "relgan-seeded-tf"  # what the published RelGAN figure's conditions name


@harness.hookimpl
def register_datasets(register):
    register(Dataset(
        "oracle-relgan", load_relgan_oracle,
        "synthetic: samples of RelGAN's TensorFlow-seeded oracle LSTM (vocab 5,000, length 20)",
        headline=("nll_oracle",), diversity="nll_test", baseline="mle",
        # The RelGAN figure lives in the relgan method's published CSV (dataset oracle-relgan).
        conditions={"oracle": CONDITION},
        in_all=False))  # run by name: it exists for that one figure


def check(path: Path) -> Path:
    """``path`` if it holds the pinned oracle; a damaged or replaced file is refused."""
    actual = sha256_of(path)
    if actual != SHA256:
        raise HarnessError(f"{path}: sha256 {actual} does not match the pinned {SHA256}; "
                           f"reinstall the harness, or remake the file with "
                           f"datasets/make_relgan_oracle.py (TensorFlow)")
    return path


def relgan_oracle(seq_len: int = 20) -> LSTMGenerator:
    """RelGAN's oracle (vocabulary 5,000, embedding 32, hidden 32) as a frozen generator."""
    with resources.as_file(resources.files("harness_datasets") / "oracles" / NPZ) as path, \
            np.load(check(path), allow_pickle=False) as params:
        return from_seqgan_params({name: params[name] for name in PARAM_NAMES}, seq_len)


@functools.lru_cache(maxsize=4)
def _relgan_oracle_corpus(seed: int, eval_samples: int) -> Corpus:
    return oracle_corpus(relgan_oracle(), "oracle-relgan", seed, n_train=AUTHORS_SAMPLES,
                         eval_samples=eval_samples,
                         oracle_weights="weilinie/RelGAN OracleLstm, drawn in TensorFlow "
                                        "(graph seed 1234; datasets/make_relgan_oracle.py)")


def load_relgan_oracle(profile: str, seed: int, mirror: str | Path | None = None) -> Corpus:
    """9,984 training and 10,000 held-out samples of RelGAN's oracle (``mirror`` unused:
    the weights are package data)."""
    eval_samples = DEFAULT_EVAL_SAMPLES if profile == "default" else AUTHORS_SAMPLES
    return _relgan_oracle_corpus(seed, eval_samples)
