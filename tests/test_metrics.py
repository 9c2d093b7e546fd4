"""harness.metrics: fast BLEU / self-BLEU must equal nltk's sentence_bleu (method1)."""
import random

import numpy as np
import pytest

from harness.metrics import BleuReferences, bleu, self_bleu

TOL = 1e-9


def _nltk():
    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    return bleu_score.sentence_bleu, bleu_score.SmoothingFunction().method1


def _nltk_scores(hypotheses, references, n):
    sentence_bleu, method1 = _nltk()
    return [sentence_bleu(references, h, weights=(1 / n,) * n, smoothing_function=method1)
            for h in hypotheses]


def _random_sentences(rng, count, lo, hi, vocab):
    return [[rng.choice(vocab) for _ in range(rng.randint(lo, hi))] for _ in range(count)]


@pytest.fixture(scope="module")
def corpus():
    """Small vocabulary (so 4- and 5-grams do match), varied lengths, with
    plenty of very short hypotheses and an empty one of each kind."""
    rng = random.Random(1234)
    vocab = list(range(7))
    refs = _random_sentences(rng, 60, 0, 18, vocab) + [[], [3], [1, 2]]
    hyps = (_random_sentences(rng, 100, 1, 3, vocab)
            + _random_sentences(rng, 150, 1, 22, vocab)
            + [[], [99], [99, 98, 97, 96, 95], [0, 99, 0, 99]]   # unseen tokens
            + [list(refs[0]), list(refs[5])])                      # exact copies
    return hyps, refs


@pytest.mark.parametrize("max_n", [2, 3, 4])
def test_unsmoothed_bleu_matches_nltk(corpus, max_n):
    import warnings

    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    hyps, refs = corpus
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about every zero count
        expected = [bleu_score.sentence_bleu(refs, h, weights=(1 / max_n,) * max_n)
                    for h in hyps if h]
    ours = BleuReferences(refs, max_n).sentence_scores([h for h in hyps if h], rule="strict")
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("max_n", [1, 2, 3, 4, 5])
def test_bleu_matches_nltk(corpus, max_n):
    hyps, refs = corpus
    expected = _nltk_scores(hyps, refs, max_n)
    ours = BleuReferences(refs, max_n).sentence_scores(hyps)
    assert ours.shape == (len(hyps),)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOL)
    assert bleu(hyps, refs, max_n) == pytest.approx(float(np.mean(expected)), abs=TOL)


def test_lower_orders_reuse_tables(corpus):
    hyps, refs = corpus
    table = BleuReferences(refs, 5)
    for n in (1, 2, 3, 4):
        np.testing.assert_allclose(table.sentence_scores(hyps, max_n=n),
                                   BleuReferences(refs, n).sentence_scores(hyps),
                                   rtol=0, atol=1e-15)
    with pytest.raises(ValueError):
        table.sentence_scores(hyps, max_n=6)


def test_string_tokens_and_edge_cases():
    """nltk's docstring example plus ties in the closest reference length."""
    ref1 = "It is a guide to action that ensures that the military will forever heed Party commands".split()
    ref2 = "It is the guiding principle which guarantees the military forces always being under the command of the Party".split()
    ref3 = "It is the practical guide for the army always to heed the directions of the party".split()
    hyp1 = "It is a guide to action which ensures that the military always obeys the commands of the party".split()
    hyp2 = "It is to insure the troops forever hearing the activity guidebook that party direct".split()
    refs = [ref1, ref2, ref3]
    tie_refs = [["a"] * 13, ["a"] * 11, ["b", "a"] * 3]    # hyp of 12: tie 11/13 -> 11
    hyps = [hyp1, hyp2, ["the"], ["the", "the", "the"], ["a"] * 12, ["a"] * 7, []]
    for references in (refs, tie_refs, refs + tie_refs):
        for n in (2, 4, 5):
            np.testing.assert_allclose(BleuReferences(references, n).sentence_scores(hyps),
                                       _nltk_scores(hyps, references, n), rtol=0, atol=TOL)
    assert BleuReferences(refs, 4).sentence_scores([hyp2])[0] == pytest.approx(0.0370, abs=1e-4)


def test_array_and_tensor_inputs(corpus):
    hyps, refs = corpus
    fixed = [h for h in hyps if len(h) == 10]
    assert fixed
    expected = BleuReferences(refs, 4).sentence_scores(fixed)
    table = BleuReferences([np.asarray(r, dtype=np.int64) for r in refs], 4)
    np.testing.assert_allclose(table.sentence_scores(np.asarray(fixed)), expected, atol=1e-15)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(table.sentence_scores(torch.tensor(fixed)), expected, atol=1e-15)


def test_token_kinds_compare_like_nltk(corpus):
    """Tokens are interned with nltk's equality (hash + ==): a token of another kind matches
    when == says so (1.0 == 1), not when it does not ("1" != 1); string tokens score like
    the ids they spell, and ints beyond int64 work."""
    hyps, refs = corpus
    mixed = [[float(t) if i % 3 == 0 else str(t) if i % 3 == 1 else t for i, t in enumerate(h)]
             for h in hyps]
    table = BleuReferences(refs, 4)
    np.testing.assert_allclose(table.sentence_scores(mixed), _nltk_scores(mixed, refs, 4),
                               rtol=0, atol=TOL)
    as_text = [[str(t) for t in r] for r in refs]
    np.testing.assert_array_equal(BleuReferences(as_text, 4).sentence_scores(
        [[str(t) for t in h] for h in hyps]), table.sentence_scores(hyps))
    huge = [[t + 2 ** 70 for t in r] for r in refs]
    shifted = [[t + 2 ** 70 for t in h] for h in hyps]
    np.testing.assert_array_equal(BleuReferences(huge, 4).sentence_scores(shifted),
                                  table.sentence_scores(hyps))
    assert BleuReferences([[], []], 2).sentence_scores([[1, 2]])[0] == 0.0


def test_agrees_with_sacrebleu_floor_where_it_applies():
    """sacrebleu's 'floor' smoothing is method1 as long as the hypothesis has
    at least max_n tokens (shorter ones are where the two differ)."""
    sacrebleu = pytest.importorskip("sacrebleu")
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(6)]
    refs = _random_sentences(rng, 20, 1, 15, vocab)
    hyps = _random_sentences(rng, 30, 4, 15, vocab)
    metric = sacrebleu.metrics.BLEU(tokenize="none", smooth_method="floor", smooth_value=0.1,
                                    effective_order=False, max_ngram_order=4)
    ref_strs = [" ".join(r) for r in refs]
    expected = [metric.sentence_score(" ".join(h), ref_strs).score / 100 for h in hyps]
    np.testing.assert_allclose(BleuReferences(refs, 4).sentence_scores(hyps), expected,
                               rtol=0, atol=1e-12)


def test_identical_and_disjoint():
    rng = random.Random(3)
    sents = _random_sentences(rng, 50, 5, 20, list(range(30)))  # >= max_n tokens
    for n in (2, 3, 4, 5):
        assert bleu(sents, sents, n) == pytest.approx(1.0, abs=1e-12)
    # nltk semantics: a copy shorter than n still gets p_n = 0.1 / 1 < 1.
    assert bleu([[1, 2, 3]], [[1, 2, 3]], 4) == pytest.approx(0.1 ** 0.25, abs=1e-12)
    other = _random_sentences(rng, 50, 5, 20, list(range(100, 130)))
    assert bleu(other, sents, 4) < 0.01
    assert bleu(other, sents, 2) < 0.01


def test_scores_in_unit_interval(corpus):
    hyps, refs = corpus
    for n in (1, 2, 4, 5):
        scores = BleuReferences(refs, n).sentence_scores(hyps)
        assert np.all(scores >= 0) and np.all(scores <= 1)


def test_input_validation():
    with pytest.raises(ValueError):
        BleuReferences([], 4)
    with pytest.raises(ValueError):
        BleuReferences([[1, 2]], 0)
    with pytest.raises(ValueError):
        bleu([], [[1, 2]], 4)
    with pytest.raises(ValueError):
        self_bleu([[1, 2]], 4)
    assert len(BleuReferences([[1, 2]], 2).sentence_scores([])) == 0


def _brute_self_bleu(samples, n, indices=None):
    indices = range(len(samples)) if indices is None else indices
    scores = [_nltk_scores([samples[i]], samples[:i] + samples[i + 1:], n)[0] for i in indices]
    return float(np.mean(scores))


@pytest.fixture(scope="module")
def samples():
    """~100 samples with duplicates (including of a sample whose length is
    otherwise unique) and very short ones."""
    rng = random.Random(99)
    vocab = list(range(8))
    base = _random_sentences(rng, 80, 1, 16, vocab)
    base += [[5] * 30]                         # a length no other sample has...
    dups = [list(base[i]) for i in (0, 3, 3, 10, 42, 80)]  # ...and its duplicate
    singles = [[0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 7]]
    out = base + dups + singles + _random_sentences(rng, 12, 1, 3, vocab)
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("max_n", [2, 3, 4, 5])
def test_self_bleu_matches_brute_force(samples, max_n):
    _nltk()
    assert self_bleu(samples, max_n) == pytest.approx(_brute_self_bleu(samples, max_n), abs=TOL)


@pytest.mark.parametrize("n_hypotheses,seed", [(10, 0), (37, 5), (1, 1)])
def test_self_bleu_subset(samples, n_hypotheses, seed):
    _nltk()
    chosen = np.sort(np.random.default_rng(seed).choice(len(samples), n_hypotheses, replace=False))
    ours = self_bleu(samples, 4, n_hypotheses=n_hypotheses, seed=seed)
    assert ours == pytest.approx(_brute_self_bleu(samples, 4, chosen), abs=TOL)
    # Deterministic for a seed; n_hypotheses >= len(samples) means all of them.
    assert ours == self_bleu(samples, 4, n_hypotheses=n_hypotheses, seed=seed)
    assert self_bleu(samples, 4, n_hypotheses=10 ** 6) == self_bleu(samples, 4)


def test_self_bleu_same_for_ids_and_strings(samples):
    assert self_bleu([[str(t) for t in s] for s in samples], 4) == self_bleu(samples, 4)


def test_duplicates_count_as_references():
    a, b = [1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]
    assert self_bleu([a, a], 4) == pytest.approx(1.0)
    assert self_bleu([a, a, b], 4) == pytest.approx(_brute_self_bleu([a, a, b], 4), abs=TOL)


def test_sample_never_matches_itself():
    """N sentences over pairwise disjoint vocabularies: self-BLEU ~ 0 (Texygen,
    which kept the sample among its own references, would give 1.0)."""
    sents = [[1000 * i + j for j in range(15)] for i in range(40)]
    assert self_bleu(sents, 4) == 0.0
    assert self_bleu(sents, 2, n_hypotheses=5) == 0.0


# --- nltk 3.2's unsmoothed BLEU (the SeqGAN authors' PG-BLEU reward) ---------------------

def _nltk_3_2_sentence_bleu(references, hypothesis, max_n):
    """nltk 3.2.1's sentence_bleu without a smoothing function, transcribed from its source
    (nltk/translate/bleu_score.py, corpus_bleu): 0 when no unigram matches; otherwise
    ``s = (w * math.log(p_i) for w, p_i in zip(weights, p_n) if p_i.numerator != 0)``, so an
    order without a match is left out and the weights are not renormalised."""
    import math
    from collections import Counter
    from fractions import Fraction

    weights = (1 / max_n,) * max_n
    p_n = []
    for n in range(1, max_n + 1):
        counts = Counter(tuple(hypothesis[i:i + n]) for i in range(len(hypothesis) - n + 1))
        max_counts = Counter()
        for reference in references:
            ref_counts = Counter(tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
            for gram in counts:
                max_counts[gram] = max(max_counts[gram], ref_counts[gram])
        clipped = sum(min(count, max_counts[gram]) for gram, count in counts.items())
        p_n.append(Fraction(clipped, max(1, sum(counts.values())), _normalize=False))
    if p_n[0].numerator == 0:
        return 0.0
    hyp_len = len(hypothesis)
    ref_len = min((len(r) for r in references), key=lambda r: (abs(r - hyp_len), r))
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(math.fsum(w * math.log(p) for w, p in zip(weights, p_n)
                                   if p.numerator != 0))


def test_nltk_3_2_rule_on_hand_made_cases():
    # p1 = 2/4, no bigram or trigram matches: BLEU-3 = 0.5 ** (1/3) (nltk 3.2.1 gives 0.7937).
    one = BleuReferences([[10, 11, 0, 12]], 3)
    assert one.sentence_scores([[0, 10, 20, 21]], rule="nltk-3.2")[0] == pytest.approx(
        0.5 ** (1 / 3), abs=1e-12)
    assert one.sentence_scores([[0, 10, 20, 21]], rule="strict")[0] == 0.0
    # p1 = 10/20, p2 = 1/19, p3 = 0: (0.5 / 19) ** (1/3) = 0.2974 (nltk 3.2.1 gives 0.2974).
    reference = [0, 1, 100, 2, 101, 3, 102, 4, 103, 5, 104, 6, 105, 7, 106, 8, 107, 9, 108, 109]
    twenty = BleuReferences([reference], 3)
    assert twenty.sentence_scores([list(range(20))], rule="nltk-3.2")[0] == pytest.approx(
        (0.5 / 19) ** (1 / 3), abs=1e-12)
    # No unigram matches: 0 under every rule; every order matches: the rules agree.
    assert twenty.sentence_scores([[200] * 20], rule="nltk-3.2")[0] == 0.0
    assert twenty.sentence_scores([reference], rule="nltk-3.2")[0] == pytest.approx(1.0)


@pytest.mark.parametrize("max_n", [2, 3, 4])
def test_nltk_3_2_rule_matches_its_source(corpus, max_n):
    hyps, refs = corpus
    hyps = [h for h in hyps if h]
    expected = [_nltk_3_2_sentence_bleu(refs, h, max_n) for h in hyps]
    ours = BleuReferences(refs, max_n).sentence_scores(hyps, rule="nltk-3.2")
    np.testing.assert_allclose(ours, expected, rtol=0, atol=TOL)
