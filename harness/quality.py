"""Quality / diversity metrics over token-id sentences: MS-Jaccard, backward
BLEU and its harmonic mean with forward BLEU, distinct-n and train-copy rate.

Sentences are sequences of hashable tokens (normally ``list[list[int]]``, or a
2-D array / tensor), of any lengths, possibly empty.  The n-gram counting
reuses ``harness.metrics._NgramIndex`` (dense numpy ids for every n-gram), so
nothing loops in Python over n-grams.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from harness.metrics import BleuReferences, Sentence, _as_token_lists, _NgramIndex

__all__ = ["ms_jaccard", "bwd_bleu", "fb_bleu", "distinct_n", "train_copy", "fb_bleu_se",
           "distinct_n_jackknife", "ms_jaccard_jackknife"]


def ms_jaccard(generated: Iterable[Sentence], reference: Iterable[Sentence],
               max_n: int = 4, min_n: int = 1) -> float:
    """MS-Jaccard (Montahaei, Alihosseini & Soleymani Baghshah 2019, "Jointly
    Measuring Diversity and Quality in Text Generation Models", NeuralGen /
    arXiv:1904.03971, Sec. 3.1): for each order n, the multiset Jaccard
    J_n = sum_g min(c_g^G, c_g^R) / sum_g max(c_g^G, c_g^R), where c_g^S is
    the count of n-gram g in set S divided by the number of sentences in S
    (empty ones included); the score is the geometric mean of J_n over
    n = min_n..max_n.  The authors' MS-Jaccard-N is min_n=1, max_n=N.
    An order with no n-gram in either set (0/0) counts as J_n = 1.
    """
    # Authors' code, Danial-Alh/TextGenerationEvaluator metrics/ms_jaccard.py
    # (also metrics/multiset_distances.py): every n-gram Counter is divided
    # by the set size ("n_counter[k] /= samples_size", samples_size =
    # len(samples)); per order "sample_ngrams[i] & self.ref_ngrams[i]  #
    # intersection:  min(c[x], d[x])" and "... | ...  # union:  max(c[x],
    # d[x])", J_n = sum(intersection) / sum(union); the reported score for
    # n is np.power(prod(J[:n]), 1/n), i.e. orders 1..n ("jaccard_value[:n]"
    # in the later MultisetDistances.get_jaccard_score).
    gen, ref = _as_token_lists(generated), _as_token_lists(reference)
    if not gen or not ref:
        raise ValueError("MS-Jaccard needs at least one generated and one reference sentence")
    if not 1 <= min_n <= max_n:
        raise ValueError(f"need 1 <= min_n <= max_n, got min_n={min_n}, max_n={max_n}")
    index = _NgramIndex(gen + ref, max_n)
    n_gen, n_ref = len(gen), len(ref)
    ratios = []
    for n in range(min_n, max_n + 1):
        c_gen, c_ref = _counts_by_side(index, n, n_gen)
        ratios.append(_multiset_jaccard(c_gen, c_ref, n_gen, n_ref))
    return float(np.prod(ratios) ** (1.0 / len(ratios)))


def _counts_by_side(index: _NgramIndex, n: int, n_gen: int) -> tuple[np.ndarray, np.ndarray]:
    """Each n-gram's count over the generated sentences (the index's first ``n_gen``) and
    over the references."""
    size = max(len(index.keys[n - 1]), 1)
    sent, gram, count = index.pair_sent[n - 1], index.pair_gram[n - 1], index.pair_count[n - 1]
    is_gen = sent < n_gen
    return (np.bincount(gram[is_gen], weights=count[is_gen], minlength=size),
            np.bincount(gram[~is_gen], weights=count[~is_gen], minlength=size))


def _multiset_jaccard(c_gen: np.ndarray, c_ref: np.ndarray, n_gen: int, n_ref: int) -> float:
    """J_n from the two sets' n-gram counts (integral floats) and sizes."""
    # min(a/|G|, b/|R|) = min(a|R|, b|G|) / (|G||R|): exact integer sums,
    # one rounding at the end (counts are integral, so the floats are exact).
    a = c_gen.astype(np.int64) * n_ref
    b = c_ref.astype(np.int64) * n_gen
    num, den = int(np.minimum(a, b).sum()), int(np.maximum(a, b).sum())
    return num / den if den else 1.0


def ms_jaccard_jackknife(generated: Iterable[Sentence], reference: Iterable[Sentence],
                         max_orders: Iterable[int], groups: np.ndarray) -> dict[int, np.ndarray]:
    """The delete-a-group jackknife's replicates of MS-Jaccard (``min_n`` 1): for each
    ``max_n`` in ``max_orders``, the score [G] of the generated sentences without each group
    (``groups``: each generated sentence's, 0..G-1) against the whole reference set.

    One n-gram index for all groups and orders: a group's counts are subtracted from the
    whole set's, so the cost is G dense passes over the distinct n-grams per order, not G
    re-indexings."""
    gen, ref = _as_token_lists(generated), _as_token_lists(reference)
    max_orders = tuple(max_orders)
    top, n_gen, n_ref = max(max_orders), len(gen), len(ref)
    n_groups = int(groups.max()) + 1
    kept = n_gen - np.bincount(groups, minlength=n_groups)
    index = _NgramIndex(gen + ref, top)
    ratios = np.ones((n_groups, top))
    for n in range(1, top + 1):
        size = max(len(index.keys[n - 1]), 1)
        sent, gram, count = index.pair_sent[n - 1], index.pair_gram[n - 1], index.pair_count[n - 1]
        is_gen = sent < n_gen
        c_gen, c_ref = _counts_by_side(index, n, n_gen)
        by_group = np.argsort(groups[sent[is_gen]], kind="stable")
        g_gram, g_count = gram[is_gen][by_group], count[is_gen][by_group]
        bounds = np.searchsorted(groups[sent[is_gen]][by_group], np.arange(n_groups + 1))
        for k in range(n_groups):
            part = slice(bounds[k], bounds[k + 1])
            without = c_gen - np.bincount(g_gram[part], weights=g_count[part], minlength=size)
            ratios[k, n - 1] = _multiset_jaccard(without, c_ref, int(kept[k]), n_ref)
    return {m: np.prod(ratios[:, :m], axis=1) ** (1.0 / m) for m in max_orders}


def bwd_bleu(generated: Iterable[Sentence], reference: Iterable[Sentence],
             max_n: int = 4) -> float:
    """Backward BLEU (Shi, Chen, Qiu & Huang 2018, "Toward Diverse Text
    Generation with Inverse Reinforcement Learning", IJCAI, Sec. 5): the roles
    of forward BLEU swapped: every reference (held-out) sentence is scored with
    nltk's method1-smoothed sentence BLEU-``max_n`` against *all* generated
    sentences as its references, and the scores are averaged.  High only when
    the generated set covers the references (diversity / recall)."""
    return BleuReferences(generated, max_n).score(reference)


def fb_bleu(forward: float, backward: float) -> float:
    """BLEU_HA of Shi et al. 2018: the harmonic mean 2fb/(f+b) of forward
    (quality) and backward (diversity) BLEU; 0 when both are 0."""
    total = forward + backward
    return 0.0 if total == 0 else 2.0 * forward * backward / total


def fb_bleu_se(forward: float, backward: float, forward_se: float, backward_se: float
               ) -> float:
    """The delta method's standard error of ``fb_bleu`` from those of its two BLEUs, taken
    as independent (they are not quite: both compare the same two sets); 0 when both BLEUs
    are 0 (every sentence scored 0, so neither varies)."""
    total = forward + backward
    if total == 0:
        return 0.0
    d_forward = 2.0 * backward ** 2 / total ** 2   # d/df of 2fb/(f+b)
    d_backward = 2.0 * forward ** 2 / total ** 2
    return math.hypot(d_forward * forward_se, d_backward * backward_se)


def distinct_n(sentences: Iterable[Sentence], n: int, per_token: bool = False) -> float:
    """Distinct-n (Li, Galley, Brockett, Gao & Dolan 2016, "A Diversity-
    Promoting Objective Function for Neural Conversation Models", NAACL,
    Sec. 4): the number of distinct n-grams over all sentences divided by the
    total number of n-grams (0 when there are none).

    The paper's wording is "the number of distinct unigrams and bigrams in
    generated responses ... scaled by total number of generated tokens";
    ``per_token=True`` divides by the token count instead (same for n=1).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    sents = _as_token_lists(sentences)
    if not sents:
        return 0.0
    index = _NgramIndex(sents, n)
    total = int(index.lengths.sum() if per_token
                else np.maximum(index.lengths - (n - 1), 0).sum())
    return len(index.keys[n - 1]) / total if total else 0.0


def distinct_n_jackknife(sentences: Iterable[Sentence], orders: Iterable[int],
                         groups: np.ndarray) -> dict[int, np.ndarray]:
    """The delete-a-group jackknife's replicates of distinct-n (per n-gram): for each n in
    ``orders``, the score [G] of the sentences without each group (``groups``: each
    sentence's, 0..G-1).

    From one n-gram index: leaving a group out loses the n-grams no other group holds and
    that group's n-gram count, so no group is re-indexed."""
    sents = _as_token_lists(sentences)
    orders = tuple(orders)
    n_groups = int(groups.max()) + 1
    index = _NgramIndex(sents, max(orders))
    replicates = {}
    for n in orders:
        size = len(index.keys[n - 1])
        gram, group = index.pair_gram[n - 1], groups[index.pair_sent[n - 1]].astype(np.float64)
        # An n-gram is held by one group alone iff its sentences' groups have no variance:
        # three bincounts instead of a unique over (n-gram, group) pairs, 5x slower. The
        # sums are integers far below 2**53, so the test is exact.
        pairs = np.bincount(gram, minlength=size)
        total_group = np.bincount(gram, weights=group, minlength=size)
        lone = (pairs > 0) & (pairs * np.bincount(gram, weights=group ** 2, minlength=size)
                              == total_group ** 2)
        lost = np.bincount((total_group[lone] / pairs[lone]).astype(np.int64),
                           minlength=n_groups)
        per_sentence = np.maximum(index.lengths - (n - 1), 0)
        total = int(per_sentence.sum()) - np.bincount(groups, weights=per_sentence,
                                                      minlength=n_groups).astype(np.int64)
        distinct = size - lost
        replicates[n] = np.where(total > 0, distinct / np.maximum(total, 1), 0.0)
    return replicates


def train_copy(generated: Iterable[Sentence], train: Iterable[Sentence]) -> float:
    """Share of generated sentences that occur verbatim (the same token
    sequence) in the training set; duplicates in ``generated`` each count."""
    gen = _as_token_lists(generated)
    if not gen:
        raise ValueError("train_copy needs at least one generated sentence")
    seen = set(map(tuple, _as_token_lists(train)))
    return sum(tuple(s) in seen for s in gen) / len(gen)
