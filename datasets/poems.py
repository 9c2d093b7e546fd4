"""Chinese quatrains: the SeqGAN paper's 16,394 five-character poems (Texygen ``shi.txt``).

Characters, the vocabulary of the whole (closed) file, ``<eos>`` at id 0 as the start
input; ``，``/``。`` dropped (the layout is fixed and put back for display). A fixed 90/10
split (``SPLIT_SEED``, not the run seed) with exact duplicates on one side; the profile
and seed do not change the data.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import torch

import harness
from harness.api import Corpus, Dataset, HarnessError
from harness.download import DataFile, fetch
from harness.text import (EOS, EVAL_SAMPLES, SPLIT_SEED, TEST_FRACTION, build_vocab,
                          lines_sha256, rows_also_in, split_by_text, strings, where)

POEMS = DataFile(
    "chinese_poems/shi.txt",
    "ac03c5fbb07776f0e43cb1ccfc74732f5313ab3d832df81c8e0db327df35e666",
    url="https://raw.githubusercontent.com/geek-ai/Texygen/"
        "3104e22ac75f3cc2070da2bf5e2da6d2bef149ad/data/shi.txt")
POEM_LAYOUT = ("，", "。", "，", "。")   # the mark closing each five-character line
POEM_MARK_AT = {5: "，", 11: "。", 17: "，", 23: "。"}


@harness.hookimpl
def register_datasets(register):
    register(Dataset(
        "poems", load_poems,
        "real: 16,394 Chinese quatrains (Texygen shi.txt), 20 characters each",
        headline=("bleu2", "bleu2_train"), diversity="self_bleu2", baseline="mle",
        published=(resources.files("harness_datasets") / "published" / "seqgan_aaai2017.csv",)))


def parse_poems(text: str, filename: str = "shi.txt") -> list[list[str]]:
    """Each line's 24 tokens ``C C C C C ， C C C C C 。 ...``; HarnessError names the
    file and line of the first line that is not in that layout."""
    poems = []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if len(tokens) != 24 or any(
                tokens[i] != POEM_MARK_AT[i] if i in POEM_MARK_AT
                else len(tok) != 1 or tok in POEM_LAYOUT for i, tok in enumerate(tokens)):
            raise HarnessError(f"{filename}, line {number}: expected 24 tokens laid out as "
                               f"4 x (5 characters + ，/。), got {line.strip()[:60]!r}")
        poems.append(tokens)
    if not poems:
        raise HarnessError(f"{filename}: no poems (empty file)")
    return poems


def format_poem(tokens: Iterable, vocab: Sequence[str] | None = None) -> str:
    """A poem as four lines: 20 characters get ``，。，。`` re-inserted after every
    five; 24 tokens (punctuation kept) are shown as they are, six per line. ``tokens``
    are strings, or ids when ``vocab`` is given."""
    chars = strings(tokens, vocab)
    if len(chars) == 20:
        return "\n".join("".join(chars[5 * i:5 * i + 5]) + mark
                         for i, mark in enumerate(POEM_LAYOUT))
    if len(chars) == 24:
        return "\n".join("".join(chars[6 * i:6 * i + 6]) for i in range(4))
    raise ValueError(f"a poem has 20 or 24 tokens, not {len(chars)}")


def poems_corpus(text: str, filename: str = "shi.txt", punctuation: bool = False,
                 split_seed: int = SPLIT_SEED, **info) -> Corpus:
    """The quatrain corpus from the text of ``shi.txt``: characters, vocabulary of the
    whole (closed) file, no ``<unk>``."""
    poems = parse_poems(text, filename)
    lines = [" ".join(poem) for poem in poems]   # the split never depends on punctuation
    if not punctuation:
        poems = [[tok for tok in poem if tok not in POEM_LAYOUT] for poem in poems]
    vocab = build_vocab(poems, None, specials=(EOS,))
    index = {tok: i for i, tok in enumerate(vocab)}
    train, test = split_by_text(lines, TEST_FRACTION, split_seed)
    rows = torch.tensor([[index[tok] for tok in poem] for poem in poems], dtype=torch.long)
    return Corpus(
        name="poems", train=rows[train], test=rows[test], vocab_size=len(vocab),
        start_token=0, vocab=vocab, eval_samples=EVAL_SAMPLES,
        format=functools.partial(format_poem, vocab=vocab),
        info={"source": "Chinese quatrains, geek-ai/Texygen data/shi.txt (the paper's 16,394)",
              **info,
              "n_poems": len(poems), "n_distinct": len(set(lines)),
              "n_train": len(train), "n_test": len(test),
              "split": f"{1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} of poems, exact "
                       f"duplicates on one side, shuffled by numpy default_rng(split_seed)",
              "split_seed": split_seed, "test_sha256": lines_sha256(lines[i] for i in test),
              "test_sha256_of": "the test poems' 24 tokens joined by spaces, sorted, one a line",
              "tokens": "characters",
              "punctuation": punctuation,
              "punctuation_note": "，/。 kept as tokens" if punctuation else
                                  "，/。 dropped (fixed layout; format_poem puts them back)",
              "seq_len": rows.shape[1], "vocab_size": len(vocab),
              "test_rows_also_in_train": rows_also_in(rows[test], rows[train]),
              "vocab_from": "whole file (small and closed: no <unk> needed in the test set)",
              "special_tokens": {EOS: 0}, "eos": "start input, end marker and padding"})


@functools.lru_cache(maxsize=4)
def _poems(where_: tuple, punctuation: bool) -> Corpus:
    path = fetch(POEMS, where_[0])
    return poems_corpus(path.read_text(encoding="utf-8"), str(path), punctuation,
                        file=POEMS.path, sha256=POEMS.sha256, url=POEMS.url)


def load_poems(profile: str = "default", seed: int = 0, mirror: str | Path | None = None, *,
               punctuation: bool = False) -> Corpus:
    """16,394 Chinese quatrains, 20 characters each (24 with ``punctuation``); the
    run seed and profile do not change it."""
    return _poems(where(mirror), punctuation)
