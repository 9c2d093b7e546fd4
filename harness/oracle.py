"""Synthetic data from an oracle: any LSTM generator whose samples are the data and whose
likelihood scores a method's samples (NLL-oracle), as in the SeqGAN paper."""
from __future__ import annotations

from pathlib import Path

import torch

from harness.api import Corpus
from harness.generator import LSTMGenerator
from harness.streams import stream

DATA_STREAM = "oracle data"


def random_oracle(vocab_size: int, seq_len: int, emb_dim: int = 32, hidden_dim: int = 32,
                  seed: int = 0) -> LSTMGenerator:
    """An oracle of any size with N(0, 1) parameters drawn from ``seed``, as the paper draws
    its own; the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        oracle = LSTMGenerator(vocab_size, seq_len, emb_dim, hidden_dim, init_std=1.0)
    return oracle.requires_grad_(False).eval()


def read_token_file(path: Path) -> torch.Tensor:
    """Sequences of token ids, one sequence per line (the authors' real_data.txt format)."""
    rows = [[int(tok) for tok in line.split()] for line in Path(path).read_text().splitlines()
            if line.strip()]
    return torch.tensor(rows, dtype=torch.long)


def oracle_corpus(oracle: LSTMGenerator, name: str, seed: int, n_train: int = 10_000,
                  n_test: int = 10_000, eval_samples: int = 10_000, **info) -> Corpus:
    """Training and held-out sets sampled from ``oracle`` reproducibly by ``seed`` (the run's:
    its stream ``DATA_STREAM``)."""
    rng = stream(seed, DATA_STREAM)
    oracle = oracle.cpu()
    train = oracle.sample(n_train, generator=rng)
    test = oracle.sample(n_test, generator=rng)
    return Corpus(name=name, train=train, test=test, vocab_size=oracle.vocab_size,
                  start_token=oracle.start_token, oracle=oracle, eval_samples=eval_samples,
                  info={"n_train": n_train, "n_test": n_test, "data_seed": seed, **info})
