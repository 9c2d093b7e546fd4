"""harness.quality: each vectorised metric against a plain implementation of its
paper's definition (Counters over tuples) and against hand-computed values."""
from collections import Counter
from math import prod, sqrt

import numpy as np
import pytest

from harness.quality import bwd_bleu, distinct_n, fb_bleu, ms_jaccard, train_copy

TOL = 1e-12


# --- plain implementations of the definitions --------------------------------

def _ngrams(sentence, n):
    return [tuple(sentence[i:i + n]) for i in range(len(sentence) - n + 1)]


def naive_ms_jaccard(generated, reference, max_n=4, min_n=1):
    """Montahaei et al. 2019: per order, n-gram counts / number of sentences,
    J_n = sum min / sum max over the union; geometric mean over the orders."""
    ratios = []
    for n in range(min_n, max_n + 1):
        c_gen = Counter(g for s in generated for g in _ngrams(s, n))
        c_ref = Counter(g for s in reference for g in _ngrams(s, n))
        lo = hi = 0.0
        for g in set(c_gen) | set(c_ref):
            x, y = c_gen[g] / len(generated), c_ref[g] / len(reference)
            lo += min(x, y)
            hi += max(x, y)
        ratios.append(lo / hi if hi else 1.0)
    return prod(ratios) ** (1 / len(ratios))


def naive_bwd_bleu(generated, reference, max_n):
    """Shi et al. 2018: each reference sentence scored by nltk sentence BLEU
    (method1) with all generated sentences as its references, averaged."""
    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    method1 = bleu_score.SmoothingFunction().method1
    return float(np.mean([bleu_score.sentence_bleu(generated, r, weights=(1 / max_n,) * max_n,
                                                   smoothing_function=method1)
                          for r in reference]))


def naive_distinct_n(sentences, n, per_token=False):
    """Li et al. 2016: distinct n-grams over all sentences / total n-grams (or tokens)."""
    grams = [g for s in sentences for g in _ngrams(s, n)]
    total = sum(len(s) for s in sentences) if per_token else len(grams)
    return len(set(grams)) / total if total else 0.0


def naive_train_copy(generated, train):
    return sum(any(list(s) == list(t) for t in train) for s in generated) / len(generated)


# --- cases --------------------------------------------------------------------

# Duplicates, empty sentences, sentences shorter than n, tokens only on one side.
HAND_GEN = [[1, 2, 3, 4], [1, 2, 3, 4], [], [5], [1, 2], [2, 1, 2, 1, 2], [9, 9, 9],
            [1, 2, 3, 4, 5, 6]]
HAND_REF = [[1, 2, 3], [], [], [4, 3, 2, 1], [1, 2, 3, 4], [7, 8], [2, 1, 2], [6]]


def _random_case(seed, vocab, n_gen=40, n_ref=30, max_len=12):
    rng = np.random.default_rng(seed)
    make = lambda count: [rng.integers(0, vocab, rng.integers(0, max_len + 1)).tolist()
                          for _ in range(count)]
    gen, ref = make(n_gen), make(n_ref)
    gen += [list(ref[0]), list(ref[0])]  # some exact copies
    return gen, ref


RANDOM = [_random_case(seed, vocab) for seed, vocab in [(0, 3), (1, 6), (2, 20)]]
CASES = [(HAND_GEN, HAND_REF)] + RANDOM


# --- MS-Jaccard -----------------------------------------------------------------

@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("min_n,max_n", [(1, 1), (1, 2), (1, 4), (2, 4), (3, 5)])
def test_ms_jaccard_matches_definition(case, min_n, max_n):
    gen, ref = CASES[case]
    for a, b in [(gen, ref), (ref, gen)]:
        expected = naive_ms_jaccard(a, b, max_n, min_n)
        assert abs(ms_jaccard(a, b, max_n, min_n) - expected) <= TOL


def test_ms_jaccard_hand_values():
    # G = {1 2 1 2}, R = {1 2, 3}.  Unigrams: G 1:2 2:2; R 1:.5 2:.5 3:.5
    # -> J1 = (.5+.5)/(2+2+.5) = 2/9.  Bigrams: G (1,2):2 (2,1):1; R (1,2):.5
    # -> J2 = .5/3 = 1/6.  MS-Jaccard-2 = sqrt(2/9 * 1/6) = 1/sqrt(27).
    gen, ref = [[1, 2, 1, 2]], [[1, 2], [3]]
    assert abs(ms_jaccard(gen, ref, max_n=1) - 2 / 9) <= TOL
    assert abs(ms_jaccard(gen, ref, max_n=2, min_n=2) - 1 / 6) <= TOL
    assert abs(ms_jaccard(gen, ref, max_n=2) - 1 / sqrt(27)) <= TOL
    # The authors' own example (their __main__): refs {a a}, samples {a b} -> 1/3.
    assert abs(ms_jaccard([[7, 8]], [[7, 7]], max_n=1) - 1 / 3) <= TOL
    assert ms_jaccard([[7, 7]], [[7, 7]], max_n=1) == 1.0
    # Normalised by the number of sentences: repeating a whole set changes nothing.
    assert abs(ms_jaccard(HAND_GEN * 3, HAND_REF) - ms_jaccard(HAND_GEN, HAND_REF)) <= TOL
    # Nothing shared -> 0; no n-grams of any order on either side -> 1 (0/0 convention).
    assert ms_jaccard([[1, 2, 3]], [[4, 5, 6]], max_n=2) == 0.0
    assert ms_jaccard([[1]], [[1], []], max_n=3, min_n=2) == 1.0


def test_ms_jaccard_accepts_arrays_and_rejects_bad_input():
    gen, ref = RANDOM[1]
    fixed = np.array([s[:3] for s in gen if len(s) >= 3])
    assert abs(ms_jaccard(fixed, ref) - naive_ms_jaccard(fixed.tolist(), ref)) <= TOL
    with pytest.raises(ValueError):
        ms_jaccard([], ref)
    with pytest.raises(ValueError):
        ms_jaccard(gen, ref, max_n=2, min_n=3)


# --- backward BLEU --------------------------------------------------------------

@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("max_n", [1, 2, 4])
def test_bwd_bleu_matches_nltk(case, max_n):
    gen, ref = CASES[case]
    assert abs(bwd_bleu(gen, ref, max_n) - naive_bwd_bleu(gen, ref, max_n)) <= TOL


def test_bwd_bleu_hand_values():
    # Hypothesis (held-out) [1 2 3] vs generated [1 2 4]: p1 = 2/3, p2 = 1/2,
    # equal lengths (BP = 1) -> BLEU-2 = sqrt(1/3).
    assert abs(bwd_bleu([[1, 2, 4]], [[1, 2, 3]], 2) - sqrt(1 / 3)) <= TOL
    # The generated set covers only the first held-out sentence; the empty one scores 0.
    assert abs(bwd_bleu([[1, 2, 4], [5, 6, 7]], [[1, 2, 3], [1, 2, 4], []], 2)
               - (sqrt(1 / 3) + 1.0 + 0.0) / 3) <= TOL


def test_fb_bleu():
    assert abs(fb_bleu(0.5, 0.25) - 1 / 3) <= TOL
    assert fb_bleu(0.0, 0.0) == 0.0
    assert fb_bleu(0.0, 0.7) == 0.0
    assert fb_bleu(0.4, 0.4) == pytest.approx(0.4, abs=TOL)


# --- distinct-n -----------------------------------------------------------------

@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("per_token", [False, True])
def test_distinct_n_matches_definition(case, n, per_token):
    gen, ref = CASES[case]
    for sents in (gen, ref):
        expected = naive_distinct_n(sents, n, per_token)
        assert abs(distinct_n(sents, n, per_token) - expected) <= TOL


def test_distinct_n_hand_values():
    sents = [[1, 2, 1, 2], [1, 2], [], [3]]
    # Bigrams (1,2) (2,1) (1,2) (1,2): 2 distinct of 4; 7 tokens in all.
    assert distinct_n(sents, 2) == 0.5
    assert distinct_n(sents, 2, per_token=True) == 2 / 7
    assert distinct_n(sents, 1) == 3 / 7
    assert distinct_n(sents, 5) == 0.0                # no 5-grams at all
    assert distinct_n([], 1) == 0.0 and distinct_n([[]], 2) == 0.0
    with pytest.raises(ValueError):
        distinct_n(sents, 0)


# --- train copy -----------------------------------------------------------------

@pytest.mark.parametrize("case", range(len(CASES)))
def test_train_copy_matches_definition(case):
    gen, ref = CASES[case]
    for a, b in [(gen, ref), (ref, gen), (gen, gen)]:
        assert abs(train_copy(a, b) - naive_train_copy(a, b)) <= TOL


def test_train_copy_hand_values():
    gen = [[1, 2], [1, 2], [3], [], [2, 1]]
    assert train_copy(gen, [[1, 2], [4], [1, 2, 3]]) == 2 / 5   # order and length matter
    assert train_copy(gen, [[1, 2], []]) == 3 / 5               # an empty sentence can be copied
    assert train_copy(gen, []) == 0.0
    assert train_copy(np.array([[1, 2], [3, 4]]), [[3, 4]]) == 0.5
    with pytest.raises(ValueError):
        train_copy([], [[1]])
