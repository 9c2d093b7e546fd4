"""The Chinese-quatrain and Obama data sets, the text tools they use, and git-blob
verification.

Tiny hand-made corpora test the parsing, vocabulary, padding and split; the real
mirror (skipped without it) pins counts and the train/test split. Downloads are
switched off (HARNESS_OFFLINE=1): no test touches the network.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from harness import plugins, text
from harness_datasets import obama, poems
from harness.api import HarnessError
from harness.download import DataFile, DownloadError, fetch, git_blob_sha1, sha256_of

MIRROR = Path(os.environ.get("HARNESS_DATA_MIRROR") or
              Path(__file__).resolve().parents[2] / "shared" / "corpora")
# sha256 of the sorted test poems (24 tokens joined by spaces, one a line): pins the split
POEMS_TEST_SHA256 = "6505f35c2aa3b30336e9b7be6f30bcc3fe513a54c027a1027d2aba30827f558e"
OBAMA_STANDIN_TEST_SHA256 = "b46ed78118b49c4cbcf210c3dc315fe5b01edba15894a810ac25fc03e8e4b5f4"

POEM_LINES = [  # the first lines of shi.txt, plus a duplicate
    "秦 川 雄 帝 宅 ， 函 谷 壮 皇 居 。 绮 殿 千 寻 起 ， 离 宫 百 雉 余 。 ",
    "连 甍 遥 接 汉 ， 飞 观 迥 凌 虚 。 云 日 隐 层 阙 ， 风 烟 出 绮 疏 。 ",
    "岩 廊 罢 机 务 ， 崇 文 聊 驻 辇 。 玉 匣 启 龙 图 ， 金 绳 披 凤 篆 。 ",
    "秦 川 雄 帝 宅 ， 函 谷 壮 皇 居 。 绮 殿 千 寻 起 ， 离 宫 百 雉 余 。 ",
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    poems._poems.cache_clear()
    obama._obama.cache_clear()
    yield
    poems._poems.cache_clear()
    obama._obama.cache_clear()


@pytest.fixture
def real_mirror() -> Path:
    if not (MIRROR / poems.POEMS.path).exists() or not (MIRROR / obama.OBAMA_STANDIN.path).exists():
        pytest.skip(f"no corpus mirror at {MIRROR}")
    return MIRROR


def _put(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# --- git blob ids and offline fetch ------------------------------------------------------

def test_git_blob_sha1_matches_git_hash_object():
    # values printed by `printf ... | git hash-object --stdin`
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_sha1(b"SeqGAN\0bytes") == "ae0a959b750ecf8f4d2e137d3c1621d5b2f10ce3"


def test_fetch_verifies_by_git_blob_when_no_sha256(tmp_path):
    path = _put(tmp_path, "x/input.txt", b"hello\n")
    good = DataFile("x/input.txt", "", git_blob_sha1="ce013625030ba8dba906f756967f9e9ca394464a")
    assert fetch(good, tmp_path) == path
    bad = DataFile("x/input.txt", "", git_blob_sha1="0" * 40)
    with pytest.raises(HarnessError, match="git blob id") as caught:
        fetch(bad, tmp_path)
    assert not isinstance(caught.value, DownloadError)  # a bad copy is not "unavailable"


def test_offline_fetch_raises_download_error(tmp_path):
    missing = DataFile("x/absent.txt", "", url="https://example.invalid/absent.txt",
                       git_blob_sha1="0" * 40)
    with pytest.raises(DownloadError, match="HARNESS_OFFLINE"):
        fetch(missing, tmp_path)


def test_a_failed_download_names_what_the_data_mirror_lacks(tmp_path, monkeypatch):
    import torch.hub

    def unreachable(url, dest, progress=True):
        raise OSError("Name or service not known")

    monkeypatch.delenv("HARNESS_OFFLINE", raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    missing = DataFile("x/absent.txt", "", url="https://example.invalid/absent.txt",
                       git_blob_sha1="0" * 40)
    with pytest.raises(DownloadError, match="the data mirror has no .*x/absent.txt"):
        fetch(missing, tmp_path / "mirror")
    monkeypatch.delenv("HARNESS_DATA_MIRROR", raising=False)
    with pytest.raises(DownloadError, match="without internet, point --data-mirror"):
        fetch(missing)


# --- poems -------------------------------------------------------------------------------

def test_parse_poems_reads_the_layout():
    parsed = poems.parse_poems("\n".join(POEM_LINES) + "\n", "shi.txt")
    assert len(parsed) == 4 and all(len(p) == 24 for p in parsed)
    assert parsed[0][:6] == ["秦", "川", "雄", "帝", "宅", "，"]


@pytest.mark.parametrize("bad", [
    "秦 川 雄 帝 宅 ， 函 谷 壮 皇 居 。 绮 殿 千 寻 起 ， 离 宫 百 雉 余",       # 23 tokens
    "秦 川 雄 帝 宅 。 函 谷 壮 皇 居 ， 绮 殿 千 寻 起 ， 离 宫 百 雉 余 。",    # marks swapped
    "秦川 川 雄 帝 宅 ， 函 谷 壮 皇 居 。 绮 殿 千 寻 起 ， 离 宫 百 雉 余 。",   # two chars
    "秦 川 雄 帝 ， ， 函 谷 壮 皇 居 。 绮 殿 千 寻 起 ， 离 宫 百 雉 余 。",    # mark as char
    "",                                                                          # blank line
])
def test_malformed_poem_line_names_file_and_line(bad):
    with pytest.raises(HarnessError, match=r"shi\.txt, line 3"):
        poems.parse_poems("\n".join(POEM_LINES[:2] + [bad] + POEM_LINES[2:]), "shi.txt")


def test_empty_poem_file():
    with pytest.raises(HarnessError, match="shi.txt.*empty"):
        poems.parse_poems("", "shi.txt")


def test_tiny_poems_corpus():
    corpus = poems.poems_corpus("\n".join(POEM_LINES * 5) + "\n", "shi.txt")
    assert corpus.seq_len == 20 and corpus.vocab[0] == text.EOS and corpus.start_token == 0
    assert "，" not in corpus.vocab and "。" not in corpus.vocab
    assert len(corpus.train) + len(corpus.test) == 20 and len(corpus.test) >= 1
    assert corpus.train.dtype == torch.long and corpus.info["punctuation"] is False
    assert poems.format_poem(corpus.vocab[i] for i in range(1, 21)).count("\n") == 3
    with_marks = poems.poems_corpus("\n".join(POEM_LINES * 5) + "\n", "shi.txt", punctuation=True)
    assert with_marks.seq_len == 24 and "，" in with_marks.vocab
    assert with_marks.info["test_sha256"] == corpus.info["test_sha256"]  # same split
    # a duplicate poem sits on one side only
    rows = {tuple(r) for r in corpus.train.tolist()}
    assert not any(tuple(r) in rows for r in corpus.test.tolist())


def test_format_poem():
    chars = list("秦川雄帝宅函谷壮皇居绮殿千寻起离宫百雉余")
    assert poems.format_poem(chars) == "秦川雄帝宅，\n函谷壮皇居。\n绮殿千寻起，\n离宫百雉余。"
    vocab = ["<eos>"] + chars
    assert poems.format_poem(torch.arange(1, 21), vocab) == poems.format_poem(chars)
    assert poems.format_poem(POEM_LINES[0].split()) == poems.format_poem(chars)
    with pytest.raises(ValueError):
        poems.format_poem(chars[:7])


# --- obama -------------------------------------------------------------------------------

def test_tokenize():
    assert text.tokenize('America\'s future -- and, "Yes" we can!') == [
        "america's", "future", "-", "-", "and", ",", '"', "yes", '"', "we", "can", "!"]


def test_vocab_cap_unk_padding_and_cutting():
    vocab = text.build_vocab([["b", "a", "a", "c"], ["a", "b", "d"]], cap=4)
    assert vocab == ["<eos>", "<unk>", "a", "b"]  # c and d tie at 1: over the cap
    index = {tok: i for i, tok in enumerate(vocab)}
    assert text.encode(["a", "c", "b"], index, 5) == [2, 1, 3, 0, 0]   # <unk>, <eos>, pad
    assert text.encode(["a", "b", "a", "b"], index, 3) == [2, 3, 2]    # cut: no <eos>
    assert text.encode(["a", "b", "a"], index, 3) == [2, 3, 2]
    assert text.build_vocab([["x", "y", "x"]], cap=10) == ["<eos>", "<unk>", "x", "y"]


def test_tiny_obama_corpus_vocab_from_training_only():
    lines = [f"Speech number {i}, about jobs." for i in range(40)] + ["Thank you."] * 5
    lines += ["Zebras, zebras everywhere!"]
    corpus = obama.obama_corpus("\n\n".join(lines) + "\n", "tiny.txt", vocab_cap=12, max_len=6)
    train_words = {corpus.vocab[i] for i in corpus.train.unique().tolist()}
    assert set(corpus.vocab) <= train_words | {"<eos>", "<unk>"}
    assert corpus.vocab_size == 12 and corpus.seq_len == 6
    assert corpus.vocab[:2] == ["<eos>", "<unk>"]
    assert corpus.info["n_paragraphs"] == 46 and corpus.info["n_distinct"] == 42
    thanks = [text.encode(["thank", "you", "."], {t: i for i, t in enumerate(corpus.vocab)}, 6)]
    assert thanks[0][3:] == [0, 0, 0]
    in_test = any(r == thanks[0] for r in corpus.test.tolist())
    in_train = any(r == thanks[0] for r in corpus.train.tolist())
    assert in_test != in_train                       # all five copies on one side
    assert 0 < corpus.info["unk_rate_train"] < 1 and "unk_rate_test" in corpus.info
    with pytest.raises(HarnessError, match="tiny.txt.*empty"):
        obama.obama_corpus("\n  \n", "tiny.txt")


def test_split_keeps_duplicates_together_and_is_stable():
    texts = [f"p{i % 70}" for i in range(200)] + [f"q{i}" for i in range(300)]
    train, test = text.split_by_text(texts)
    assert sorted(train + test) == list(range(500))
    assert 45 <= len(test) <= 55
    sides = defaultdict(set)
    for side, idx in (("train", train), ("test", test)):
        for i in idx:
            sides[texts[i]].add(side)
    assert all(len(s) == 1 for s in sides.values())
    assert text.split_by_text(texts) == (train, test)
    assert text.split_by_text(texts, seed=1) != (train, test)


def test_format_text():
    vocab = ["<eos>", "<unk>", "we", "can", ",", ".", "america's", '"', "yes", "-", "well",
             "being", "$", "5", "?"]
    ids = [7, 8, 2, 3, 7, 4, 10, 9, 11, 4, 6, 9, 9, 12, 13, 14, 5, 0, 2, 0]
    assert text.format_text(ids, vocab) == \
        '"yes we can", well-being, america\'s -- $5?.'
    assert text.format_text(torch.tensor([2, 1, 0, 0]), vocab) == "we <unk>"
    assert text.format_text(["we", "can", "<eos>", "we"]) == "we can"


def test_obama_falls_back_to_the_stand_in(tmp_path, monkeypatch, caplog):
    content = "First paragraph, here.\nSecond one!\n" * 10 + "Third.\n"
    _put(tmp_path, obama.OBAMA_STANDIN.path, content)
    digest = hashlib.sha256(content.encode()).hexdigest()
    monkeypatch.setattr(obama, "OBAMA_STANDIN", DataFile(obama.OBAMA_STANDIN.path, digest))
    with caplog.at_level(logging.DEBUG, logger="harness"):
        corpus = obama.load_obama("default", 1, mirror=tmp_path)
    # Not logged here: every process that loads the corpus (each worker of --jobs) would
    # say it again; the command that plans the runs says it once.
    assert not caplog.records
    assert corpus.info["variant"] == obama.STANDIN_VARIANT
    assert "NOT the paper's" in corpus.warning  # said by the command, once (below)
    assert f"save {obama.OBAMA_ORIGINAL.url} as {tmp_path / obama.OBAMA_ORIGINAL.path}" in \
        corpus.warning  # the mirror in use lacks the file: it is what to complete
    assert corpus.info["n_paragraphs"] == 21
    assert obama.load_obama("default", 2, mirror=tmp_path) is corpus  # cached; seed-independent
    with pytest.raises(DownloadError):
        obama.load_obama("default", 1, mirror=tmp_path, original=True)


@pytest.mark.parametrize("mirror", ["/data/corpora", None])
@pytest.mark.parametrize("offline", [True, False])
def test_the_stand_in_warning_fits_the_situation(mirror, offline):
    """What is missing where, and the fix from there: a mirror that lacks the paper's file is
    completed (not named again as the thing to set); without one, one is named."""
    failed = DownloadError("could not download")
    failed.__cause__ = OSError("Name or service not known")
    said = obama.stand_in_warning((mirror, "/cache", offline), failed)
    wanted = obama.OBAMA_ORIGINAL.path
    assert "NOT the paper's data set" in said
    assert ("HARNESS_OFFLINE is set" in said) == offline
    assert ("downloading it failed (Name or service not known)" in said) == (not offline)
    if mirror:
        assert f"the data mirror {mirror} and the download cache have no {wanted}" in said
        assert said.endswith(f"as {mirror}/{wanted}") and "HARNESS_DATA_MIRROR" not in said
    else:
        assert "no data mirror is set" in said
        assert said.endswith(f"as DIR/{wanted} and set HARNESS_DATA_MIRROR=DIR")
        assert ("unset HARNESS_OFFLINE" in said) == offline


def test_obama_uses_the_original_when_present(tmp_path, monkeypatch):
    original = b"Paragraph one, about hope.\n\nParagraph two.\nThree?\n" * 4
    _put(tmp_path, obama.OBAMA_ORIGINAL.path, original)
    blob = git_blob_sha1(original)
    monkeypatch.setattr(obama, "OBAMA_ORIGINAL",
                        DataFile(obama.OBAMA_ORIGINAL.path, "", git_blob_sha1=blob))
    corpus = obama.load_obama("default", 0, mirror=tmp_path)
    assert corpus.info["variant"] == obama.ORIGINAL_VARIANT
    assert corpus.info["n_paragraphs"] == 12  # non-empty lines
    assert corpus.info["sha256"] == hashlib.sha256(original).hexdigest()
    obama._obama.cache_clear()
    monkeypatch.setattr(obama, "OBAMA_ORIGINAL",
                        DataFile(obama.OBAMA_ORIGINAL.path, "", git_blob_sha1="0" * 40))
    with pytest.raises(HarnessError, match="git blob id"):  # a bad copy: no silent fallback
        obama.load_obama("default", 0, mirror=tmp_path)


# --- the real corpora (mirror) -----------------------------------------------------------

def _poem_lines(corpus) -> list[str]:
    """The test poems as the file writes them (24 tokens), from the tensor."""
    lines = []
    for row in corpus.test.tolist():
        chars = [corpus.vocab[i] for i in row]
        lines.append(" ".join(" ".join(chars[5 * k:5 * k + 5]) + " " + mark
                              for k, mark in enumerate(poems.POEM_LAYOUT)))
    return lines


@pytest.mark.slow
def test_real_poems(real_mirror):
    corpus = poems.load_poems("default", 0, mirror=real_mirror)
    assert len(corpus.train) + len(corpus.test) == 16_394
    assert (len(corpus.train), len(corpus.test)) == (14_755, 1_639)
    assert corpus.seq_len == 20 and corpus.vocab_size == 4_770 == len(corpus.vocab)
    assert corpus.train.dtype == torch.long and int(corpus.train.max()) < corpus.vocab_size
    assert not (corpus.train == 0).any() and corpus.eval_samples == 2_000
    assert text.lines_sha256(_poem_lines(corpus)) == POEMS_TEST_SHA256
    assert corpus.info["test_sha256"] == POEMS_TEST_SHA256
    assert corpus.info["sha256"] == sha256_of(real_mirror / poems.POEMS.path)
    assert corpus.info["test_rows_also_in_train"] == 0
    shown = poems.format_poem(corpus.train[0], corpus.vocab).split("\n")
    assert shown == ["秦川雄帝宅，", "函谷壮皇居。", "绮殿千寻起，", "离宫百雉余。"]
    for row in corpus.test[:50]:
        lines = poems.format_poem(row, corpus.vocab).split("\n")
        assert [len(line) for line in lines] == [6] * 4
        assert [line[-1] for line in lines] == list(poems.POEM_LAYOUT)
    marks = poems.load_poems("default", 0, mirror=real_mirror, punctuation=True)
    assert marks.seq_len == 24 and marks.vocab_size == 4_772
    assert marks.info["test_sha256"] == POEMS_TEST_SHA256


def test_real_obama_stand_in(real_mirror):
    corpus = obama.load_obama("default", 0, mirror=real_mirror)
    assert corpus.info["variant"] == obama.STANDIN_VARIANT == "CoPS stand-in (not the paper's set)"
    assert len(corpus.train) + len(corpus.test) == 2_754
    assert (len(corpus.train), len(corpus.test)) == (2_479, 275)
    assert corpus.seq_len == 40 and corpus.vocab_size == 5_000
    assert corpus.info["test_sha256"] == OBAMA_STANDIN_TEST_SHA256
    assert 0.01 < corpus.info["unk_rate_test"] < 0.06
    assert corpus.info["unk_rate_train"] < corpus.info["unk_rate_test"]
    assert text.unk_rate(corpus.test) == pytest.approx(corpus.info["unk_rate_test"], abs=1e-5)
    assert text.format_text(corpus.train[0], corpus.vocab).startswith(
        "if there is anyone out there who still doubts that america is a place where")


def test_registered(real_mirror, monkeypatch):
    datasets = plugins.registry().datasets
    assert {"poems", "obama"} <= set(datasets)
    assert datasets["poems"].load(profile="default", seed=3, mirror=str(real_mirror)).name == "poems"
    monkeypatch.setenv("HARNESS_DATA_MIRROR", str(real_mirror))  # the mirror from the environment
    speeches = datasets["obama"].load(profile="paper", seed=3)
    assert speeches.name == "obama" and speeches.info["variant"] == obama.STANDIN_VARIANT


def test_a_corpus_warning_is_said_once_per_command(tiny_dataset, monkeypatch, caplog, tmp_path):
    """Every seed's corpus (and every worker that loads one) carries the warning; the
    command that plans the runs says it once."""
    from harness import plan, preflight

    real_load = preflight.load_corpus

    def with_warning(*args, **kwargs):
        corpus = real_load(*args, **kwargs)
        corpus.warning = "the paper's data is not available; using a stand-in"
        return corpus

    monkeypatch.setattr(preflight, "load_corpus", with_warning)
    specs = plan.plan(["mle"], ["tiny"], [0, 1, 2], "default")
    with caplog.at_level(logging.WARNING, logger="harness"):
        preflight.preflight(specs, plan.RunOptions(run_id="w", results=str(tmp_path)))
    assert caplog.text.count("using a stand-in") == 1
