"""The SeqGAN paper's two real-text data sets: Chinese quatrains and Obama speeches.

Both corpora use one special token ``<eos>`` at id 0: it is the generator's start
input, the end marker and the padding (like the oracle, whose start token 0 is an
ordinary token). The Obama corpus also has ``<unk>`` at id 1.

The train/test split is fixed (``SPLIT_SEED``, not the run seed): 90/10, exact
duplicate poems / paragraphs all on one side. The ``profile`` does not change
either data set.

Obama: the paper's file (samim23/obama-rnn ``input.txt``, verified by its git blob
id) is used when it is in the mirror or the download cache, or can be downloaded;
otherwise the CoPS stand-in from the mirror is used and a warning is logged.
``HARNESS_OFFLINE=1`` switches the download off; ``load_obama(original=False)``
skips the original altogether and ``original=True`` insists on it.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from harness.api import Corpus, HarnessError
from harness.download import (OFFLINE_ENV, DataFile, DownloadError, cache_dir, fetch,
                              mirror_dir, sha256_of)

log = logging.getLogger("harness")

EOS, UNK = "<eos>", "<unk>"
SPLIT_SEED = 0          # fixed: the split must not change with the run seed
TEST_FRACTION = 0.1
EVAL_SAMPLES = 2_000    # generated samples scored (BLEU against the test set) per run

# --- Chinese quatrains -------------------------------------------------------------

POEMS = DataFile(
    "chinese_poems/shi.txt",
    "ac03c5fbb07776f0e43cb1ccfc74732f5313ab3d832df81c8e0db327df35e666",
    url="https://raw.githubusercontent.com/geek-ai/Texygen/"
        "3104e22ac75f3cc2070da2bf5e2da6d2bef149ad/data/shi.txt")
POEM_LAYOUT = ("，", "。", "，", "。")   # the mark closing each five-character line
POEM_MARK_AT = {5: "，", 11: "。", 17: "，", 23: "。"}


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
    chars = _strings(tokens, vocab)
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
def _poems(where: tuple, punctuation: bool) -> Corpus:
    path = fetch(POEMS, where[0])
    return poems_corpus(path.read_text(encoding="utf-8"), str(path), punctuation,
                        file=POEMS.path, sha256=POEMS.sha256, url=POEMS.url)


def load_poems(profile: str = "default", seed: int = 0, mirror: str | Path | None = None, *,
               punctuation: bool = False) -> Corpus:
    """16,394 Chinese quatrains, 20 characters each (24 with ``punctuation``); the
    run seed and profile do not change it."""
    return _poems(_where(mirror), punctuation)


# --- Obama speeches ------------------------------------------------------------------

OBAMA_ORIGINAL = DataFile(
    "obama_speeches/input.txt", "",
    url="https://raw.githubusercontent.com/samim23/obama-rnn/"
        "10248ee07440125e1e3ea3bd07f4b3b4b6b54131/input.txt",
    git_blob_sha1="11ec5f013964d47a45c55dbc3c9cefd71a6e3172")
OBAMA_STANDIN = DataFile(
    "obama_speeches/cops_obama_paragraphs.txt",
    "588cbbcfeffcf3cc2976d6d2fb203ea697a0aa65599c223a93413427480b2e6d")
ORIGINAL_VARIANT = "samim23/obama-rnn input.txt (the paper's)"
STANDIN_VARIANT = "CoPS stand-in (not the paper's set)"
TOKEN_PATTERN = r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]"
_TOKEN = re.compile(TOKEN_PATTERN)
_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "%", "-", "'"}
_NO_SPACE_AFTER = {"(", "$", "-"}


def read_paragraphs(text: str, filename: str = "paragraphs") -> list[str]:
    """The non-empty lines, stripped; HarnessError when there are none."""
    paragraphs = [line.strip() for line in text.splitlines() if line.strip()]
    if not paragraphs:
        raise HarnessError(f"{filename}: no paragraphs (empty file)")
    return paragraphs


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


def obama_corpus(text: str, filename: str = "paragraphs", vocab_cap: int = 5_000,
                 max_len: int = 40, split_seed: int = SPLIT_SEED, **info) -> Corpus:
    """Word-level paragraphs, split by paragraph, vocabulary of the training split."""
    paragraphs = read_paragraphs(text, filename)
    train, test = split_by_text(paragraphs, TEST_FRACTION, split_seed)
    tokens = [tokenize(p) for p in paragraphs]
    vocab = build_vocab((tokens[i] for i in train), vocab_cap)
    index = {tok: i for i, tok in enumerate(vocab)}
    rows = torch.tensor([encode(t, index, max_len) for t in tokens], dtype=torch.long)
    train_counts = Counter(tok for i in train for tok in tokens[i])
    train_rows, test_rows = rows[train], rows[test]
    return Corpus(
        name="obama", train=train_rows, test=test_rows, vocab_size=len(vocab), start_token=0,
        vocab=vocab, eval_samples=EVAL_SAMPLES, end_token=0,
        format=functools.partial(format_text, vocab=vocab),
        info={**info,
              "n_paragraphs": len(paragraphs), "n_distinct": len(set(paragraphs)),
              "n_train": len(train), "n_test": len(test),
              "split": f"{1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} of paragraphs, exact "
                       f"duplicates on one side, shuffled by numpy default_rng(split_seed)",
              "split_seed": split_seed,
              "test_sha256": lines_sha256(paragraphs[i] for i in test),
              "test_sha256_of": "the test paragraphs (stripped lines), sorted, one a line",
              "tokens": f"lower-cased words and single punctuation marks, regex {TOKEN_PATTERN}",
              "max_len": max_len, "seq_len": max_len,
              "cut": "first max_len tokens of a paragraph; a shorter one ends with <eos> "
                     "and is padded with <eos>",
              "cut_fraction": round(sum(len(t) > max_len for t in tokens) / len(tokens), 4),
              "vocab_cap": vocab_cap, "vocab_size": len(vocab),
              "vocab_from": "the most frequent tokens of the training paragraphs (whole, "
                            "before cutting), ties by first occurrence; the rest are <unk>",
              "vocab_min_count": min(train_counts[tok] for tok in vocab[2:]) if len(vocab) > 2
                                 else 0,
              "unk_rate_train": round(unk_rate(train_rows), 5),
              "unk_rate_test": round(unk_rate(test_rows), 5),
              "test_rows_also_in_train": rows_also_in(test_rows, train_rows),
              "special_tokens": {EOS: 0, UNK: 1}, "eos": "start input, end marker and padding"})


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
    for word in _strings(tokens, vocab):
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


# --- shared ----------------------------------------------------------------------------

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


def _strings(tokens: Iterable, vocab: Sequence[str] | None) -> list[str]:
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.tolist()
    return [vocab[int(t)] if vocab is not None else str(t) for t in tokens]


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def _where(mirror: str | Path | None) -> tuple:
    """What decides which files a loader finds: the cache key of a built corpus."""
    root = mirror_dir(mirror)
    return str(root) if root else None, str(cache_dir()), _offline()


@functools.lru_cache(maxsize=4)
def _obama(where: tuple, original: bool | None, vocab_cap: int, max_len: int) -> Corpus:
    mirror = where[0]
    path = None
    if original is not False:
        try:
            path = fetch(OBAMA_ORIGINAL, mirror)
        except DownloadError as error:
            if original:
                raise
            log.warning("the paper's Obama corpus (samim23/obama-rnn input.txt) is not "
                        "available (%s); using the CoPS stand-in, which is NOT the paper's "
                        "data set", error)
    if path is not None:
        text = path.read_bytes().decode("utf-8", errors="replace")
        return obama_corpus(
            text, str(path), vocab_cap, max_len, variant=ORIGINAL_VARIANT,
            source="samim23/obama-rnn input.txt: the SeqGAN paper's Obama speeches "
                   "(paragraphs = its non-empty lines)",
            file=OBAMA_ORIGINAL.path, url=OBAMA_ORIGINAL.url,
            git_blob_sha1=OBAMA_ORIGINAL.git_blob_sha1, sha256=sha256_of(path))
    path = fetch(OBAMA_STANDIN, mirror)
    return obama_corpus(
        path.read_text(encoding="utf-8"), str(path), vocab_cap, max_len,
        variant=STANDIN_VARIANT,
        source="Corpus of Presidential Speeches (Brown 2016), 48 Obama speeches, one "
               "cleaned paragraph per line (see obama_speeches/PROVENANCE.md)",
        file=OBAMA_STANDIN.path, sha256=OBAMA_STANDIN.sha256)


def load_obama(profile: str = "default", seed: int = 0, mirror: str | Path | None = None, *,
               original: bool | None = None, vocab_cap: int = 5_000,
               max_len: int = 40) -> Corpus:
    """Obama speech paragraphs as word sequences of ``max_len`` tokens.

    ``original=None`` uses the paper's file when it can be had (mirror, cache, or a
    download unless ``HARNESS_OFFLINE`` is set) and otherwise the CoPS stand-in;
    ``False`` goes straight to the stand-in; ``True`` requires the original.
    """
    return _obama(_where(mirror), original, vocab_cap, max_len)
