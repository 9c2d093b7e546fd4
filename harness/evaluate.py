"""The harness's own evaluation: every method's generator is measured by this code.

Quality and diversity of a generator's samples, against both of the data set's
reference sets: the held-out split (``bleuN``, our protocol: a method cannot score by
copying its training data) and the training split (``bleuN_train``, the SeqGAN paper's
and Texygen's protocol), with ``train_copy`` saying how much of that is copying.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from harness import language_model, quality
from harness.api import Corpus, Diverged, Generator, check_finite
from harness.generator import (eval_mode, mean_token_nll, mean_token_nll_and_se,
                               sequence_log_likelihoods)
from harness.metrics import BleuReferences, self_bleu_scores_by_order
from harness.streams import stream, stream_seed
from harness.uncertainty import (binomial_se, jackknife_groups, jackknife_se, mean_and_se,
                                 token_nll_se)

# Evaluation's random streams, apart from training's (harness.streams derives their seeds).
SAMPLES_STREAM = "evaluation samples"
OUTSIDE_STREAM = "evaluation: sentences outside a split"
SELF_BLEU_STREAM = "evaluation: self-BLEU hypotheses"
BLEU_ORDERS = (2, 3, 4, 5)
MS_JACCARD_ORDERS = (2, 3, 4)
DISTINCT_ORDERS = (1, 2, 3, 4)
SELF_BLEU_HYPOTHESES = 1000  # Self-BLEU scores this many samples, each against all the others
CURVE_METRICS = ("nll_oracle", "nll_test")  # what a learning curve records (lower is better)
SWEEP_TEMPERATURES = (0.3, 0.5, 0.7, 0.85, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0)
SWEEP_SAMPLES = 500  # per temperature: ten temperatures cost about one main evaluation
# The profiles under which every learning-curve point draws its samples from a stream of its
# own (``curve_samples_stream``), as the authors' scripts draw 9,984 fresh samples at every
# evaluation (LantaoYu/SeqGAN MLE_SeqGAN/sequence_gan.py 66, 166, 219 @4152436): the best of
# many points then has the selection their best-so-far figures had. Under the others every
# point draws the one evaluation stream, so two points differ by the generator alone.
FRESH_CURVE_DRAWS = ("authors",)

# Which way is better, for every metric the harness computes ("higher" for the rest).
LOWER_IS_BETTER = ("nll_oracle", "nll_test", "self_bleu", "train_copy", "lm_score",
                   "reverse_lm_score")


def lower_is_better(metric: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a lower value of ``metric`` is better (``extra``: a data set's own)."""
    return metric in extra or metric.removesuffix("_best_so_far").rstrip("0123456789") \
        in LOWER_IS_BETTER or metric.startswith("nll_")


def _device(generator: Generator) -> torch.device:
    if isinstance(generator, torch.nn.Module):
        return next(generator.parameters()).device
    return torch.device("cpu")


def draw_samples(generator: Generator, corpus: Corpus, seed: int, temperature: float = 1.0,
                 n: int | None = None, stream_name: str = SAMPLES_STREAM) -> torch.Tensor:
    """``n`` (default: the corpus's number of) evaluation samples, from a random stream
    of their own."""
    rng = stream(seed, stream_name, _device(generator))
    samples = generator.sample(n or corpus.eval_samples, temperature=temperature, generator=rng).cpu()
    if len(samples) and (samples.min() < 0 or samples.max() >= corpus.vocab_size):
        raise Diverged(f"the generator sampled token ids outside 0..{corpus.vocab_size - 1}")
    return samples


def random_streams(seed: int) -> dict[str, int]:
    """Evaluation's random streams and their seeds for a run seeded ``seed`` (config.json
    lists them; the judge LMs' are ``language_model``'s)."""
    names = (SAMPLES_STREAM, OUTSIDE_STREAM, SELF_BLEU_STREAM, *language_model.STREAMS)
    return {name: stream_seed(seed, name) for name in names}


def curve_samples_stream(point: int | None) -> str:
    """The stream a curve point's samples come from: the evaluation's own (``point`` None),
    or one named by the point's 0-based number (fresh draws)."""
    return SAMPLES_STREAM if point is None else f"{SAMPLES_STREAM}: curve point {point}"


def curve_metrics(generator: Generator, corpus: Corpus, seed: int,
                  point: int | None = None) -> dict:
    """The learning-curve figure: NLL-oracle on synthetic data (its samples drawn from
    ``curve_samples_stream(point)``), NLL-test otherwise."""
    with eval_mode(generator):
        if corpus.oracle is not None:
            samples = draw_samples(generator, corpus, seed, stream_name=curve_samples_stream(point))
            return {"nll_oracle": mean_token_nll(corpus.oracle, samples)}
        return {"nll_test": nll_test(generator, corpus)}


def curve_streams(seed: int, curve: list[dict]) -> dict[str, int]:
    """The fresh-draw streams of a curve's points that drew samples, and their seeds (for
    config.json)."""
    names = [curve_samples_stream(point) for point, row in enumerate(curve)
             if row.get("nll_oracle") not in (None, "")]
    return {name: stream_seed(seed, name) for name in names}


def nll_test(generator: Generator, corpus: Corpus, temperature: float = 1.0,
             n: int | None = None) -> float:
    """The generator's NLL per token on (the first ``n`` of) the held-out set; NaN if it
    gives no likelihood."""
    return nll_tests(generator, corpus, (temperature,), n)[0]


def nll_tests(generator: Generator, corpus: Corpus, temperatures: tuple[float, ...],
              n: int | None = None) -> list[float]:
    """``nll_test`` at each temperature, the held-out set read once for all of them."""
    return _held_out_nlls(generator, corpus, temperatures, n)[0]


def nll_test_and_se(generator: Generator, corpus: Corpus, temperature: float = 1.0,
                    n: int | None = None) -> tuple[float, float]:
    """``nll_test`` and its standard error over the held-out sequences (NaN without a
    likelihood). That error is the held-out set's: the value has no sampling noise."""
    (value,), (per_sequence,) = _held_out_nlls(generator, corpus, (temperature,), n)
    return value, token_nll_se(per_sequence, corpus.seq_len)


def _held_out_nlls(generator: Generator, corpus: Corpus, temperatures: tuple[float, ...],
                   n: int | None) -> tuple[list[float], list[np.ndarray]]:
    try:
        values, per_sequence = sequence_log_likelihoods(generator, corpus.test[:n], temperatures)
    except NotImplementedError:
        return [math.nan] * len(temperatures), [np.zeros(0)] * len(temperatures)
    for value in values:
        check_finite(value, "the generator's NLL on the held-out set")
    return values, per_sequence


@functools.lru_cache(maxsize=8)
def references(corpus: Corpus, split: str) -> BleuReferences:
    """The maximum n-gram counts of one split (``test`` or ``train``), computed once."""
    return BleuReferences(corpus.sentences(getattr(corpus, split)), max(BLEU_ORDERS))


@functools.lru_cache(maxsize=8)
def _split_sentences(corpus: Corpus, split: str) -> list[list[int]]:
    return corpus.sentences(getattr(corpus, split))


def _samples_outside(generator: Generator, split: str, samples: torch.Tensor,
                     seed: int) -> torch.Tensor:
    """The samples to score against ``split``'s references: the generator's own, except
    for real data, which gives sentences from outside that split (``samples_outside``)."""
    rng = stream(seed, OUTSIDE_STREAM)
    outside = generator.samples_outside(split, len(samples), rng)
    return samples if outside is None else outside


def evaluate(generator: Generator, corpus: Corpus, seed: int, temperature: float = 1.0,
             n_samples: int | None = None, judge: Generator | None = None,
             reverse_lm: bool = True, held_out_nll: float | None = None,
             standard_errors: bool = False) -> tuple[dict, torch.Tensor]:
    """The final metrics of a trained generator, and the samples they were computed on.

    ``judge``: the LM of the training split (``language_model.reference_lm``) that gives
    ``lm_score``; ``reverse_lm``: also fit an LM to the samples for ``reverse_lm_score``
    (a few seconds: the temperature sweep leaves it out). Both are for real text: on
    synthetic data the oracle is the exact judge (NLL-oracle) and NLL-test measures
    coverage. ``held_out_nll``: NLL-test already computed on as many held-out rows as
    samples (the sweep does every temperature in one pass; it has no standard error then).

    ``standard_errors``: also return ``metrics["standard_errors"]``, {metric: the sampling
    standard error of its value}, for every metric computed from samples or held-out rows
    whose error is defined (at least two units). The values come from the same code either
    way: the cheap errors are always computed beside them, only the jackknife of distinct-n
    and MS-Jaccard (``_jackknife_errors``) runs just when asked."""
    errors: dict[str, float] = {}
    with eval_mode(generator):
        samples = draw_samples(generator, corpus, seed, temperature, n_samples)
        metrics: dict = {"temperature": temperature, "n_samples": len(samples),
                         "n_references": len(corpus.test), "n_train_references": len(corpus.train),
                         "n_held_out": min(len(corpus.test), len(samples))}
        if corpus.oracle is not None:
            metrics["nll_oracle"], errors["nll_oracle"] = \
                mean_token_nll_and_se(corpus.oracle, samples)
        # On as many held-out rows as samples, like the held-out BLEU and MS-Jaccard below.
        if held_out_nll is None:
            metrics["nll_test"], errors["nll_test"] = \
                nll_test_and_se(generator, corpus, temperature, n=len(samples))
        else:
            metrics["nll_test"] = held_out_nll
        if generator.likelihood_is_bound:
            metrics["nll_test_is_bound"] = 1
    sentences = corpus.sentences(samples)
    held_out = references(corpus, "test")
    for n in BLEU_ORDERS:
        metrics[f"bleu{n}"], errors[f"bleu{n}"] = held_out.score_and_se(sentences, max_n=n)
    against_train = corpus.sentences(_samples_outside(generator, "train", samples, seed))
    training = references(corpus, "train")
    for n in BLEU_ORDERS:
        metrics[f"bleu{n}_train"], errors[f"bleu{n}_train"] = \
            training.score_and_se(against_train, max_n=n)
    # A share of samples, each a copy or not: binomial.
    metrics["train_copy"] = quality.train_copy(against_train, _split_sentences(corpus, "train"))
    errors["train_copy"] = binomial_se(metrics["train_copy"], len(against_train))
    metrics.update(diversity(sentences, corpus, seed, metrics, errors))
    if judge is not None:
        metrics["lm_score"], errors["lm_score"] = language_model.nll_and_se(judge, samples)
    if reverse_lm and corpus.oracle is None:
        metrics["reverse_lm_score"], errors["reverse_lm_score"] = \
            language_model.reverse_lm_score_and_se(samples, corpus, seed)
    if standard_errors:
        errors.update(_jackknife_errors(sentences, corpus))
        metrics["standard_errors"] = {k: v for k, v in errors.items() if math.isfinite(v)}
    return metrics, samples


def diversity(sentences: list[list[int]], corpus: Corpus, seed: int, forward: dict,
              errors: dict[str, float] | None = None) -> dict:
    """How varied the samples are, alone (Self-BLEU, distinct-n) and against the held-out
    set (backward BLEU and its harmonic mean with the ``forward`` BLEU, MS-Jaccard).
    ``errors``: the forward BLEUs' standard errors; those of Self-BLEU, backward BLEU and
    its harmonic mean are added to it."""
    errors = {} if errors is None else errors
    metrics: dict = {}
    n_self = min(SELF_BLEU_HYPOTHESES, len(sentences))
    self_bleu = self_bleu_scores_by_order(sentences, BLEU_ORDERS, n_hypotheses=n_self,
                                          seed=stream_seed(seed, SELF_BLEU_STREAM))
    for n in BLEU_ORDERS:
        metrics[f"self_bleu{n}"], errors[f"self_bleu{n}"] = mean_and_se(self_bleu[n])
    metrics["n_self_bleu_hypotheses"] = n_self
    held_out = _held_out_like(sentences, corpus)
    as_references = BleuReferences(sentences, max(BLEU_ORDERS))
    for n in BLEU_ORDERS:
        # Over the held-out sentences: the samples, which are what a re-run redraws, are
        # their fixed references here (a jackknife over them would rebuild the references
        # once per group).
        metrics[f"bwd_bleu{n}"], errors[f"bwd_bleu{n}"] = \
            as_references.score_and_se(held_out, max_n=n)
        metrics[f"fb_bleu{n}"] = quality.fb_bleu(forward[f"bleu{n}"], metrics[f"bwd_bleu{n}"])
        errors[f"fb_bleu{n}"] = quality.fb_bleu_se(
            forward[f"bleu{n}"], metrics[f"bwd_bleu{n}"],
            errors.get(f"bleu{n}", math.nan), errors[f"bwd_bleu{n}"])
    for n in MS_JACCARD_ORDERS:
        metrics[f"ms_jaccard{n}"] = quality.ms_jaccard(sentences, held_out, max_n=n)
    for n in DISTINCT_ORDERS:
        metrics[f"distinct_{n}"] = quality.distinct_n(sentences, n)
    return metrics


def _held_out_like(sentences: list[list[int]], corpus: Corpus) -> list[list[int]]:
    """As many held-out sentences as samples, so both directions of BLEU and MS-Jaccard
    compare sets of one size (a larger reference set alone raises the scores), unless the
    split is smaller than the samples (the poems', Obama's): then all of it."""
    return _split_sentences(corpus, "test")[:len(sentences)]


def _jackknife_errors(sentences: list[list[int]], corpus: Corpus) -> dict[str, float]:
    """Standard errors of distinct-n and MS-Jaccard, which are not means over samples: a
    delete-a-group jackknife over the samples (the held-out side stays whole)."""
    if len(sentences) < 2:
        return {}
    groups = jackknife_groups(len(sentences))
    distinct = quality.distinct_n_jackknife(sentences, DISTINCT_ORDERS, groups)
    jaccard = quality.ms_jaccard_jackknife(sentences, _held_out_like(sentences, corpus),
                                           MS_JACCARD_ORDERS, groups)
    return {**{f"distinct_{n}": jackknife_se(r) for n, r in distinct.items()},
            **{f"ms_jaccard{n}": jackknife_se(r) for n, r in jaccard.items()}}


def temperature_sweep(generator: Generator, corpus: Corpus, seed: int,
                      temperatures: tuple[float, ...] = SWEEP_TEMPERATURES,
                      n_samples: int = SWEEP_SAMPLES) -> list[dict]:
    """Quality against diversity at several softmax temperatures (Caccia et al. 2020), so
    no method is judged at one arbitrary temperature: the same code as the main
    evaluation, on fewer samples and without the two LM scores (the costliest metrics)."""
    n = min(n_samples, corpus.eval_samples)
    with eval_mode(generator):
        held_out_nlls = nll_tests(generator, corpus, temperatures, n)
    return [evaluate(generator, corpus, seed, t, n_samples=n, reverse_lm=False,
                     held_out_nll=nll)[0]
            for t, nll in zip(temperatures, held_out_nlls)]
