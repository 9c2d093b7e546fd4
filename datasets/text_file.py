"""Your own corpus, no code: ``-d text:PATH`` trains on a plain UTF-8 text file, one
sequence per line, tokenised as whitespace-separated words or as characters, with a
vocabulary of the training split's most frequent tokens (``<unk>`` for the rest), cut or
ended and padded with ``<eos>`` to a fixed length, and a fixed seeded held-out split.
Settings (``--set``): ``tokens``, ``vocab_size``, ``max_len``, ``test_share``, ``split_seed``;
``harness data inspect PATH`` shows what the harness makes of a file before any training.
"""
from __future__ import annotations

import functools
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import torch

import harness
from harness import memory
from harness.api import Corpus, Dataset, HarnessError
from harness.config import require
from harness.download import sha256_of
from harness.text import (EOS, EVAL_SAMPLES, UNK, build_vocab, encode, format_text,
                          lines_sha256, rows_also_in, split_by_text, unk_rate)

LONGEST_LINE = 100_000  # characters: a longer line is no sentence (a binary file, a dump)
# Memory a token takes while a file is encoded: its pointer in the row's Python list, its
# place in the int64 tensor of all rows, and its copy in the training or held-out rows.
BYTES_PER_TOKEN = 24


@dataclass
class TextFileConfig:
    tokens: str = "words"      # "words" (split at whitespace) or "chars" (every character)
    vocab_size: int = 5000     # tokens kept, <eos> and <unk> included; the rest become <unk>
    max_len: int = 40          # tokens per sequence: longer lines are cut, shorter ended and padded
    test_share: float = 0.1    # held-out share of the lines (duplicates kept on one side)
    split_seed: int = 0        # the held-out split's seed (fixed: not the run's seed)

    def __post_init__(self):
        require(self, choices={"tokens": ("words", "chars")}, fractions=("test_share",),
                at_least_one=("max_len",))
        if self.max_len > LONGEST_LINE:  # a longer sequence would be nothing but padding
            raise ValueError(f"max_len must be at most {LONGEST_LINE:,} (the longest line "
                             f"read, in characters), not {self.max_len:,}")
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size must be at least 3 (<eos>, <unk> and a token), "
                             f"not {self.vocab_size}")


@harness.hookimpl
def register_datasets(register):
    register(Dataset("text", load_text_file,
                     "your own corpus: -d text:PATH, a UTF-8 file, one sequence per line",
                     headline=("bleu3", "bleu3_train"), diversity="self_bleu3",
                     baseline="mle", argument="PATH", Config=TextFileConfig))


def read_lines(path: str | Path) -> list[str]:
    """The file's non-empty lines; HarnessError (one line, the fix) for a missing, empty or
    undecodable file, or one whose lines are too long to be sentences."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"text:{path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise HarnessError(f"text:{path}, line {line}: not UTF-8 ({error.reason} at byte "
                           f"{error.start}); convert the file to UTF-8 first") from None
    lines = [line.strip() for line in text.splitlines()]
    for number, line in enumerate(lines, 1):
        if len(line) > LONGEST_LINE:
            raise HarnessError(f"text:{path}, line {number}: {len(line):,} characters; a line "
                               f"is one sequence (at most {LONGEST_LINE:,} characters)")
    lines = [line for line in lines if line]
    if not lines:
        raise HarnessError(f"text:{path}: no sequences (the file is empty or blank)")
    return lines


def tokenize(line: str, tokens: str) -> list[str]:
    return list(line.replace(" ", "")) if tokens == "chars" else line.split()


@functools.lru_cache(maxsize=4)
def _corpus(path: str, sha256: str, settings: tuple) -> Corpus:
    cfg = TextFileConfig(**dict(settings))
    lines = read_lines(path)
    train, test = split_by_text(lines, cfg.test_share, cfg.split_seed)
    if not train or not test:
        raise _unsplittable(path, lines, cfg.test_share, no_training=not train)
    memory.check_fits(len(lines) * cfg.max_len * BYTES_PER_TOKEN,
                      f"text:{path}: max_len={cfg.max_len:,} ({len(lines):,} sequences of "
                      f"{cfg.max_len:,} tokens)", "lower max_len")
    tokens = [tokenize(line, cfg.tokens) for line in lines]
    vocab = build_vocab((tokens[i] for i in train), cfg.vocab_size)
    index = {tok: i for i, tok in enumerate(vocab)}
    rows = torch.tensor([encode(t, index, cfg.max_len) for t in tokens], dtype=torch.long)
    joiner = "" if cfg.tokens == "chars" else " "
    return Corpus(
        name=f"text:{path}", train=rows[train], test=rows[test], vocab_size=len(vocab),
        start_token=0, vocab=vocab, eval_samples=EVAL_SAMPLES, end_token=0,
        format=functools.partial(_show, vocab=vocab, joiner=joiner),
        info={"file": path, "sha256": sha256, **asdict(cfg), "n_lines": len(lines),
              "n_train": len(train), "n_test": len(test), "vocab_size_found": len(vocab),
              "test_sha256": lines_sha256(lines[i] for i in test),
              "split": f"{1 - cfg.test_share:.0%}/{cfg.test_share:.0%} of the lines, exact "
                       f"duplicates on one side, shuffled by numpy default_rng(split_seed)",
              "cut_fraction": round(sum(len(t) > cfg.max_len for t in tokens) / len(tokens), 4),
              "unk_rate_train": round(unk_rate(rows[train]), 5),
              "unk_rate_test": round(unk_rate(rows[test]), 5),
              "test_rows_also_in_train": rows_also_in(rows[test], rows[train]),
              "special_tokens": {EOS: 0, UNK: 1}, "eos": "start input, end marker and padding"})


def _unsplittable(path: str, lines: list[str], test_share: float,
                  no_training: bool) -> HarnessError:
    """Why ``lines`` make no training and held-out parts, and the fix."""
    distinct = len(set(lines))
    if distinct < 2:  # every copy of a sequence falls on one side
        return HarnessError(f"text:{path}: {distinct} distinct sequence in {len(lines):,} "
                            f"line(s) cannot be split into a training and a held-out part; "
                            f"give more distinct lines")
    empty = "training" if no_training else "held-out"
    return HarnessError(f"text:{path}: test_share={test_share} leaves the {empty} part "
                        f"empty; choose a test_share above 0 and below 1")


def _show(row: list[int], vocab: list[str], joiner: str) -> str:
    words = [vocab[t] for t in row]
    words = words[:words.index(EOS)] if EOS in words else words
    return joiner.join(words) if joiner == "" else format_text(words)


def load_text_file(profile: str = "default", seed: int = 0, mirror=None, *, argument: str,
                   config: TextFileConfig | None = None) -> Corpus:
    """The corpus of the file ``argument``; the run's seed and profile do not change it
    (the held-out split has its own seed)."""
    lines_path = Path(argument)
    read_lines(lines_path)  # the file's problems, named, before anything else
    settings = tuple(sorted(asdict(config or TextFileConfig()).items()))
    return _corpus(str(lines_path), sha256_of(lines_path), settings)


def describe(corpus: Corpus) -> str:
    """What the harness makes of a file: sizes, vocabulary, lengths, unknown tokens."""
    info = corpus.info
    lengths = Counter(min(len(s), info["max_len"]) for s in corpus.sentences(
        torch.cat([corpus.train, corpus.test])))
    top = max(lengths.values())
    bars = "\n".join(f"  {n:>4} tokens {count:>7}  {'#' * max(1, round(40 * count / top))}"
                     for n, count in sorted(lengths.items()))
    return (f"{info['file']} (sha256 {info['sha256'][:12]}…)\n"
            f"sequences: {info['n_lines']:,} ({info['n_train']:,} training, {info['n_test']:,} "
            f"held out; {info['test_rows_also_in_train']} held-out rows also in training)\n"
            f"tokens: {info['tokens']}; vocabulary {info['vocab_size_found']:,} of at most "
            f"{info['vocab_size']:,} (<eos>, <unk> and the most frequent training tokens)\n"
            f"unknown share: {info['unk_rate_train']:.2%} of training tokens, "
            f"{info['unk_rate_test']:.2%} of held-out tokens\n"
            f"length: at most {info['max_len']} tokens; {info['cut_fraction']:.1%} of the "
            f"lines are cut\nlengths (tokens before <eos>):\n{bars}")


@harness.hookimpl
def register_commands(cli):
    from harness.commands import user_errors
    from harness.config import check_settings, parse_settings, resolve

    @cli.group()
    def data():
        """Look at a corpus before training on it."""

    @data.command()
    @click.argument("path", type=click.Path())
    @click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                  help="tokens, vocab_size, max_len, test_share, split_seed.")
    @user_errors
    def inspect(path, settings) -> None:
        """What `harness run -d text:PATH` would make of a text file."""
        from harness.plugins import registry

        dataset = registry().dataset(f"text:{path}")
        check_settings([dataset], parse_settings(settings))
        config = resolve(dataset, "default", parse_settings(settings))
        click.echo(describe(dataset.load(config=config)))
