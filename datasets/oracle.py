"""The SeqGAN paper's synthetic oracle: an LSTM with the authors' own weights.

The authors' ``target_params.pkl`` holds 15 arrays; ``target_params.npz`` is the
same arrays without pickle. Their LSTM computes ``x @ W`` with gates i, f, o and
candidate c, zero initial state and start token 0 — exactly ``nn.LSTM`` once the
matrices are transposed and stacked in PyTorch's gate order (i, f, g, o), so the
oracle is simply an :class:`LSTMGenerator` with frozen weights.

The data set: 10,000 training and 10,000 held-out sequences sampled from it,
reproducibly by the run's seed; a method's samples are scored by the oracle
(NLL-oracle), its likelihood of the held-out set is NLL-test.
"""
from __future__ import annotations

import functools
import importlib
import pickle
from importlib import resources
from pathlib import Path

import numpy as np
import torch

import harness
from harness.api import Corpus, Dataset
from harness.download import DataFile, fetch
from harness.generator import LSTMGenerator
from harness.oracle import oracle_corpus

SEQGAN_COMMIT = "e2b52fb6309851b14765290e8a972ccac09f1bec"
FIRST_COMMIT = "4152436cb6fed67d3dec0512639d9f6967a7b2de"
RAW = "https://raw.githubusercontent.com/LantaoYu/SeqGAN"
PARAM_NAMES = ("embeddings", "Wi", "Ui", "bi", "Wf", "Uf", "bf",
               "Wog", "Uog", "bog", "Wc", "Uc", "bc", "Wo", "bo")



@harness.hookimpl
def register_datasets(register):
    register(Dataset(
        "oracle", load_paper_oracle,
        "synthetic: samples of the SeqGAN authors' oracle LSTM (vocab 5,000, length 20)",
        headline=("nll_oracle",), diversity="nll_test", baseline="mle",
        published=(resources.files("harness_datasets") / "published" / "seqgan_aaai2017.csv",
                   resources.files("harness_datasets") / "published" / "seqgan_code_log.csv"),
        conditions={"oracle": "seqgan-target-params"}))  # LantaoYu/SeqGAN's target_params


PARAMS_PICKLE = DataFile(
    "seqgan_oracle/target_params.pkl",
    "6a0b3b967aa03a952b353709493e2b430fc261d15f9dd658823019b4eaab6c1c",
    url=f"{RAW}/{SEQGAN_COMMIT}/save/target_params.pkl")
REAL_DATA = DataFile(
    "seqgan_oracle/real_data.txt",
    "c0338b2bc2a29802154c81058b8aafed488ee55bda3aaba3849289c59a7a8e22",
    url=f"{RAW}/{FIRST_COMMIT}/MLE_SeqGAN/save/real_data.txt")


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the authors' list of numpy arrays and refuses anything else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name} in target_params.pkl")
        if module == "numpy.core.multiarray":  # renamed numpy._core in numpy 2
            module = "numpy._core.multiarray" if np.__version__ >= "2" else module
        return getattr(importlib.import_module(module), name)


def _npz_from_pickle(dest: Path, mirror: str | Path | None) -> None:
    """Derive the npz from the authors' pickle; byte-identical to the mirror's npz."""
    with open(fetch(PARAMS_PICKLE, mirror), "rb") as f:
        arrays = _ArraysOnly(f, encoding="latin1").load()
    np.savez(dest, **dict(zip(PARAM_NAMES, arrays)))


PARAMS = DataFile(
    "seqgan_oracle/target_params.npz",
    "14cbf71614ecb8f04a40362ce0004f31cc6bac3032d263b4a386be7d449966b3",
    derive=_npz_from_pickle)


def from_seqgan_params(params: dict[str, np.ndarray], seq_len: int = 20) -> LSTMGenerator:
    """An LSTMGenerator computing exactly the authors' TensorFlow oracle."""
    t = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in params.items()}
    vocab_size, emb_dim = t["embeddings"].shape
    hidden_dim = t["Ui"].shape[0]
    oracle = LSTMGenerator(vocab_size, seq_len, emb_dim, hidden_dim, start_token=0, init_std=None)
    with torch.no_grad():
        oracle.embedding.weight.copy_(t["embeddings"])
        oracle.lstm.weight_ih_l0.copy_(torch.cat([t["Wi"].T, t["Wf"].T, t["Wc"].T, t["Wog"].T]))
        oracle.lstm.weight_hh_l0.copy_(torch.cat([t["Ui"].T, t["Uf"].T, t["Uc"].T, t["Uog"].T]))
        oracle.lstm.bias_ih_l0.copy_(torch.cat([t["bi"], t["bf"], t["bc"], t["bog"]]))
        oracle.lstm.bias_hh_l0.zero_()
        oracle.output.weight.copy_(t["Wo"].T)
        oracle.output.bias.copy_(t["bo"])
    return oracle.requires_grad_(False).eval()


def seqgan_oracle(mirror: str | Path | None = None) -> LSTMGenerator:
    """The paper's oracle (vocabulary 5,000, embedding 32, hidden 32, length 20)."""
    with np.load(fetch(PARAMS, mirror), allow_pickle=False) as params:
        return from_seqgan_params({name: params[name] for name in PARAM_NAMES})


# Samples scored per run: the authors' generated_num (10,000) under their settings; 2,000,
# as on the text data sets, on the CPU-sized default (NLL-oracle's standard error over
# sequences is then about 0.015 nats for the default MLE generator, against 0.007).
DEFAULT_EVAL_SAMPLES = 2_000
AUTHORS_EVAL_SAMPLES = 10_000


@functools.lru_cache(maxsize=4)
def _paper_oracle_corpus(seed: int, mirror: str | None, eval_samples: int) -> Corpus:
    return oracle_corpus(seqgan_oracle(mirror), "oracle", seed, eval_samples=eval_samples,
                         oracle_weights="LantaoYu/SeqGAN target_params (authors' own)")


def load_paper_oracle(profile: str, seed: int, mirror: str | Path | None = None) -> Corpus:
    """The paper's synthetic data set: 10,000 training and 10,000 held-out oracle samples."""
    eval_samples = DEFAULT_EVAL_SAMPLES if profile == "default" else AUTHORS_EVAL_SAMPLES
    return _paper_oracle_corpus(seed, str(mirror) if mirror else None, eval_samples)
