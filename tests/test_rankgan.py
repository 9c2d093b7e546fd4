"""RankGAN: the ranking score and the ranker's objective against the paper's formulas, the
trained ranker's reward, a tiny run end to end, and a killed run resuming to the same result."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness import store
from harness.oracle import random_oracle
from harness_plugins.adversarial import Rollout
from harness.generator import LSTMGenerator
from harness_plugins.rankgan import (RankGanConfig, Ranker, authors_ranker_loss, batch_scores,
                                     log_rank, rank_reward, ranker_loss, train_ranker)

TINY = ["pretrain_epochs=2", "eval_every=1", "batch_size=32", "adv_batches=3",
        "adv_eval_every=1", "adv_batch_size=16", "n_rollouts=2", "ranker_pretrain_rounds=2",
        "ranker_negatives=64", "comparison_size=16", "ref_size=4"]


def naive_log_rank(s: torch.Tensor, refs: torch.Tensor, comparison: torch.Tensor,
                   gamma: float) -> float:
    """The paper's log R(s|U, C), one reference and one rival at a time."""
    def cosine(a, b):
        return float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))

    total = 0.0
    for u in refs:
        rivals = [s, *comparison]  # C' = C + {s}
        p = math.exp(gamma * cosine(s, u)) / sum(math.exp(gamma * cosine(r, u)) for r in rivals)
        total += math.log(p)
    return total / len(refs)


def test_log_rank_is_the_papers_expected_log_ranking_score():
    # Hand-made features of different norms (cosine, not the dot product, must decide), two
    # candidates (each ranked against C + itself, not against the other candidate), two
    # references of different relevance (the mean of logs, not the log of a mean or a sum),
    # and gamma != 1.
    candidates = torch.tensor([[1.0, 0.0, 2.0], [0.5, 3.0, -1.0]])
    refs = torch.tensor([[2.0, 0.0, 1.0], [-1.0, 1.0, 0.0]])
    comparison = torch.tensor([[0.0, 1.0, 0.0], [4.0, -2.0, 1.0], [1.0, 1.0, 1.0]])
    gamma = 2.5
    got = log_rank(candidates, refs, comparison, gamma)
    expected = torch.tensor([naive_log_rank(c, refs, comparison, gamma) for c in candidates])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # Scaling a feature vector leaves its rank alone; a rival identical to s halves P(s|u).
    torch.testing.assert_close(log_rank(candidates * 7, refs, comparison, gamma), got)
    alone = log_rank(candidates[:1], refs, candidates[:1], gamma)
    torch.testing.assert_close(alone, torch.tensor([math.log(0.5)]))


def test_ranker_loss_is_the_papers_objective():
    torch.manual_seed(0)
    ranker = Ranker(30, 8, "small").eval()  # eval: no dropout, features are deterministic
    real, fake, refs = (torch.randint(0, 30, (n, 8)) for n in (5, 4, 3))
    gamma = 1.7
    with torch.no_grad():
        loss = ranker_loss(ranker, real, fake, refs, gamma)
        y_real, y_fake, y_ref = ranker(real), ranker(fake), ranker(refs)
    # Real rows ranked among generated ones (C-), generated among real ones (C+).
    expected = -(sum(naive_log_rank(s, y_ref, y_fake, gamma) for s in y_real) / 5
                 - sum(naive_log_rank(s, y_ref, y_real, gamma) for s in y_fake) / 4)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_a_trained_ranker_rewards_real_sequences_above_generated_ones():
    torch.manual_seed(0)
    oracle = random_oracle(vocab_size=40, seq_len=8, emb_dim=8, hidden_dim=8, seed=11)
    rng = torch.Generator().manual_seed(0)
    real = oracle.sample(1400, generator=rng)
    noise = torch.randint(0, 40, (1000, 8), generator=rng)
    cfg = RankGanConfig(comparison_size=32, ref_size=8, gamma=4.0)
    ranker = Ranker(40, 8, "small")
    optimizer = torch.optim.Adam(ranker.parameters(), lr=1e-3)
    reward, across_batch = rank_reward(ranker, real[:1000], cfg, torch.Generator().manual_seed(1))
    assert across_batch is None  # the paper's reward stands alone
    before = reward(real[1000:1200]).mean() - reward(noise[800:]).mean()
    losses = [train_ranker(ranker, optimizer, real[:800], noise[:800], real[:1000], 1, cfg, rng)
              for _ in range(3)]
    assert losses[-1] < losses[0]
    held_out_real, held_out_noise = reward(real[1200:]), reward(noise[800:])
    assert (held_out_real <= 0).all() and (held_out_noise <= 0).all()  # log-probabilities
    assert held_out_real.mean() - held_out_noise.mean() > max(0.5, before + 0.3)
    assert ranker.training  # the reward scores in eval mode and restores the mode


# --- the authors' code (cookielee77/RankGan-NIPS2017 @912b3b3) ---------------------------

def theirs_scores(features: np.ndarray, references: np.ndarray, gamma: float) -> np.ndarray:
    """ranker.py 141-143: gamma * reduce_sum(l2_normalize(y) @ l2_normalize(y_ref).T, 1)."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    ref_unit = references / np.linalg.norm(references, axis=1, keepdims=True)
    return gamma * np.sum(unit @ ref_unit.T, axis=1)


def theirs_rank_loss(features: np.ndarray, references: np.ndarray, labels: np.ndarray,
                     gamma: float) -> float:
    """ranker.py 144-157: log of one softmax over the batch; input_y one-hot [fake, real]."""
    scores = theirs_scores(features, references, gamma)
    log_rank = np.log(np.exp(scores) / np.sum(np.exp(scores)))
    neg_ind, pos_ind = labels.T
    pos_loss = np.sum(pos_ind * log_rank) / np.sum(pos_ind)
    neg_loss = np.sum(neg_ind * log_rank) / np.sum(neg_ind)
    return float(-(pos_loss - neg_loss))


def test_the_authors_ranker_loss_is_their_code():
    torch.manual_seed(0)
    ranker = Ranker(30, 8, "small").eval()
    rows, refs = torch.randint(0, 30, (10, 8)), torch.randint(0, 30, (4, 8))
    is_real = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0, 0, 0], dtype=torch.bool)
    gamma = 1.7
    with torch.no_grad():
        loss = authors_ranker_loss(ranker, rows, is_real, refs, gamma)
        features, ref_features = ranker(rows).double().numpy(), ranker(refs).double().numpy()
    labels = np.stack([~is_real.numpy(), is_real.numpy()], axis=1).astype(float)
    assert loss.item() == pytest.approx(theirs_rank_loss(features, ref_features, labels, gamma),
                                        abs=1e-5)
    assert batch_scores(torch.from_numpy(features) * 3, torch.from_numpy(ref_features), gamma) \
        .numpy() == pytest.approx(theirs_scores(features, ref_features, gamma))  # cosines


def test_the_authors_reward_is_a_softmax_among_the_batchs_own_completions(monkeypatch):
    """rollout.py 100-109 and ranker.py 148-149: the completions of every rollout k and
    prefix length t, then the sequences themselves, scored together, reshaped [K, T, B],
    a softmax over B, the mean over K, transposed to [B, T]."""
    torch.manual_seed(0)
    n_seq, length, rollouts, vocab = 5, 6, 3, 11
    sequences = torch.randint(0, vocab, (n_seq, length))
    completions = torch.randint(0, vocab, (length - 1, rollouts, n_seq, length))  # ours: (t, k, b)
    monkeypatch.setattr(Rollout, "_complete", lambda self, tokens, *args: completions.reshape(
        -1, length).clone())
    ranker = Ranker(vocab, length, "small").eval()
    refs = torch.randint(0, vocab, (4, length))
    gamma = 1.3

    def score(rows):  # their score of every row, with one reference set
        return batch_scores(ranker.eval_features(rows), ranker.eval_features(refs), gamma)

    generator = LSTMGenerator(vocab_size=vocab, seq_len=length, emb_dim=4, hidden_dim=4)
    ours = Rollout(generator).rewards(sequences, rollouts, score,
                                      across_batch=lambda s: torch.softmax(s, dim=1))
    # Theirs: rollout_results [K, T, B, T], the sequences themselves as step T.
    results = torch.cat([completions.transpose(0, 1),
                         sequences.expand(rollouts, 1, n_seq, length)], dim=1)
    with torch.no_grad():
        features = ranker(results.reshape(-1, length)).double().numpy()
        ref_features = ranker(refs).double().numpy()
    scores = theirs_scores(features, ref_features, gamma).reshape(rollouts, length, n_seq)
    all_rank_score = np.exp(scores) / np.exp(scores).sum(axis=2, keepdims=True)
    theirs = np.transpose(np.mean(all_rank_score, axis=0))
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-6)
    assert ours.sum(dim=0).numpy() == pytest.approx(np.ones(length))  # shares of the batch


def test_the_authors_batches_mix_both_kinds_in_one_order_for_every_epoch():
    real, fake = torch.zeros(70, 3, dtype=torch.long), torch.ones(60, 3, dtype=torch.long)
    from harness_plugins.rankgan import _mixed_batches
    batches = list(_mixed_batches(real, fake, 2, 32, torch.Generator().manual_seed(0)))
    assert len(batches) == 4  # 130 rows: two of 64 an epoch, the remainder dropped
    for rows, is_real in batches:
        assert len(rows) == 64 and torch.equal(is_real, rows[:, 0] == 0)
        assert 0 < is_real.sum() < 64
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[:2], batches[2:]))


@pytest.mark.slow
def test_the_authors_profile_runs_end_to_end(cli, tiny_dataset, tmp_path):
    args = [a for s in TINY for a in ("--set", s)]
    result = cli("-q", "run", "-m", "rankgan", "-d", "tiny", "--profile", "authors",
                 "--results", str(tmp_path), *args)
    assert result.exit_code == 0, result.output
    curve = pd.read_csv(run_dir(tmp_path) / "curve.csv")
    adversarial = curve[curve.phase == "adversarial"]
    # Rewards are shares of the batch: 1 / 16 on average over the 16 sequences.
    assert adversarial.mean_reward.to_numpy() == pytest.approx(1 / 16)
    config = json.loads((run_dir(tmp_path) / "config.json").read_text())
    assert config["config"]["ranking"] == "authors" and config["config"]["pg_loss"] == "sum"


def run_dir(results: Path) -> Path:
    return next(results.glob("*/tiny/rankgan/seed-0"))


@pytest.mark.slow
def test_a_tiny_run_ends_with_finite_metrics_and_every_phase(cli, tiny_dataset, tmp_path):
    args = [a for s in TINY for a in ("--set", s)]
    result = cli("-q", "run", "-m", "rankgan", "-d", "tiny", "--results", str(tmp_path), *args)
    assert result.exit_code == 0, result.output
    curve = pd.read_csv(run_dir(tmp_path) / "curve.csv")
    assert list(curve.phase.drop_duplicates()) == ["mle", "ranker", "adversarial"]
    adversarial = curve[curve.phase == "adversarial"]
    assert list(adversarial.epoch) == [3, 4, 5]  # continues after 2 pre-training epochs
    assert (adversarial.mean_reward < 0).all()  # log-ranks
    assert adversarial.ranker_loss.notna().all()
    metrics = json.loads((run_dir(tmp_path) / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert math.isfinite(metrics["nll_oracle"])


class Killed(BaseException):
    """Stands in for SIGKILL: no handler of the harness catches it."""


def checkpoints_killing_at(monkeypatch, kills: list[tuple[str, int]]) -> list[str]:
    """Record the phase of every checkpoint written; right after the ``count``-th checkpoint
    of ``phase`` (the first of ``kills``, counted across runs) stop the run."""
    write_torch, phases = store.write_torch, []

    def write_then_maybe_die(path, obj):
        write_torch(path, obj)
        if Path(path).name == "checkpoint.pt":
            phases.append(obj["state"].get("phase"))
            if kills and phases.count(kills[0][0]) == kills[0][1]:
                raise Killed(f"after checkpoint {kills.pop(0)}")

    monkeypatch.setattr(store, "write_torch", write_then_maybe_die)
    return phases


def outcome(results: Path) -> dict:
    """What must not depend on an interruption: metrics, learning curve, samples."""
    directory = run_dir(results)
    metrics = json.loads((directory / "metrics.json").read_text())
    return {"metrics": {k: v for k, v in metrics.items()
                        if k not in ("train_seconds", "eval_seconds", "judge_lm_seconds")},
            "curve": pd.read_csv(directory / "curve.csv").astype(object).fillna("").to_dict("list"),
            "samples": (directory / "samples.txt").read_text()}


@pytest.mark.slow
def test_a_run_killed_in_each_phase_resumes_to_identical_metrics(cli, tiny_dataset, tmp_path,
                                                                  monkeypatch):
    def run(results: Path):
        args = [a for s in TINY for a in ("--set", s)]
        return cli("-q", "run", "-m", "rankgan", "-d", "tiny", "--results", str(results),
                   "--run-id", "faults", *args)

    assert run(tmp_path / "clean").exit_code == 0
    # The killed run's status names this (live) process: say it died, as a SIGKILL would.
    monkeypatch.setattr(store, "alive", lambda pid: False)
    killed = tmp_path / "killed"
    kills = [("ranker", 1), ("adversarial", 2)]
    phases = checkpoints_killing_at(monkeypatch, kills)
    for _ in range(2):  # killed, resumed, killed again
        with pytest.raises(Killed):
            run(killed)
        assert not (run_dir(killed) / "metrics.json").exists()
    assert run(killed).exit_code == 0
    assert outcome(killed) == outcome(tmp_path / "clean")
    # Each resumed where it stopped: every step was checkpointed once over the three runs.
    assert [phases.count(p) for p in ("mle", "ranker", "adversarial")] == [2, 2, 3]


# --- the authors' ranker initialisation ------------------------------------------------

def ks_distance_to_uniform(values: torch.Tensor, low: float, high: float) -> float:
    """The Kolmogorov-Smirnov statistic sup |F_n(x) - F(x)| of ``values`` against U(low, high)."""
    x = values.detach().double().flatten().sort().values
    n = len(x)
    cdf = ((x - low) / (high - low)).clamp(0, 1)
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(ranks / n - cdf, cdf - (ranks - 1) / n).max())


def assert_uniform(values: torch.Tensor, bound: float) -> None:
    """``values`` lie in [-bound, bound] and look drawn from U(-bound, bound): a fixed seed
    makes each check deterministic; the tolerances (six standard errors, a KS distance of
    3 / sqrt(n), which a true uniform exceeds with probability about 1e-7) make them loose
    enough that no seed could fail them by chance, and tight enough that SeqGAN's
    initialisation (U(-1, 1), a truncated normal of std 0.1, constants) fails them."""
    x = values.detach().double().flatten()
    n, std = len(x), bound / math.sqrt(3)  # U(-b, b): variance b^2 / 3
    assert -bound <= float(x.min()) and float(x.max()) <= bound
    assert abs(float(x.mean())) < 6 * std / math.sqrt(n)
    # the sample std's standard error for a uniform (kurtosis 9/5): std * sqrt(0.8 / (4 n))
    assert abs(float(x.std()) - std) < 6 * std * math.sqrt(0.2 / n)
    assert ks_distance_to_uniform(x, -bound, bound) < 3 / math.sqrt(n)


def test_the_authors_ranker_initialisation_is_their_code():
    """cookielee77/RankGan-NIPS2017 @912b3b3 ranker.py: random_uniform_initializer(-0.1, 0.1)
    (line 85) for the embedding W (93) and every convolution's W and b (103-104); the
    highway's SimpleLinear Matrix [n, n] and Bias [n] (30-31) take get_variable's default,
    Glorot uniform: limit sqrt(6 / (fan_in + fan_out)), fans n and n for both shapes."""
    torch.manual_seed(0)
    ranker = Ranker(500, 20, "paper", "authors")
    cnn = ranker.cnn
    assert cnn.filter_sizes == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)  # every window kept
    assert_uniform(cnn.embedding.weight, 0.1)
    assert_uniform(torch.cat([conv.weight.flatten() for conv in cnn.convs]), 0.1)
    assert_uniform(torch.cat([conv.bias for conv in cnn.convs]), 0.1)  # 1,720 biases
    n = sum(cnn.num_filters)
    for layer in (cnn.highway.transform, cnn.highway.gate):
        assert_uniform(layer.weight, math.sqrt(6 / (n + n)))
        assert_uniform(layer.bias, math.sqrt(6 / (n + n)))
    # SeqGAN's initialisation fails the same checks: the test tells the two apart.
    torch.manual_seed(0)
    seqgan = Ranker(500, 20, "paper").cnn
    with pytest.raises(AssertionError):
        assert_uniform(seqgan.embedding.weight, 0.1)
    with pytest.raises(AssertionError):
        assert_uniform(torch.cat([conv.bias for conv in seqgan.convs]), 0.1)
    # Their ranker has no output layer; ours, unused, keeps the very draw it had.
    assert torch.equal(cnn.output.weight, seqgan.output.weight)
    with torch.no_grad():  # and the features are the same computation
        assert ranker(torch.randint(0, 500, (3, 20))).shape == (3, n)


def test_the_default_ranker_initialisation_is_seqgans_discriminator_draw_for_draw():
    from harness_plugins.adversarial import SMALL, Discriminator

    torch.manual_seed(0)
    ranker = Ranker(30, 8, "small")
    torch.manual_seed(0)
    disc = Discriminator(30, 8, **SMALL)
    assert ranker.cnn.state_dict().keys() == disc.state_dict().keys()
    assert all(torch.equal(ranker.cnn.state_dict()[k], v) for k, v in disc.state_dict().items())
    with pytest.raises(ValueError, match="ranker init"):
        Ranker(30, 8, "small", "uniform")
    with pytest.raises(ValueError, match="ranker_init"):
        RankGanConfig(ranker_init="uniform")


def test_the_authors_profile_holds_their_code_settings():
    from dataclasses import asdict

    from harness.config import resolve
    from harness.plugins import registry
    from harness_plugins import rankgan as rg

    method = registry().methods["rankgan"]
    config = asdict(resolve(method, "authors", {}))
    assert {key: config[key] for key in rg.AUTHORS} == rg.AUTHORS
    assert (config["ranker_init"], config["shuffle"], config["lstm_biases"]) == ("authors",
                                                                                 False, 1)
    # As before, but paper's MLE walks the file in order (every paper profile's does).
    for profile, shuffle in (("default", True), ("paper", False)):
        other = asdict(resolve(method, profile, {}))
        assert (other["ranker_init"], other["shuffle"], other["lstm_biases"]) == ("seqgan",
                                                                                  shuffle, 2)
    # the shared MLE run it starts from is the authors' too: in order, one bias per gate
    from harness_plugins.adversarial import mle_settings

    settings = mle_settings(resolve(method, "authors", {}))
    assert settings["shuffle"] is False and settings["lstm_biases"] == 1
