"""Tools for text data sets: tokenising, vocabularies, fixed-length encoding, a split
that keeps duplicates on one side, and readable detokenisation.

A text corpus uses one special token ``<eos>`` at id 0: it is the generator's start
input, the end marker and the padding; ``<unk>`` (id 1) stands for words outside the
vocabulary.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from harness.download import OFFLINE_ENV, cache_dir, mirror_dir

EOS, UNK = "<eos>", "<unk>"
SPLIT_SEED = 0          # fixed: the split must not change with the run seed
TEST_FRACTION = 0.1
EVAL_SAMPLES = 2_000    # generated samples scored (BLEU against the test set) per run

TOKEN_PATTERN = r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]"
_TOKEN = re.compile(TOKEN_PATTERN)
_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "%", "-", "'"}
_NO_SPACE_AFTER = {"(", "$", "-"}


def tokenize(text: str) -> list[str]:
    """Lower-cased words (with a clitic such as ``'s`` kept on), each other
    non-space character a token of its own."""
    return _TOKEN.findall(text.lower())


def build_vocab(sequences: Iterable[Sequence[str]], cap: int | None,
                specials: Sequence[str] = (EOS, UNK)) -> list[str]:
    """``specials`` then the tokens by falling frequency (ties: first seen first),
    ``cap`` in all (``None``: every token)."""
    counts = Counter(tok for seq in sequences for tok in seq if tok not in specials)
    ranked = sorted(counts, key=lambda tok: -counts[tok])  # stable: first seen first
    return list(specials) + ranked[:None if cap is None else max(cap - len(specials), 0)]


def encode(tokens: Sequence[str], index: dict[str, int], max_len: int) -> list[int]:
    """Ids of ``tokens`` cut to ``max_len``, or ended with ``<eos>`` and padded with it;
    tokens outside ``index`` become ``<unk>``."""
    ids = [index.get(tok, index[UNK]) for tok in tokens[:max_len]]
    return ids + [index[EOS]] * (max_len - len(ids))


def unk_rate(rows: torch.Tensor) -> float:
    """The share of ``<unk>`` among the tokens before each row's first ``<eos>``."""
    real = (rows == 0).long().cumsum(1) == 0
    return ((rows == 1) & real).sum().item() / max(real.sum().item(), 1)


def rows_also_in(rows: torch.Tensor, others: torch.Tensor) -> int:
    """How many of ``rows`` equal some row of ``others`` (e.g. test sequences seen in
    training: different paragraphs can share their first ``max_len`` tokens)."""
    seen = {tuple(row) for row in others.tolist()}
    return sum(tuple(row) in seen for row in rows.tolist())


def format_text(tokens: Iterable, vocab: Sequence[str] | None = None) -> str:
    """Readable text of a token sequence (ids with ``vocab``, or strings): stops at the
    first ``<eos>``, no space before ``, . ; : ! ?`` and clitics, hyphens joined,
    double quotes hugging what they quote."""
    words = []
    for word in strings(tokens, vocab):
        if word == EOS:
            break
        if word == "-" and words and words[-1] in ("-", "--"):
            words[-1] = "--"
        else:
            words.append(word)
    out, glue, quote_open = "", True, False
    for word in words:
        if word == '"':
            quote_open = not quote_open
            space = quote_open
            glue_after = quote_open
        else:
            space = not (word in _NO_SPACE_BEFORE or word.startswith("'") or word == "n't")
            glue_after = word in _NO_SPACE_AFTER
        out += (" " if out and space and not glue else "") + word
        glue = glue_after
    return out


def split_by_text(texts: Sequence[str], test_fraction: float = TEST_FRACTION,
                  seed: int = SPLIT_SEED) -> tuple[list[int], list[int]]:
    """Indices (in file order) of the training and test items: the distinct texts are
    shuffled by ``default_rng(seed)`` and taken into the test set until it holds
    ``test_fraction`` of the items, so all copies of a text fall on one side."""
    distinct = list(dict.fromkeys(texts))
    copies = Counter(texts)
    target = round(test_fraction * len(texts))
    if len(distinct) > 1 and test_fraction > 0:
        target = max(target, 1)
    held_out, size = set(), 0
    for i in np.random.default_rng(seed).permutation(len(distinct)):
        if size >= target:
            break
        held_out.add(distinct[i])
        size += copies[distinct[i]]
    train = [i for i, t in enumerate(texts) if t not in held_out]
    test = [i for i, t in enumerate(texts) if t in held_out]
    return train, test


def lines_sha256(lines: Iterable[str]) -> str:
    """A fingerprint of a split: sha256 of its lines, sorted, joined by newlines."""
    return hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()


def strings(tokens: Iterable, vocab: Sequence[str] | None) -> list[str]:
    """Tokens as strings: ids looked up in ``vocab``, or each token as it is."""
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.tolist()
    return [vocab[int(t)] if vocab is not None else str(t) for t in tokens]


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def where(mirror: str | Path | None) -> tuple:
    """What decides which files a loader finds: the cache key of a built corpus."""
    root = mirror_dir(mirror)
    return str(root) if root else None, str(cache_dir()), offline()
