"""LM score and reverse LM score: the harness's own language models judge samples."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from harness import evaluate, language_model
from harness_tiny import tiny_oracle_corpus

FAST = language_model.LmSettings(emb_dim=8, hidden_dim=16, lr=0.02, max_epochs=5)


@pytest.fixture(scope="module")
def text_corpus():
    """The tiny oracle's data as if it were text: no oracle, so the LM scores apply."""
    return dataclasses.replace(tiny_oracle_corpus("default", 0), oracle=None, name="tinytext")


def test_the_reference_lm_prefers_real_data_to_noise(text_corpus):
    lm = language_model.fit(text_corpus.train, text_corpus, seed=0, settings=FAST,
                            valid=text_corpus.test)
    noise = torch.randint(0, text_corpus.vocab_size, text_corpus.test.shape,
                          generator=torch.Generator().manual_seed(0))
    assert language_model.nll(lm, text_corpus.test) < language_model.nll(lm, noise) - 0.3


def test_the_reverse_lm_score_punishes_a_collapsed_generator(text_corpus, monkeypatch):
    monkeypatch.setattr(language_model, "REVERSE", FAST)
    varied = language_model.reverse_lm_score(text_corpus.train, text_corpus, seed=0)
    collapsed = language_model.reverse_lm_score(text_corpus.train[:1].repeat(256, 1),
                                                text_corpus, seed=0)
    assert varied < collapsed - 0.5


def test_fitting_leaves_the_global_random_state_alone(text_corpus):
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    language_model.fit(text_corpus.train[:64], text_corpus, seed=0,
                       settings=dataclasses.replace(FAST, max_epochs=1))
    assert torch.equal(torch.rand(4), expected)


def test_the_reference_lm_is_trained_once_per_data_set_and_seed(text_corpus, tmp_path,
                                                                monkeypatch):
    first = language_model.reference_lm(text_corpus, 0, tmp_path)
    assert len(list(tmp_path.glob("lm-*.pt"))) == 1
    monkeypatch.setattr(language_model, "fit", lambda *a, **k: pytest.fail("trained again"))
    again = language_model.reference_lm(text_corpus, 0, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))


def test_runs_beside_each_other_train_the_reference_lm_once(text_corpus, tmp_path,
                                                            monkeypatch):
    import threading
    import time

    trained = []
    real_fit = language_model.fit

    def slow_fit(*args, **kwargs):
        trained.append(1)
        time.sleep(0.5)  # long enough for the other caller to arrive while this one trains
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(language_model, "fit", slow_fit)
    lms = []
    callers = [threading.Thread(target=lambda: lms.append(
        language_model.reference_lm(text_corpus, 0, tmp_path))) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(trained) == 1 and len(lms) == 2
    assert all(torch.equal(a, b) for a, b in zip(lms[0].parameters(), lms[1].parameters()))


def test_text_evaluations_have_the_lm_scores_and_synthetic_ones_the_oracle(text_corpus,
                                                                         monkeypatch):
    monkeypatch.setattr(language_model, "REVERSE", FAST)
    real = tiny_oracle_corpus("default", 0)
    judge = language_model.fit(text_corpus.train, text_corpus, 0, FAST, valid=text_corpus.test)
    on_text, _ = evaluate.evaluate(real.oracle, text_corpus, 0, judge=judge)
    on_oracle, _ = evaluate.evaluate(real.oracle, real, 0)
    assert {"lm_score", "reverse_lm_score"} <= set(on_text) and "nll_oracle" not in on_text
    assert "nll_oracle" in on_oracle and "reverse_lm_score" not in on_oracle
