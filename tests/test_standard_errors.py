"""evaluate(standard_errors=True): every metric value stays bit for bit what it was, and each
standard error equals a naive computation from per-sample values."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from harness import Generator, evaluate, language_model, quality
from harness.generator import LSTMGenerator, eval_mode
from harness.uncertainty import binomial_se, jackknife_groups, jackknife_se
from harness_tiny import tiny_oracle_corpus

FAST = language_model.LmSettings(emb_dim=8, hidden_dim=16, lr=0.02, max_epochs=3)
CONSTANTS = {"temperature", "n_samples", "n_references", "n_train_references", "n_held_out",
             "n_self_bleu_hypotheses", "nll_test_is_bound"}


@pytest.fixture(scope="module")
def oracle_corpus():
    return tiny_oracle_corpus("default", 0)


@pytest.fixture(scope="module")
def text_corpus(oracle_corpus):
    """The tiny oracle's data as text: no oracle, and a sentence ends at the token nearest to
    1/16 of all positions, so sentences have many lengths (empty ones too)."""
    share = torch.bincount(oracle_corpus.train.flatten()) / oracle_corpus.train.numel()
    end = int((share - 1 / 16).abs().argmin())
    return dataclasses.replace(oracle_corpus, oracle=None, end_token=end, name="tinytext")


@pytest.fixture(scope="module")
def judge(text_corpus):
    return language_model.fit(text_corpus.train, text_corpus, 0, FAST, valid=text_corpus.test)


@pytest.fixture
def fast_reverse_lm(monkeypatch):
    monkeypatch.setattr(language_model, "REVERSE", FAST)


class Copier(Generator):
    """Half copies of training rows, half noise, and no likelihood: a train-copy share far
    from 0 and no NLL-test."""

    def __init__(self, corpus):
        self.train, self.vocab_size = corpus.train, corpus.vocab_size

    def sample(self, n, temperature=1.0, generator=None):
        copies = self.train[torch.randint(len(self.train), (n,), generator=generator)]
        noise = torch.randint(self.vocab_size, (n, self.train.shape[1]), generator=generator)
        return torch.where(torch.rand(n, 1, generator=generator) < 0.5, copies, noise)

    def log_likelihood(self, tokens, temperature=1.0):
        raise NotImplementedError


def _untrained(corpus) -> LSTMGenerator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LSTMGenerator(corpus.vocab_size, corpus.seq_len, 8, 8, corpus.start_token)


@torch.no_grad()  # as the evaluation scores: the CPU's LSTM kernel differs with gradients
def _nll_as_before(scorer, tokens: torch.Tensor) -> float:
    """mean_token_nll's accumulation before standard errors existed, verbatim."""
    total = 0.0
    for start in range(0, len(tokens), 16):
        total -= scorer.log_likelihoods(tokens[start:start + 16], (1.0,))[0].sum().item()
    return total / tokens.numel()


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def _case(name, oracle_corpus, text_corpus, judge):
    if name == "oracle":
        return _untrained(oracle_corpus), oracle_corpus, None
    if name == "text":
        return oracle_corpus.oracle, text_corpus, judge
    return Copier(text_corpus), text_corpus, None


@pytest.mark.parametrize("name", ["oracle", "text", "no likelihood"])
def test_the_metric_values_are_bit_for_bit_those_without_standard_errors(
        name, oracle_corpus, text_corpus, judge, fast_reverse_lm):
    generator, corpus, lm = _case(name, oracle_corpus, text_corpus, judge)
    plain, samples = evaluate.evaluate(generator, corpus, 0, judge=lm)
    with_errors, again = evaluate.evaluate(generator, corpus, 0, judge=lm, standard_errors=True)
    errors = with_errors.pop("standard_errors")
    assert torch.equal(samples, again) and "standard_errors" not in plain
    assert list(with_errors) == list(plain)
    assert all(_same(with_errors[k], plain[k]) for k in plain)
    # The accumulation of the NLLs and the mean of BLEU are what they always were.
    if corpus.oracle is not None:
        assert plain["nll_oracle"] == _nll_as_before(corpus.oracle, samples)
    if lm is not None:
        assert plain["lm_score"] == _nll_as_before(lm, samples)
    if not math.isnan(plain["nll_test"]):  # the generator has a likelihood
        with eval_mode(generator):
            assert plain["nll_test"] == _nll_as_before(generator, corpus.test[:len(samples)])
    bleu = evaluate.references(corpus, "test").sentence_scores(corpus.sentences(samples), 4)
    assert plain["bleu4"] == float(bleu.mean())
    # Every metric computed from samples or held-out rows has an error, nothing else does.
    expected = set(plain) - CONSTANTS - ({"nll_test"} if math.isnan(plain["nll_test"]) else set())
    assert set(errors) == expected
    assert all(math.isfinite(se) and se >= 0 for se in errors.values())


def _nltk_bleus(hypotheses, references, n) -> np.ndarray:
    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    method1 = bleu_score.SmoothingFunction().method1
    return np.array([bleu_score.sentence_bleu(references, h, weights=(1 / n,) * n,
                                              smoothing_function=method1) for h in hypotheses])


def _se(values) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


@torch.no_grad()
def _token_nlls(scorer, tokens: torch.Tensor) -> list[float]:
    return [-scorer.log_likelihood(row[None]).item() / tokens.shape[1] for row in tokens]


def _delete_one(statistic, items: list) -> float:
    """The delete-one jackknife's standard error, computed from scratch."""
    values = np.array([statistic(items[:k] + items[k + 1:]) for k in range(len(items))])
    return math.sqrt((len(values) - 1) / len(values) * ((values - values.mean()) ** 2).sum())


def test_each_standard_error_is_the_naive_one_from_per_sample_values(
        oracle_corpus, text_corpus, judge, fast_reverse_lm):
    corpus, generator, n_samples = text_corpus, oracle_corpus.oracle, 16
    metrics, samples = evaluate.evaluate(generator, corpus, 0, n_samples=n_samples, judge=judge,
                                         standard_errors=True)
    errors = metrics["standard_errors"]
    approx = dict(rel=1e-5, abs=1e-12)

    assert errors["nll_test"] == pytest.approx(
        _se(_token_nlls(generator, corpus.test[:n_samples])), **approx)
    assert errors["lm_score"] == pytest.approx(_se(_token_nlls(judge, samples)), **approx)
    reverse = language_model.fit(samples[:language_model.REVERSE_SAMPLES], corpus, 0, FAST)
    assert errors["reverse_lm_score"] == pytest.approx(
        _se(_token_nlls(reverse, corpus.test[:language_model.REVERSE_SAMPLES])), **approx)

    sentences = corpus.sentences(samples)
    held_out = corpus.sentences(corpus.test)
    for n in evaluate.BLEU_ORDERS:
        forward = _nltk_bleus(sentences, held_out, n)
        backward = _nltk_bleus(held_out[:n_samples], sentences, n)
        self_scores = [_nltk_bleus([s], sentences[:i] + sentences[i + 1:], n)[0]
                       for i, s in enumerate(sentences)]
        assert errors[f"bleu{n}"] == pytest.approx(_se(forward), **approx)
        assert errors[f"bleu{n}_train"] == pytest.approx(
            _se(_nltk_bleus(sentences, corpus.sentences(corpus.train), n)), **approx)
        assert errors[f"bwd_bleu{n}"] == pytest.approx(_se(backward), **approx)
        assert errors[f"self_bleu{n}"] == pytest.approx(_se(self_scores), **approx)
        assert errors[f"fb_bleu{n}"] == pytest.approx(quality.fb_bleu_se(
            forward.mean(), backward.mean(), _se(forward), _se(backward)), **approx)

    for n in evaluate.DISTINCT_ORDERS:
        assert errors[f"distinct_{n}"] == pytest.approx(
            _delete_one(lambda s: quality.distinct_n(s, n), sentences), **approx)
    for n in evaluate.MS_JACCARD_ORDERS:
        assert errors[f"ms_jaccard{n}"] == pytest.approx(_delete_one(
            lambda s: quality.ms_jaccard(s, held_out[:n_samples], max_n=n), sentences), **approx)


def test_nll_oracle_and_train_copy_errors_are_the_naive_ones(oracle_corpus, text_corpus):
    metrics, samples = evaluate.evaluate(_untrained(oracle_corpus), oracle_corpus, 0,
                                         n_samples=40, standard_errors=True)
    assert metrics["standard_errors"]["nll_oracle"] == pytest.approx(
        _se(_token_nlls(oracle_corpus.oracle, samples)), rel=1e-5)

    metrics, samples = evaluate.evaluate(Copier(text_corpus), text_corpus, 0, n_samples=40,
                                         reverse_lm=False, standard_errors=True)
    training = set(map(tuple, text_corpus.sentences(text_corpus.train)))
    copied = np.array([tuple(s) in training for s in text_corpus.sentences(samples)])
    assert 0.2 < copied.mean() < 0.8
    assert metrics["standard_errors"]["train_copy"] == pytest.approx(
        math.sqrt(copied.mean() * (1 - copied.mean()) / len(copied)), rel=1e-12)
    assert "nll_test" not in metrics["standard_errors"]  # no likelihood, no error


@pytest.mark.parametrize("shuffled", [False, True])
def test_the_jackknife_replicates_are_the_metrics_recomputed_without_each_group(shuffled):
    rng = np.random.default_rng(0)
    sentences = [rng.integers(0, 6, rng.integers(0, 9)).tolist() for _ in range(50)]
    reference = [rng.integers(0, 6, rng.integers(0, 9)).tolist() for _ in range(30)]
    groups = jackknife_groups(len(sentences), 7)  # groups of 7 and 8
    if shuffled:
        groups = rng.permutation(groups)

    def without(k):
        return [s for s, g in zip(sentences, groups) if g != k]

    distinct = quality.distinct_n_jackknife(sentences, (1, 2, 3, 4), groups)
    jaccard = quality.ms_jaccard_jackknife(sentences, reference, (2, 3, 4), groups)
    for n, replicates in distinct.items():
        np.testing.assert_allclose(replicates, [quality.distinct_n(without(k), n)
                                                for k in range(7)], rtol=1e-12)
    for n, replicates in jaccard.items():
        np.testing.assert_allclose(replicates, [quality.ms_jaccard(without(k), reference, n)
                                                for k in range(7)], rtol=1e-12)
    assert jackknife_se(distinct[2]) > 0


@pytest.mark.parametrize("forward, backward, forward_se, backward_se",
                         [(0.3, 0.5, 0.01, 0.02), (0.05, 0.9, 0.003, 0.001), (0.7, 0.7, 0.1, 0)])
def test_the_fb_bleu_error_is_the_delta_method_by_finite_differences(forward, backward,
                                                                     forward_se, backward_se):
    step = 1e-6
    d_forward = (quality.fb_bleu(forward + step, backward)
                 - quality.fb_bleu(forward - step, backward)) / (2 * step)
    d_backward = (quality.fb_bleu(forward, backward + step)
                  - quality.fb_bleu(forward, backward - step)) / (2 * step)
    assert quality.fb_bleu_se(forward, backward, forward_se, backward_se) == pytest.approx(
        math.hypot(d_forward * forward_se, d_backward * backward_se), rel=1e-6)


def test_degenerate_cases_give_zero_or_no_error():
    assert quality.fb_bleu_se(0.0, 0.0, 0.0, 0.0) == 0.0
    assert binomial_se(0.0, 10) == 0.0 and math.isnan(binomial_se(0.5, 0))
    assert math.isnan(jackknife_se(np.array([0.5])))
