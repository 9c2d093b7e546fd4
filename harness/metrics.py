"""Fast BLEU and self-BLEU with the exact semantics of nltk's ``sentence_bleu``.

BLEU-n here is what the SeqGAN paper and Texygen report: every hypothesis is
scored with ``nltk.translate.bleu_score.sentence_bleu(references, hypothesis,
weights=(1/n,)*n, smoothing_function=SmoothingFunction().method1)`` against the
*whole* reference set, and the sentence scores are averaged.  nltk rebuilds the
n-gram counts of every reference for every hypothesis, which is O(#hyps x
#refs); PG-BLEU calls BLEU inside the training loop, so that is far too slow.

``BleuReferences`` does the reference side once: it interns tokens to integer
ids, gives every distinct n-gram (n = 1..max_n) a dense integer id, and stores
the maximum count of each n-gram in any single reference plus the sorted
reference lengths.  Scoring a batch of hypotheses is then a handful of numpy
sorts/searches over the hypotheses' n-grams, independent of the number of
references.  The arithmetic mirrors nltk step by step (see
``_scores_from_stats``) so the results agree to ~1e-15.

Why sacrebleu is not used here: its ``floor`` smoothing is Chen & Cherry's
method 1 too, but (a) for an order with no hypothesis n-grams at all (a
hypothesis shorter than n) it stops and leaves that precision at 0, giving a
score of ~0 (or, with ``effective_order``, drops the order), whereas nltk uses
a denominator of ``max(1, 0) = 1`` and a precision of 0.1/1; (b) it works on
whitespace-split strings and builds one ``Counter`` of tuples per sentence
(``helpers.extract_all_word_ngrams``), i.e. the slow dict path we are avoiding.
Its closest-reference-length rule and its clipping agree with nltk, and the test
suite checks that the two agree where (a) does not apply.
"""
from __future__ import annotations

from itertools import chain
from typing import Hashable, Iterable, Sequence

import numpy as np

from harness.uncertainty import mean_and_se

__all__ = ["BLEU_RULES", "BleuReferences", "bleu", "self_bleu", "self_bleu_scores",
           "self_bleu_scores_by_order"]

# nltk's SmoothingFunction().method1 default: a precision with 0 matches
# becomes (0 + epsilon) / denominator.
_EPSILON = 0.1

Sentence = Sequence[Hashable]


def _as_token_lists(sentences: Iterable) -> list:
    """Turn sentences (lists, tuples, numpy rows, torch tensors) into lists.

    numpy / torch scalars would hash equal to Python ints anyway, but
    ``.tolist()`` makes the dict look-ups below several times faster.
    """
    if hasattr(sentences, "tolist") and not isinstance(sentences, list):
        sentences = sentences.tolist()  # a 2-D array / tensor of token ids
    out = []
    for s in sentences:
        if hasattr(s, "tolist"):
            s = s.tolist()
        out.append(s)
    return out


def _flat_layout(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For concatenated sentences: each position's sentence index and the
    number of tokens from it to its sentence's end (an n-gram may start at
    position i iff ``remaining[i] >= n``)."""
    total = int(lengths.sum())
    sent = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    remaining = lengths[sent] - (np.arange(total, dtype=np.int64) - starts[sent])
    return sent, remaining


class _NgramIndex:
    """Dense integer ids for every n-gram (n = 1..max_n) of a sentence set.

    An n-gram's key is ``id(its (n-1)-gram prefix) * vocab_size + last token``;
    ``np.unique`` of the keys gives dense ids, so keys stay far below 2**63
    (at most #distinct (n-1)-grams * vocab size) whatever n and the vocabulary.

    Per order it keeps the sorted distinct keys and, for each (sentence,
    n-gram) pair present, the sentence, the n-gram id and the count.
    """

    def __init__(self, sentences: list, max_n: int) -> None:
        self.vocab: dict = {}
        setdefault = self.vocab.setdefault
        lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64,
                              count=len(sentences))
        total = int(lengths.sum())
        # Interning through a dict gives tokens nltk's equality (hash + ==).
        tokens = np.fromiter(
            (setdefault(t, len(self.vocab)) for t in chain.from_iterable(sentences)),
            dtype=np.int64, count=total)
        self.lengths = lengths
        self.vocab_size = max(len(self.vocab), 1)
        sent, remaining = _flat_layout(lengths)

        self.keys: list[np.ndarray] = []        # per order: sorted distinct keys
        self.pair_sent: list[np.ndarray] = []   # per order: sentence of each pair
        self.pair_gram: list[np.ndarray] = []   # per order: n-gram id of each pair
        self.pair_count: list[np.ndarray] = []  # per order: its count in that sentence
        gram = tokens  # order-1 ids are the token ids themselves
        for n in range(1, max_n + 1):
            if n == 1:
                keys = np.arange(len(self.vocab), dtype=np.int64)
                pos = np.arange(total, dtype=np.int64)
                ids = tokens
            else:
                pos = np.flatnonzero(remaining >= n)
                raw = gram[pos] * self.vocab_size + tokens[pos + n - 1]
                keys, ids = np.unique(raw, return_inverse=True)
                ids = ids.reshape(-1).astype(np.int64, copy=False)
                nxt = np.full(total, -1, dtype=np.int64)
                nxt[pos] = ids
                gram = nxt
            n_grams = max(len(keys), 1)
            pair, count = np.unique(sent[pos] * n_grams + ids, return_counts=True)
            self.keys.append(keys)
            self.pair_sent.append(pair // n_grams)
            self.pair_gram.append(pair % n_grams)
            self.pair_count.append(count.astype(np.int64, copy=False))


def _closest_lengths(hyp_lens: np.ndarray, ref_lens_sorted: np.ndarray) -> np.ndarray:
    """nltk's ``closest_ref_length`` for many hypotheses at once: the reference
    length nearest to each hypothesis length, ties going to the shorter one.
    ``ref_lens_sorted`` holds the distinct reference lengths, ascending."""
    j = np.searchsorted(ref_lens_sorted, hyp_lens)          # first length >= L
    last = len(ref_lens_sorted) - 1
    upper = ref_lens_sorted[np.minimum(j, last)]
    lower = ref_lens_sorted[np.maximum(j - 1, 0)]
    has_upper = j <= last
    has_lower = j > 0
    # Take the lower one when it is at least as close (tie -> shorter).
    take_lower = has_lower & (~has_upper | (hyp_lens - lower <= upper - hyp_lens))
    return np.where(take_lower, lower, upper)


# How a sentence BLEU treats an n-gram order without a match:
# "smoothed": nltk's method1, a zero numerator becomes epsilon (the metric of the tables);
# "nltk-3.2": nltk 3.2.x without smoothing (what the SeqGAN authors' PG-BLEU reward
#     used): the order is left out of the sum of logs, weights not renormalised; 0 only
#     when no unigram matches;
# "strict": today's nltk without smoothing: 0 when any order has no match.
BLEU_RULES = ("smoothed", "nltk-3.2", "strict")


def _scores_from_stats(numerators: np.ndarray, hyp_lens: np.ndarray,
                       ref_lens: np.ndarray, max_n: int, rule: str = "smoothed") -> np.ndarray:
    """nltk ``corpus_bleu`` for single hypotheses, vectorised over rows.

    numerators: (H, >= max_n) clipped match counts for orders 1..;
    hyp_lens, ref_lens: hypothesis and closest reference lengths.
    Mirrors nltk: denominator ``max(1, #n-grams)``; method1 replaces a zero
    numerator by epsilon; the score is 0 when no unigram matches (this also
    covers an empty hypothesis); brevity penalty ``exp(1 - r / c)`` when
    ``c <= r``.  Every division is float(int) / float(int), which rounds
    exactly like nltk's ``int / int`` on its unnormalised Fractions.
    ``rule`` picks what an order without a match does (``BLEU_RULES``).
    """
    if rule not in BLEU_RULES:
        raise ValueError(f"rule must be one of {', '.join(BLEU_RULES)}, not {rule!r}")
    num = numerators[:, :max_n].astype(np.float64)
    den = np.maximum(1, hyp_lens[:, None] - np.arange(max_n)[None, :]).astype(np.float64)
    p = np.where(num > 0, num, _EPSILON) / den
    weight = 1.0 / max_n  # nltk: weights=(1/n,)*n
    # nltk 3.2: s = (w * math.log(p_i) for w, p_i in zip(weights, p_n) if p_i.numerator != 0)
    log_p = np.where(num > 0, np.log(p), 0.0) if rule == "nltk-3.2" else np.log(p)
    log_sum = (weight * log_p).sum(axis=1)
    c = hyp_lens.astype(np.float64)
    r = ref_lens.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(hyp_lens > ref_lens, 1.0,
                      np.where(hyp_lens == 0, 0.0, np.exp(1.0 - r / np.maximum(c, 1.0))))
    scores = bp * np.exp(log_sum)
    no_match = (num == 0).any(axis=1) if rule == "strict" else numerators[:, 0] == 0
    return np.where(no_match, 0.0, scores)


class BleuReferences:
    """A reference set prepared once for fast sentence-level BLEU.

    Precomputes the maximum count of every n-gram (n = 1..max_n) in any one
    reference, and the distinct reference lengths; ``sentence_scores`` then
    costs O(#hypothesis tokens * max_n * log #distinct n-grams), independent of
    the number of references.  Immutable after construction, so it can be
    shared across training steps (PG-BLEU rewards).
    """

    def __init__(self, references: Iterable[Sentence], max_n: int = 4) -> None:
        if max_n < 1:
            raise ValueError(f"max_n must be >= 1, got {max_n}")
        refs = _as_token_lists(references)
        if not refs:
            raise ValueError("BLEU needs at least one reference")
        self.max_n = int(max_n)
        self.n_references = len(refs)
        index = _NgramIndex(refs, self.max_n)
        self._vocab = index.vocab
        self._vocab_size = index.vocab_size
        self._keys = index.keys
        # Clipping uses the largest count of the n-gram in a single reference.
        self._max_count = []
        for n in range(self.max_n):
            m = np.zeros(max(len(index.keys[n]), 1), dtype=np.int64)
            np.maximum.at(m, index.pair_gram[n], index.pair_count[n])
            self._max_count.append(m)
        self._ref_lens = np.unique(index.lengths)

    def _match_stats(self, hyps: list) -> tuple[np.ndarray, np.ndarray]:
        """Clipped match counts (H, max_n) and lengths (H,) of hypotheses."""
        h = len(hyps)
        lengths = np.fromiter((len(s) for s in hyps), dtype=np.int64, count=h)
        total = int(lengths.sum())
        get = self._vocab.get
        # Tokens never seen in a reference get -1: no n-gram with them matches.
        tokens = np.fromiter((get(t, -1) for t in chain.from_iterable(hyps)),
                             dtype=np.int64, count=total)
        sent, remaining = _flat_layout(lengths)
        numerators = np.zeros((h, self.max_n), dtype=np.int64)
        gram = tokens
        for n in range(1, self.max_n + 1):
            if n == 1:
                pos = np.flatnonzero(tokens >= 0)
                ids = tokens[pos]
            else:
                pos = np.flatnonzero(remaining >= n)
                prefix = gram[pos]
                last = tokens[pos + n - 1]
                ok = (prefix >= 0) & (last >= 0)
                raw = prefix * self._vocab_size + last
                keys = self._keys[n - 1]
                where = np.searchsorted(keys, raw)
                where_c = np.minimum(where, max(len(keys) - 1, 0))
                ok &= (where < len(keys))
                if len(keys):
                    ok &= keys[where_c] == raw
                ids = np.where(ok, where_c, -1)
                nxt = np.full(total, -1, dtype=np.int64)
                nxt[pos] = ids
                gram = nxt
                pos, ids = pos[ok], ids[ok]
            if len(pos) == 0:
                continue
            n_grams = len(self._max_count[n - 1])
            # Count each matched n-gram within its hypothesis, then clip.
            pair, count = np.unique(sent[pos] * n_grams + ids, return_counts=True)
            clipped = np.minimum(count, self._max_count[n - 1][pair % n_grams])
            numerators[:, n - 1] = np.bincount(pair // n_grams, weights=clipped,
                                               minlength=h).astype(np.int64)
        return numerators, lengths

    def sentence_scores(self, hypotheses: Iterable[Sentence], max_n: int | None = None,
                        rule: str = "smoothed") -> np.ndarray:
        """BLEU-``max_n`` of each hypothesis against all references (float64).

        ``max_n`` defaults to the precomputed order; a smaller one reuses the
        same tables (e.g. BLEU-2..5 from one ``BleuReferences(refs, 5)``).
        ``rule`` is how an order without a match counts (``BLEU_RULES``):
        ``"nltk-3.2"`` is the unsmoothed BLEU of PG-BLEU's reward in the authors'
        script, ``"strict"`` today's nltk without smoothing.
        """
        n = self.max_n if max_n is None else int(max_n)
        if not 1 <= n <= self.max_n:
            raise ValueError(f"max_n must be in 1..{self.max_n}, got {max_n}")
        hyps = _as_token_lists(hypotheses)
        if not hyps:
            return np.zeros(0, dtype=np.float64)
        numerators, lengths = self._match_stats(hyps)
        return _scores_from_stats(numerators, lengths,
                                  _closest_lengths(lengths, self._ref_lens), n, rule)

    def score(self, hypotheses: Iterable[Sentence], max_n: int | None = None) -> float:
        """Mean sentence BLEU over the hypotheses."""
        return self.score_and_se(hypotheses, max_n)[0]

    def score_and_se(self, hypotheses: Iterable[Sentence], max_n: int | None = None
                     ) -> tuple[float, float]:
        """``score`` and its standard error over the hypotheses (from one scoring pass)."""
        scores = self.sentence_scores(hypotheses, max_n)
        if len(scores) == 0:
            raise ValueError("BLEU needs at least one hypothesis")
        return mean_and_se(scores)


def bleu(hypotheses: Iterable[Sentence], references: Iterable[Sentence],
         max_n: int = 4) -> float:
    """Mean over hypotheses of nltk's method1-smoothed sentence BLEU-``max_n``
    against all references (the SeqGAN/Texygen BLEU)."""
    return BleuReferences(references, max_n).score(hypotheses)


def self_bleu(samples: Iterable[Sentence], max_n: int = 4,
              n_hypotheses: int | None = None, seed: int = 0) -> float:
    """Self-BLEU (diversity; lower = more diverse): the mean of ``self_bleu_scores``."""
    return float(self_bleu_scores(samples, max_n, n_hypotheses, seed).mean())


def self_bleu_scores(samples: Iterable[Sentence], max_n: int = 4,
                     n_hypotheses: int | None = None, seed: int = 0) -> np.ndarray:
    """Self-BLEU's sentence scores (float64, in sample order): each scored sample's
    BLEU-``max_n`` against all the *other* samples.

    Unlike Texygen, a sample is never its own reference (that made every score
    1.0-ish); a duplicate's other copy does still count.  The n-gram maxima
    are computed once over all samples; to exclude sample s we keep per n-gram
    the largest count, the sentence holding it and the second-largest count
    (equal to the largest when two sentences tie): the maximum without s is
    the second-largest if s holds the largest, else the largest.  Likewise
    s's length is removed from the reference lengths only if no other sample
    has it.  ``n_hypotheses`` scores only a seeded random subset of that many
    samples (each still against all others); None = all.
    """
    return self_bleu_scores_by_order(samples, (max_n,), n_hypotheses, seed)[max_n]


def self_bleu_scores_by_order(samples: Iterable[Sentence], orders: Sequence[int],
                              n_hypotheses: int | None = None, seed: int = 0
                              ) -> dict[int, np.ndarray]:
    """``self_bleu_scores`` at each of ``orders``: the n-gram index and the clipped
    counts are made once, for the largest order (an order's counts do not depend on the
    others), instead of once per order."""
    if min(orders) < 1:
        raise ValueError(f"max_n must be >= 1, got {min(orders)}")
    max_n = max(orders)
    sents = _as_token_lists(samples)
    s_count = len(sents)
    if s_count < 2:
        raise ValueError("self-BLEU needs at least two samples")
    index = _NgramIndex(sents, max_n)

    if n_hypotheses is None or n_hypotheses >= s_count:
        chosen = np.arange(s_count)
    else:
        if n_hypotheses < 1:
            raise ValueError(f"n_hypotheses must be >= 1, got {n_hypotheses}")
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(s_count, size=n_hypotheses, replace=False))
    is_chosen = np.zeros(s_count, dtype=bool)
    is_chosen[chosen] = True

    numerators = np.zeros((s_count, max_n), dtype=np.int64)
    for n in range(max_n):
        sent, gram, count = index.pair_sent[n], index.pair_gram[n], index.pair_count[n]
        n_grams = max(len(index.keys[n]), 1)
        # Sort pairs by (n-gram, count): each n-gram's last pair is its max.
        order = np.lexsort((count, gram))
        g_sorted, c_sorted, s_sorted = gram[order], count[order], sent[order]
        is_last = np.ones(len(order), dtype=bool)
        is_last[:-1] = g_sorted[1:] != g_sorted[:-1]
        last = np.flatnonzero(is_last)
        top1 = np.zeros(n_grams, dtype=np.int64)
        top2 = np.zeros(n_grams, dtype=np.int64)
        holder = np.full(n_grams, -1, dtype=np.int64)
        top1[g_sorted[last]] = c_sorted[last]
        holder[g_sorted[last]] = s_sorted[last]
        prev = last - 1
        has_second = (prev >= 0) & (g_sorted[np.maximum(prev, 0)] == g_sorted[last])
        top2[g_sorted[last[has_second]]] = c_sorted[prev[has_second]]

        keep = is_chosen[sent]  # only the scored samples need numerators
        sent, gram, count = sent[keep], gram[keep], count[keep]
        max_others = np.where(holder[gram] == sent, top2[gram], top1[gram])
        clipped = np.minimum(count, max_others)
        numerators[:, n] = np.bincount(sent, weights=clipped,
                                       minlength=s_count).astype(np.int64)

    # Closest length among the other samples.
    lengths = index.lengths
    distinct, inverse, per_len = np.unique(lengths, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    closest = lengths.copy()  # another sample has the same length: distance 0
    alone = per_len[inverse] == 1
    if alone.any():
        j = inverse[alone]
        lo_ok = j > 0
        hi_ok = j < len(distinct) - 1
        lo = distinct[np.maximum(j - 1, 0)]
        hi = distinct[np.minimum(j + 1, len(distinct) - 1)]
        lens = lengths[alone]
        take_lo = lo_ok & (~hi_ok | (lens - lo <= hi - lens))
        closest[alone] = np.where(take_lo, lo, hi)

    return {n: _scores_from_stats(numerators[chosen], lengths[chosen], closest[chosen], n)
            for n in orders}
