"""Quality / diversity metrics over token-id sentences: MS-Jaccard, backward
BLEU and its harmonic mean with forward BLEU, distinct-n and train-copy rate.

Sentences are sequences of hashable tokens (normally ``list[list[int]]``, or a
2-D array / tensor), of any lengths, possibly empty.  The n-gram counting
reuses ``harness.metrics._NgramIndex`` (dense numpy ids for every n-gram), so
nothing loops in Python over n-grams.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from harness.metrics import BleuReferences, Sentence, _as_token_lists, _NgramIndex

__all__ = ["ms_jaccard", "bwd_bleu", "fb_bleu", "distinct_n", "train_copy"]


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
        size = max(len(index.keys[n - 1]), 1)
        sent, gram = index.pair_sent[n - 1], index.pair_gram[n - 1]
        count = index.pair_count[n - 1]
        is_gen = sent < n_gen
        c_gen = np.bincount(gram[is_gen], weights=count[is_gen], minlength=size)
        c_ref = np.bincount(gram[~is_gen], weights=count[~is_gen], minlength=size)
        # min(a/|G|, b/|R|) = min(a|R|, b|G|) / (|G||R|): exact integer sums,
        # one rounding at the end (counts are integral, so the floats are exact).
        a = c_gen.astype(np.int64) * n_ref
        b = c_ref.astype(np.int64) * n_gen
        num, den = int(np.minimum(a, b).sum()), int(np.maximum(a, b).sum())
        ratios.append(num / den if den else 1.0)
    return float(np.prod(ratios) ** (1.0 / len(ratios)))


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


def train_copy(generated: Iterable[Sentence], train: Iterable[Sentence]) -> float:
    """Share of generated sentences that occur verbatim (the same token
    sequence) in the training set; duplicates in ``generated`` each count."""
    gen = _as_token_lists(generated)
    if not gen:
        raise ValueError("train_copy needs at least one generated sentence")
    seen = set(map(tuple, _as_token_lists(train)))
    return sum(tuple(s) in seen for s in gen) / len(gen)
