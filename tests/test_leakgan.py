"""LeakGAN: the leaked-feature manager/worker generator checked against a naive step-by-step
computation of the paper's equations, its objectives against their formulas, and the
method end to end (run, save and load, resume after a kill)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness import store
from harness.api import Interrupted
from harness.generator import load_generator, log_probs_of_tokens
from harness_plugins import adversarial as adv
from harness_plugins import leakgan as lg

VOCAB, LENGTH, C = 11, 7, 3
TINY_RUN = ["pretrain_cycles=2", "pretrain_epochs=1", "disc_pretrain_rounds=1",
            "disc_negatives=64", "disc_batch_size=32", "batch_size=32", "adv_batches=3",
            "adv_eval_every=1", "n_rollouts=2", "mle_every=2", "emb_dim=8", "hidden_dim=8",
            "goal_size=4"]


def tiny_generator(seed: int = 0) -> lg.LeakGanGenerator:
    torch.manual_seed(seed)
    generator = lg.LeakGanGenerator(VOCAB, LENGTH, start_token=2, emb_dim=5, hidden_dim=6,
                                    goal_size=4, step_size=C, disc_emb_dim=4,
                                    filter_sizes=(1, 2, 3), num_filters=(3, 4, 5))
    # The leak must matter: a larger discriminator embedding spreads its features.
    torch.nn.init.normal_(generator.discriminator.embedding.weight, 0.0, 2.0)
    return generator.eval()


def tokens(rows: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randint(VOCAB, (rows, LENGTH), generator=torch.Generator().manual_seed(seed))


def naive_features(disc, prefix: torch.Tensor) -> torch.Tensor:
    """The discriminator's features of prefix [B, t], padded to full length with zero
    embeddings, written out: convolution, max over time, ReLU, highway."""
    embedded = disc.embedding(prefix)
    padded = torch.cat([embedded, embedded.new_zeros(len(prefix), LENGTH - prefix.shape[1],
                                                     embedded.shape[2])], dim=1)
    pooled = [F.relu(conv(padded.transpose(1, 2)).amax(dim=2)) for conv in disc.convs]
    return disc.highway(torch.cat(pooled, dim=1))


@torch.no_grad()
def naive_log_probs(g: lg.LeakGanGenerator, y: torch.Tensor) -> torch.Tensor:
    """log p(y_t | y_<t) by the paper's equations, one step at a time:
    f_t = D-features(y_<t); g_t = normalise(manager(f_t)); w_t = normalise(psi(sum of
    g_{t-c}..g_{t-1})), w_0 from the initial goal; logits = O_t w_t. Under ``initial_goal``
    "manager" g_0 is row i's goal_init[i mod B], normalised, and w_0 reads it."""
    n = len(y)
    manager_goal = g.initial_goal == "manager"
    manager_state = worker_state = None
    goals, out = [], []
    previous = torch.full((n, 1), g.start_token)
    for t in range(LENGTH):
        f = naive_features(g.discriminator, y[:, :t])
        m, manager_state = g.manager(f[:, None], manager_state)
        goal = F.normalize(g.manager_output(m[:, 0]), dim=1)
        if manager_goal and t == 0:
            goal = F.normalize(g.goal_init[torch.arange(n) % len(g.goal_init)], dim=1)
        window = goals[max(0, t - C):t]
        summed = sum(window) if window else goal if manager_goal else g.goal_init.expand(n, -1)
        w = F.normalize(summed @ g.goal_projection.weight.T, dim=1)
        h, worker_state = g.worker(g.embedding(previous), worker_state)
        o = g.worker_output(h[:, 0]).view(n, VOCAB, g.goal_size)  # O_t
        logits = torch.einsum("bvk,bk->bv", o, w)
        out.append(F.log_softmax(logits, dim=1).gather(1, y[:, t:t + 1])[:, 0])
        goals.append(goal)
        previous = y[:, t:t + 1]
    return torch.stack(out, dim=1)


def test_prefix_features_are_the_discriminators_features_of_the_zero_padded_prefix():
    g, y = tiny_generator(), tokens()
    with torch.no_grad():
        every = g.prefix_features(y)
        growing = lg.GrowingPrefixFeatures(g.discriminator, len(y), LENGTH)
        for t in range(LENGTH + 1):
            expected = naive_features(g.discriminator, y[:, :t])
            torch.testing.assert_close(every[:, t], expected, atol=1e-5, rtol=0)
            torch.testing.assert_close(growing.features(), expected, atol=1e-5, rtol=0)
            if t < LENGTH:
                growing.read(y[:, t])
        # the full sequence's features are what the discriminator's output layer reads
        logits = g.discriminator.output(every[:, -1])
        torch.testing.assert_close(logits, g.discriminator(y), atol=1e-5, rtol=0)


def test_token_probabilities_follow_the_papers_equations_step_by_step():
    g, y = tiny_generator(), tokens()
    with torch.no_grad():
        fast = g.token_log_probs(y)
    torch.testing.assert_close(fast, naive_log_probs(g, y), atol=1e-5, rtol=0)


def test_the_discriminator_features_steer_the_generator_and_only_the_prefix_leaks():
    g, y = tiny_generator(), tokens()
    with torch.no_grad():
        before = g.token_log_probs(y)
        changed = y.clone()
        changed[:, 4] = (y[:, 4] + 1) % VOCAB  # a later token may not affect earlier steps
        after_change = g.token_log_probs(changed)
        # log p(y_t | y_<t) for t < 4 must not move (the token at 4 itself changed).
        torch.testing.assert_close(after_change[:, :4], before[:, :4], atol=1e-6, rtol=0)
        assert (after_change[:, 5:] - before[:, 5:]).abs().max() > 1e-4
        g.discriminator.convs[0].bias.add_(1.0)  # other features, other goals, other tokens
        assert (g.token_log_probs(y)[:, 1:] - before[:, 1:]).abs().max() > 1e-4
        # f_0, the empty prefix's features, reach the manager but no goal is used yet.
        torch.testing.assert_close(g.token_log_probs(y)[:, 0], before[:, 0])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_draws_from_the_teacher_forced_distribution(temperature):
    g, y = tiny_generator(), tokens(20)
    given = torch.arange(20) % (LENGTH + 1)  # every prefix length, 0 (sample all) to T (keep all)
    drawn, step_log_probs = g.complete(y, given, temperature, torch.Generator().manual_seed(3),
                                       return_log_probs=True)
    kept = torch.arange(LENGTH) < given[:, None]
    assert torch.equal(drawn[kept], y[kept]) and not torch.equal(drawn, y)
    with torch.no_grad():
        teacher_forced = g.token_log_probs(drawn, temperature)
    torch.testing.assert_close(step_log_probs[~kept], teacher_forced[~kept], atol=1e-5, rtol=0)


def test_manager_loss_is_the_reward_weighted_cosine_to_the_feature_change():
    torch.manual_seed(5)
    goals, features = torch.randn(3, LENGTH, 6), torch.randn(3, LENGTH + 1, 6)
    q = torch.rand(3, LENGTH - C + 1)
    terms = [q[b, t] * F.cosine_similarity(features[b, t + C] - features[b, t], goals[b, t], dim=0)
             for b in range(3) for t in range(LENGTH - C + 1)]
    expected = -torch.stack(terms).mean()
    assert lg.manager_loss(goals, features, C, q).item() == pytest.approx(expected.item(), abs=1e-6)
    plain = -torch.stack([t / w for t, w in zip(terms, q.flatten())]).mean()
    assert lg.manager_loss(goals, features, C).item() == pytest.approx(plain.item(), abs=1e-6)


def test_intrinsic_reward_averages_the_cosines_of_the_last_c_goals():
    torch.manual_seed(6)
    goals, features = torch.randn(2, LENGTH, 6), torch.randn(2, LENGTH + 1, 6)
    # Token t (0-based) leads to f_{t+1}; goal g_s was emitted having read f_s.
    for b in range(2):
        for t in range(LENGTH):
            cosines = [F.cosine_similarity(features[b, t + 1] - features[b, t + 1 - i],
                                           goals[b, t + 1 - i], dim=0)
                       for i in range(1, C + 1) if t + 1 - i >= 0]
            expected = torch.stack(cosines).mean().item()
            assert lg.intrinsic_rewards(goals, features, C)[b, t].item() == pytest.approx(
                expected, abs=1e-6)


def test_rewards_are_rescaled_by_their_rank_in_the_batch():
    raw = torch.tensor([[0.9, 0.1], [0.2, 0.3], [0.5, 0.2], [0.1, 0.8]])
    ranks = torch.tensor([[1, 4], [3, 2], [2, 3], [4, 1]], dtype=torch.float)
    expected = torch.sigmoid(16.0 * (0.5 - ranks / 4))
    torch.testing.assert_close(lg.rescale_by_rank(raw, 16.0), expected)
    # Only the order counts: any monotone change of the raw rewards gives the same rewards.
    torch.testing.assert_close(lg.rescale_by_rank(raw.pow(3) * 100, 16.0), expected)


def test_rewards_come_from_rollouts_every_c_tokens_and_weight_the_goals_c_ahead():
    assert lg.reward_points(7, 3) == [3, 6, 7] and lg.reward_points(8, 4) == [4, 8]
    rewards = torch.tensor([[10.0, 20.0, 30.0]])
    # g_t aims at f_{t+3}: reward points 3, 6, 6, 6, 7 for t = 0..4
    assert lg.manager_weights(rewards, 7, 3).tolist() == [[10, 20, 20, 20, 30]]
    g, y = tiny_generator(), tokens(4)
    last_token = lambda rows: rows[:, -1].float()  # noqa: E731
    raw = lg.rollout_rewards(g, y, 3, last_token, torch.Generator().manual_seed(0))
    assert raw.shape == (4, 3)
    assert torch.equal(raw[:, -1], y[:, -1].float())  # at T, the sequence itself


def test_worker_and_manager_losses_train_only_their_own_module():
    g, y = tiny_generator(), tokens()
    g.train()
    logits, goals, features = g.teacher_forced(y)
    worker = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    manager = lg.manager_loss(goals, features, C)
    for loss, trained, untouched in ((worker, g.worker_parameters(), g.manager_parameters()),
                                     (manager, g.manager_parameters(), g.worker_parameters())):
        g.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        assert all(p.grad is not None for p in trained)
        assert all(p.grad is None for p in untouched)
        assert all(p.grad is None for p in g.discriminator.parameters())


def results() -> Path:
    return Path(os.environ["HARNESS_RESULTS"])


def settings(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.mark.slow
def test_runs_end_to_end_and_its_saved_generator_samples_and_scores(cli, tiny_dataset):
    result = cli("-q", "run", "-m", "leakgan", "-d", "tiny", *settings(TINY_RUN))
    assert result.exit_code == 0, result.output
    run_dir = next(results().glob("*/tiny/leakgan/seed-0"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["nll_oracle"] < 20 and 0 < metrics["nll_test"] < 20
    curve = pd.read_csv(run_dir / "curve.csv")
    assert list(curve.phase.unique()) == ["discriminator", "pretrain", "adversarial"]
    adversarial = curve[curve.phase == "adversarial"]
    assert list(adversarial.epoch) == [3, 4, 5]
    assert adversarial.train_nll.notna().tolist() == [True, False, True]  # batches 0 and 2
    assert adversarial[["worker_loss", "manager_loss", "nll_oracle"]].notna().all().all()
    loaded = load_generator(run_dir / "generator.pt")
    assert isinstance(loaded, lg.LeakGanGenerator)
    sample = loaded.sample(8, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (8, 8) and torch.isfinite(loaded.log_likelihood(sample)).all()


def stop_after(monkeypatch, phase: str, count: int) -> None:
    """Stop the run as SIGTERM does (``Interrupted``) right after the ``count``-th
    checkpoint of ``phase`` is written (tests/fault_driver.py kills a process there)."""
    write_torch, seen = store.write_torch, []

    def write(path, obj):
        write_torch(path, obj)
        if Path(path).name == store.CHECKPOINT and obj["state"]["phase"] == phase:
            seen.append(path)
            if len(seen) == count:
                raise Interrupted(f"stopped after checkpoint {count} of {phase}")

    monkeypatch.setattr(store, "write_torch", write)


def assert_the_stopped_run_is_the_straight_one() -> None:
    """The run ids "stopped" (resumed) and "straight": the same curve, samples and metrics
    (timings aside)."""
    straight, stopped = (results() / name / "tiny" / "leakgan" / "seed-0"
                         for name in ("straight", "stopped"))
    assert (stopped / "curve.csv").read_text() == (straight / "curve.csv").read_text()
    assert (stopped / "samples.txt").read_text() == (straight / "samples.txt").read_text()
    metrics = [{k: v for k, v in json.loads((d / "metrics.json").read_text()).items()
                if not k.endswith("_seconds")} for d in (stopped, straight)]
    assert metrics[0] == metrics[1]


@pytest.mark.slow
def test_a_run_stopped_in_each_phase_resumes_to_identical_metrics(cli, tiny_dataset,
                                                                  monkeypatch):
    run = lambda run_id: cli("-q", "run", "-m", "leakgan", "-d", "tiny",  # noqa: E731
                             "--run-id", run_id, *settings(TINY_RUN))
    assert run("straight").exit_code == 0
    for phase in ("pretrain", "adversarial"):  # each run resumes where the last one stopped
        with monkeypatch.context() as patch:
            stop_after(patch, phase, 2)
            assert run("stopped").exit_code == 130
            saved = torch.load(results() / "stopped" / "tiny" / "leakgan" / "seed-0" /
                               store.CHECKPOINT, weights_only=True)["state"]
            assert saved["phase"] == phase
            assert saved["step" if phase == "pretrain" else "batch"] == 2
    assert run("stopped").exit_code == 0
    assert_the_stopped_run_is_the_straight_one()


# --- the authors' code (the ``authors`` profile) -----------------------------------------
#
# Each variant against a transcription, written out here in numpy, of what the authors'
# TensorFlow computes (CR-Gjx/LeakGAN @4044de6, Synthetic Data/LeakGANModel.py, Main.py).

def tf_l2_normalize(x: np.ndarray, axis: int) -> np.ndarray:
    """tf.nn.l2_normalize(x, axis), epsilon 1e-12: x / sqrt(max(sum(x ** 2), epsilon))."""
    return x / np.sqrt(np.maximum(np.sum(x ** 2, axis=axis, keepdims=True), 1e-12))


def tf_cosine_distance(labels: np.ndarray, predictions: np.ndarray, axis: int) -> float:
    """tf.losses.cosine_distance(labels, predictions, axis) with weights=1.0 and the default
    reduction SUM_BY_NONZERO_WEIGHTS: losses = 1 - sum(labels * predictions, axis) (kept
    as a size-1 axis), then sum(losses * weights) / the number of nonzero weights
    broadcast to the losses' shape."""
    losses = 1 - np.sum(labels * predictions, axis=axis, keepdims=True)
    weights = np.broadcast_to(np.float32(1.0), losses.shape)
    return float(np.sum(losses * weights) / np.count_nonzero(weights))


def pairs(goals: torch.Tensor, features: torch.Tensor, c: int) -> tuple[np.ndarray, np.ndarray]:
    """This module's (f_{t+c} - f_t, g_t) for t = 0..T-c, in numpy: [B, K, F] each."""
    f, g = features.double().numpy(), goals.double().numpy()
    span = g.shape[1] - c + 1
    return f[:, c:c + span] - f[:, :span], g[:, :span]


def test_the_authors_goal_loss_is_minus_the_mean_reward_times_the_batch_mean_cosine():
    torch.manual_seed(7)
    rows, length, c = 3, 8, 4
    goals, features = torch.randn(rows, length, 6), torch.randn(rows, length + 1, 6)
    q = torch.rand(rows, length // c)  # their reward placeholder: [B, T / c]
    change, goal = pairs(goals, features, c)
    cosine = 1 - tf_cosine_distance(tf_l2_normalize(change, 2), tf_l2_normalize(goal, 2), 2)
    # LeakGANModel.py lines 270-271: -sum(reward * (1 - cosine_distance)) / (T * B / c)
    adversarial = -np.sum(q.double().numpy() * cosine) / (length * rows // c)
    assert lg.goal_objective(goals, features, c, "authors", q).item() == pytest.approx(
        adversarial, rel=1e-5)
    # lines 243-244, pre-training: -sum(1 - cosine_distance) / (T * B / c), a sum of a scalar
    pretraining = -np.sum(cosine) / (length * rows // c)
    assert lg.goal_objective(goals, features, c, "authors").item() == pytest.approx(
        pretraining, rel=1e-5)
    # Which goal earned which reward does not matter to theirs; to the paper's it does.
    shuffled = q.flatten()[torch.randperm(q.numel())].view_as(q)
    assert lg.goal_objective(goals, features, c, "authors", shuffled).item() == pytest.approx(
        adversarial, rel=1e-5)
    assert lg.goal_objective(goals, features, c, "paper", shuffled).item() != pytest.approx(
        lg.goal_objective(goals, features, c, "paper", q).item(), rel=1e-3)


def test_the_authors_worker_loss_is_one_batch_mean_reward_times_the_mean_log_probability():
    torch.manual_seed(8)
    rows, length, c, vocab = 3, 6, 3, 5
    goals, features = torch.randn(rows, length, 4), torch.randn(rows, length + 1, 4)
    logits, y = torch.randn(rows, length, vocab), torch.randint(vocab, (rows, length))
    f, g = features.double().numpy(), goals.double().numpy()
    unit = lambda x: tf_l2_normalize(x, -1)  # noqa: E731
    # The paper's r_t (this module's pairs), each cosine TF's, then their reduction: a mean
    # over every (row, token), one scalar (the 1 - cosine_distance of lines 288).
    r = np.zeros((rows, length))
    for t in range(length):
        lags = range(1, min(c, t + 1) + 1)
        r[:, t] = np.mean([np.sum(unit(f[:, t + 1] - f[:, t + 1 - i]) * unit(g[:, t + 1 - i]),
                                  axis=-1) for i in lags], axis=0)
    reward = r.mean()
    assert lg.worker_rewards(goals, features, c, "authors").item() == pytest.approx(reward,
                                                                                    rel=1e-5)
    # lines 290-294: -sum(reward * one_hot(x) * log(clip(p, 1e-20, 1))) / (T * B)
    p = torch.softmax(logits.double(), dim=-1).numpy()
    one_hot = np.eye(vocab)[y.numpy()]
    expected = -np.sum(reward * one_hot * np.log(np.clip(p, 1e-20, 1.0))) / (length * rows)
    scalar = lg.worker_rewards(goals, features, c, "authors")
    assert lg.worker_loss(logits, y, scalar).item() == pytest.approx(expected, rel=1e-5)


def authors_rescale(raw: np.ndarray, rollouts: int) -> np.ndarray:
    """Main.py lines 110-131 and 157-158 as Python 3 runs them, on raw [B, P]: per reward
    point, its distinct values numbered k = 1, 2, ... by first appearance, each becoming
    e^(16 k / B - 8) / (1 + e^(16 k / B - 8)), then divided by the number of rollouts."""
    out = np.zeros(raw.shape)
    batch = raw.shape[0]
    for point in range(raw.shape[1]):
        values, first, where = np.unique(raw[:, point], return_index=True, return_inverse=True)
        k = np.argsort(np.argsort(first)) + 1  # rank of each distinct value's first sighting
        x = 16.0 * k[where.ravel()] / batch - 8.0
        out[:, point] = np.exp(x) / (1 + np.exp(x)) / rollouts
    return out


def test_the_authors_rescale_numbers_distinct_values_and_divides_by_the_rollouts():
    raw = torch.tensor([[0.9, 0.1], [0.2, 0.3], [0.9, 0.2], [0.1, 0.8], [0.5, 0.4]])
    rescaled = lg.rescale_like_authors(raw, 16.0, 4)
    np.testing.assert_allclose(rescaled.numpy(), authors_rescale(raw.numpy(), 4), rtol=1e-6)
    assert rescaled[0, 0] == rescaled[2, 0]  # a tie shares its value
    # Without ties a column's values are those of 1..B in some order: its mean, all that
    # their goal loss reads, is the same whichever sequence got which.
    flipped = lg.rescale_like_authors(raw.flip(0), 16.0, 4)
    torch.testing.assert_close(flipped[:, 1].mean(), rescaled[:, 1].mean())
    assert not torch.equal(flipped[:, 1], rescaled[:, 1].flip(0))  # not ranked by value


def scaled_generator(scale: float = 1.5, first: int = 2) -> lg.LeakGanGenerator:
    torch.manual_seed(0)
    generator = lg.LeakGanGenerator(VOCAB, LENGTH, start_token=2, emb_dim=5, hidden_dim=6,
                                    goal_size=4, step_size=C, disc_emb_dim=4,
                                    filter_sizes=(1, 2, 3), num_filters=(3, 4, 5),
                                    eval_logit_scale=scale, scaled_first_tokens=first)
    with torch.no_grad():  # logits a few units apart, so that x1.5 shows in the samples
        generator.worker_output.bias.normal_(0.0, 1.0)
    return generator.eval()


def test_in_eval_mode_the_generator_samples_and_scores_at_the_scaled_logits():
    g, y = scaled_generator(), tokens(20)
    raw = g.teacher_forced(y)[0].detach()
    with torch.no_grad():
        torch.testing.assert_close(g.token_log_probs(y),
                                   log_probs_of_tokens(1.5 * raw, y), atol=1e-5, rtol=0)
    drawn, step_log_probs = g.complete(y, torch.zeros(20, dtype=torch.long), 1.0,
                                       torch.Generator().manual_seed(3), return_log_probs=True)
    with torch.no_grad():
        expected = log_probs_of_tokens(1.5 * g.teacher_forced(drawn)[0], drawn)
    torch.testing.assert_close(step_log_probs, expected, atol=1e-5, rtol=0)
    # The first token's logits are every row's: its frequencies are softmax(1.5 logits).
    first = g.sample(8000, generator=torch.Generator().manual_seed(4))[:, 0]
    frequencies = torch.bincount(first, minlength=VOCAB).double() / len(first)
    logits = raw[0, 0].double()
    scaled, plain = torch.softmax(1.5 * logits, 0), torch.softmax(logits, 0)
    assert (frequencies - scaled).abs().sum() / 2 < 0.02
    assert (plain - scaled).abs().sum() / 2 > 0.05  # far enough apart to tell


def test_in_training_mode_only_the_first_tokens_stay_scaled_and_one_means_unchanged():
    g, y = scaled_generator(), tokens()
    raw = g.teacher_forced(y)[0].detach()
    g.train()
    assert g.logit_scales(training=True) == [1.5, 1.5] + [1.0] * (LENGTH - 2)
    assert g.logit_scales(training=False) == [1.5] * LENGTH
    with torch.no_grad():
        expected = torch.cat([1.5 * raw[:, :2], raw[:, 2:]], dim=1)
        torch.testing.assert_close(g.teacher_forced_logits(y), expected)
        drawn, step = g.complete(y, torch.zeros(len(y), dtype=torch.long), 1.0,
                                 torch.Generator().manual_seed(5), return_log_probs=True)
        torch.testing.assert_close(step, g.token_log_probs(drawn), atol=1e-5, rtol=0)
    plain = scaled_generator(1.0, 0)  # the default and paper profiles: nothing scaled
    for training in (True, False):
        plain.train(training)
        with torch.no_grad():
            assert torch.equal(plain.teacher_forced_logits(y), plain.teacher_forced(y)[0])


def test_an_adversarial_step_and_an_mle_epoch_take_the_authors_losses():
    import copy

    g, y = tiny_generator(), tokens(6)
    g.train()
    before = copy.deepcopy(g)
    rewards = torch.rand(6, len(lg.reward_points(LENGTH, C)))
    logits, goals, features = before.teacher_forced(y)
    worker = lg.worker_loss(logits, y, lg.worker_rewards(goals, features, C, "authors"))
    manager = lg.authors_manager_loss(goals, features, C, rewards)
    optimizer = lg.new_optimizer(g, 0.01)
    got = lg.adversarial_step(g, optimizer, y, rewards, 5.0, "authors", "authors")
    assert got == pytest.approx((worker.item(), manager.item()), rel=1e-5)
    g = copy.deepcopy(before)  # one batch of all rows: the epoch's losses are the batch's
    _, goal = lg.mle_epoch(g, y, lg.new_optimizer(g, 0.01), 6, 5.0,
                           torch.Generator().manual_seed(0), "authors")
    assert goal == pytest.approx(lg.authors_manager_loss(goals, features, C).item(), rel=1e-5)


TINY_AUTHORS = ["pretrain_cycles=1", "pretrain_epochs=1", "disc_pretrain_rounds=1",
                "disc_negatives=64", "disc_batch_size=32", "batch_size=32", "adv_batches=2",
                "adv_eval_every=1", "n_rollouts=2", "d_steps=1", "disc_epochs=1",
                "disc_size=small", "emb_dim=8", "hidden_dim=8", "goal_size=4"]


def test_the_authors_profile_holds_their_synthetic_data_settings():
    from dataclasses import asdict

    from harness.config import resolve
    from harness.plugins import registry

    method = registry().methods["leakgan"]
    config = asdict(resolve(method, "authors", {}))
    assert {key: config[key] for key in lg.AUTHORS} == lg.AUTHORS
    assert {key: config[key] for key in ("eval_logit_scale", "scaled_first_tokens", "goal_loss",
                                         "worker_reward", "reward_rescale", "mle_every",
                                         "lr", "disc_lr", "disc_l2", "disc_negatives")} == {
        "eval_logit_scale": 1.5, "scaled_first_tokens": 2, "goal_loss": "authors",
        "worker_reward": "authors", "reward_rescale": "authors", "mle_every": 0,
        "lr": 0.0015, "disc_lr": 5e-5, "disc_l2": 0.0, "disc_negatives": 9984}
    for profile in ("default", "paper"):  # the paper's formulas, as before
        other = asdict(resolve(method, profile, {}))
        assert (other["eval_logit_scale"], other["scaled_first_tokens"], other["goal_loss"],
                other["worker_reward"], other["reward_rescale"]) == (1.0, 0, "paper", "paper",
                                                                     "paper")


def test_the_conditions_name_the_algorithm_and_the_logits_a_run_was_made_with():
    from dataclasses import asdict

    from harness import table

    method = lg.LeakGan()
    assert lg.LOGITS_UNSCALED == table.EVALUATION["logits"]
    assert method.conditions(asdict(lg.LeakGanConfig(**lg.PAPER))) == {
        "algorithm": lg.ALGORITHM_PAPER, "logits": lg.LOGITS_UNSCALED}
    assert method.conditions(asdict(lg.LeakGanConfig(**lg.AUTHORS))) == {
        "algorithm": lg.ALGORITHM_AUTHORS, "logits": lg.LOGITS_AUTHORS}
    assert method.conditions({}) == method.conditions(asdict(lg.LeakGanConfig()))
    mixed = method.conditions({"goal_loss": "authors"})["algorithm"]
    assert mixed not in (lg.ALGORITHM_PAPER, lg.ALGORITHM_AUTHORS)
    # In the table a run's own word on its logits overrides the harness's default.
    recorded = {"profile": "authors", "config": asdict(lg.LeakGanConfig(**lg.AUTHORS))}
    rows = pd.DataFrame({"method": ["leakgan"], "profile": ["authors"], "data": [""],
                         "conditions": [table.run_conditions("leakgan", recorded)]})
    ours = table.our_conditions(rows, table.dataset_view("oracle", {"nll_oracle"}))
    assert ours["logits"] == {lg.LOGITS_AUTHORS} and ours["algorithm"] == {lg.ALGORITHM_AUTHORS}


@pytest.mark.slow
def test_runs_end_to_end_under_the_authors_profile(cli, tiny_dataset, monkeypatch):
    seen = []  # (mode or the scales asked for) of every sampling call
    complete = lg.LeakGanGenerator.complete

    def spy(self, *args, **kwargs):
        scales = kwargs.get("scales")
        seen.append(tuple(scales) if scales is not None else ("mode", self.training))
        return complete(self, *args, **kwargs)

    monkeypatch.setattr(lg.LeakGanGenerator, "complete", spy)
    result = cli("-q", "run", "-m", "leakgan", "-d", "tiny", "--profile", "authors",
                 *settings(TINY_AUTHORS))
    assert result.exit_code == 0, result.output
    run_dir = next(results().glob("*/tiny/leakgan/seed-0"))
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["profile"] == "authors"
    assert lg.LeakGan().conditions(saved["config"]) == {"algorithm": lg.ALGORITHM_AUTHORS,
                                                        "logits": lg.LOGITS_AUTHORS}
    curve = pd.read_csv(run_dir / "curve.csv")
    adversarial = curve[curve.phase == "adversarial"]
    assert list(adversarial.epoch) == [2, 3]
    assert adversarial.train_nll.isna().all()  # no interleaved MLE
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["nll_oracle"] < 20 and 0 < metrics["nll_test"] < 20
    # Negatives at train=0, policy-gradient samples at train=1, rollouts unscaled,
    # evaluation in eval mode (x1.5 there); nothing in training left to the mode.
    length = 8
    assert (1.5,) * length in seen and (1.5, 1.5) + (1.0,) * (length - 2) in seen
    assert (1.0,) * length in seen and ("mode", False) in seen and ("mode", True) not in seen
    loaded = load_generator(run_dir / "generator.pt")
    assert (loaded.eval_logit_scale, loaded.scaled_first_tokens) == (1.5, 2)
    # their loaders and their manager's initial goal, one per row of the batch of 32
    assert (saved["config"]["shuffle"], saved["config"]["disc_shuffle"],
            saved["config"]["initial_goal"]) == (False, "round", "manager")
    features = sum(loaded.discriminator.num_filters)
    assert loaded.initial_goal == "manager" and loaded.goal_init.shape == (32, features)


# --- the authors' loaders and initial goal (Gen_Data_loader, Dis_dataloader, goal_init) ---

def authors_mle_epochs(rows: list[list[int]], batch_size: int, epochs: int) -> list[list]:
    """Their Gen_Data_loader (Synthetic Data/dataloader.py lines 4-30) as pre_train_epoch
    (Main.py lines 98-108) reads it, transcribed: create_batches keeps the rows of the right
    length in file order, int(N / B) batches, the rest dropped, np.split; each epoch
    reset_pointer, then num_batch next_batch() calls, the pointer cycling mod num_batch."""
    token_stream = [row for row in rows if len(row) == LENGTH]
    num_batch = int(len(token_stream) / batch_size)
    token_stream = token_stream[:num_batch * batch_size]
    sequence_batch = np.split(np.array(token_stream), num_batch, 0)
    out = []
    for _ in range(epochs):
        pointer = 0  # reset_pointer
        epoch = []
        for _ in range(num_batch):
            epoch.append(sequence_batch[pointer].tolist())
            pointer = (pointer + 1) % num_batch
        out.append(epoch)
    return out


def batches_seen(monkeypatch, generator: lg.LeakGanGenerator) -> list:
    """Every batch ``generator.teacher_forced`` is given from now on, as lists."""
    seen, forward = [], generator.teacher_forced

    def spy(batch):
        seen.append(batch.tolist())
        return forward(batch)

    monkeypatch.setattr(generator, "teacher_forced", spy)
    return seen


def test_mle_in_file_order_takes_the_batches_of_the_authors_loader(monkeypatch):
    g, data = tiny_generator(), tokens(10)
    optimizer, rng = lg.new_optimizer(g, 0.01), torch.Generator().manual_seed(0)
    state = rng.get_state()
    seen = batches_seen(monkeypatch, g)
    for _ in range(2):
        lg.mle_epoch(g, data, optimizer, 4, 5.0, rng, "authors", shuffle=False)
    expected = authors_mle_epochs(data.tolist(), 4, 2)
    assert [len(epoch) for epoch in expected] == [2, 2]  # rows 8 and 9 dropped, each epoch
    assert seen == [batch for epoch in expected for batch in epoch]
    assert torch.equal(rng.get_state(), state)  # the stream is made but never drawn from
    # Shuffled (default): the permutation of before, every row, the last batch short.
    seen.clear()
    lg.mle_epoch(g, data, optimizer, 4, 5.0, torch.Generator().manual_seed(0))
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert seen == [data[order[start:start + 4]].tolist() for start in (0, 4, 8)]
    assert [b.tolist() for b in lg.mle_batches(3, 4, rng, shuffle=False)] == [[0, 1, 2]]


def authors_dis_epochs(positive: list, negative: list, batch_size: int, epochs: int,
                       permutation: np.ndarray) -> list[tuple[list, list]]:
    """Their Dis_dataloader (dataloader.py lines 33-84) as the discriminator rounds read it
    (Main.py lines 237-250, 306-318), transcribed: load_train_data joins the positives and
    the negatives, labels [0, 1] and [1, 0], shuffles them once (``permutation``, their
    np.random.permutation), int(N / B) batches, the rest dropped; each of the round's
    epochs reset_pointer, then num_batch next_batch() calls. (rows, real?) per batch."""
    sentences = np.array(positive + negative)
    labels = np.concatenate([[[0, 1] for _ in positive], [[1, 0] for _ in negative]], 0)
    sentences, labels = sentences[permutation], labels[permutation]
    num_batch = int(len(labels) / batch_size)
    sentences_batches = np.split(sentences[:num_batch * batch_size], num_batch, 0)
    labels_batches = np.split(labels[:num_batch * batch_size], num_batch, 0)
    out = []
    for _ in range(epochs):
        pointer = 0  # reset_pointer
        for _ in range(num_batch):
            out.append((sentences_batches[pointer].tolist(),
                        [bool(label[1]) for label in labels_batches[pointer]]))
            pointer = (pointer + 1) % num_batch
    return out


def test_a_round_of_one_order_feeds_the_discriminator_as_the_authors_loader(monkeypatch):
    disc = tiny_generator().discriminator
    real, fake = tokens(6, seed=2), tokens(5, seed=3)
    label = {tuple(row): True for row in real.tolist()}
    label.update({tuple(row): False for row in fake.tolist()})
    assert len(label) == 11  # every row tells its label
    seen, forward = [], disc.forward

    def spy(rows):
        seen.append((rows.tolist(), [label[tuple(row)] for row in rows.tolist()]))
        return forward(rows)

    monkeypatch.setattr(disc, "forward", spy)
    rng = torch.Generator().manual_seed(4)
    permutation = torch.randperm(11, generator=torch.Generator().manual_seed(4)).numpy()
    loss = adv.train_discriminator(disc, torch.optim.Adam(disc.parameters(), 1e-3),
                                   real, fake, 3, 4, 0.0, rng, shuffle="round")
    expected = authors_dis_epochs(real.tolist(), fake.tolist(), 4, 3, permutation)
    assert len(expected) == 6 and seen == expected  # 2 full batches (3 rows dropped), x3
    assert np.isfinite(loss)
    after_one = torch.Generator().manual_seed(4)
    torch.randperm(11, generator=after_one)
    assert torch.equal(rng.get_state(), after_one.get_state())  # one draw a round


def manager_goal_generator(batch: int = 4) -> lg.LeakGanGenerator:
    torch.manual_seed(0)
    generator = lg.LeakGanGenerator(VOCAB, LENGTH, start_token=2, emb_dim=5, hidden_dim=6,
                                    goal_size=4, step_size=C, disc_emb_dim=4,
                                    filter_sizes=(1, 2, 3), num_filters=(3, 4, 5),
                                    initial_goal="manager", batch_size=batch)
    torch.nn.init.normal_(generator.discriminator.embedding.weight, 0.0, 2.0)
    return generator.eval()


def test_the_manager_initial_goal_is_the_authors_goal_init_one_row_per_batch_row():
    g, y, batch = manager_goal_generator(), tokens(9), 4  # 9 rows: 2 x batch + 1
    features = sum(g.discriminator.num_filters)
    # LeakGANModel.py line 70: tf.truncated_normal([batch_size, goal_out_size], stddev=0.1)
    assert g.goal_init.shape == (batch, features)
    assert g.goal_init.abs().max().item() <= 0.2  # redrawn beyond 2 sd
    wide = lg.LeakGanGenerator(VOCAB, LENGTH, filter_sizes=(1, 2), num_filters=(40, 60),
                               initial_goal="manager", batch_size=64).goal_init
    assert wide.std().item() == pytest.approx(0.1 * 0.8796, rel=0.05)  # N(0,1) cut at +-2: sd
    assert wide.abs().max().item() > 0.19
    # line 71: in the manager's parameters, not the worker's
    assert any(p is g.goal_init for p in g.manager_parameters())
    assert not any(p is g.goal_init for p in g.worker_parameters())
    default = lg.LeakGanGenerator(VOCAB, LENGTH)  # the default: the worker's one goal
    assert default.goal_init.shape == (sum(default.discriminator.num_filters),)
    assert any(p is default.goal_init for p in default.worker_parameters())
    with torch.no_grad():
        logits, goals, features = g.teacher_forced(y)
        o = g.worker_output(g.worker(g.embedding(g.shifted_inputs(y)))[0]).view(
            len(y), LENGTH, VOCAB, g.goal_size).double().numpy()
    goal_init = g.goal_init.detach().double().numpy()[np.arange(len(y)) % batch]
    psi = g.goal_projection.weight.detach().double().numpy()  # their g_change, transposed
    # Lines 116-124 at the first tokens (real_goal = goal_init, i < c): w_g =
    # l2_normalize(goal_init x g_change), logits = O_t w_g; row i reads goal_init[i mod B].
    w_g = tf_l2_normalize(goal_init @ psi.T, 1)
    for t in (0, 1):  # ours: w_0 and w_1 (whose window holds g_0 alone) read it
        np.testing.assert_allclose(logits[:, t].double().numpy(),
                                   np.einsum("bvk,bk->bv", o[:, t], w_g), rtol=1e-5, atol=1e-6)
    # Lines 182-183, 207-209, 243: the goal loss pairs it with f_c - f_0 (sub_feature[0]).
    f = features.double().numpy()
    theirs = np.sum(tf_l2_normalize(f[:, C] - f[:, 0], 1) * tf_l2_normalize(goal_init, 1), 1)
    np.testing.assert_allclose(lg.goal_cosines(goals, features, C, lg.tf_cosine)[:, 0].numpy(),
                               theirs, rtol=1e-5, atol=1e-6)
    # A row's probabilities depend on its place mod B, not on the other rows.
    with torch.no_grad():
        every = g.token_log_probs(y)
        for i in range(len(y)):
            alone = g.token_log_probs(y[i:i + 1].repeat(batch, 1))[i % batch]
            torch.testing.assert_close(every[i], alone, atol=1e-5, rtol=0)
    # Step by step as the naive equations with g_0 = goal_init's row.
    torch.testing.assert_close(every, naive_log_probs(g, y), atol=1e-5, rtol=0)


def test_only_the_managers_losses_train_the_manager_initial_goal():
    g, y = manager_goal_generator(), tokens(9)
    g.train()
    logits, goals, features = g.teacher_forced(y)
    worker = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    manager = lg.goal_objective(goals, features, C, "authors")
    g.zero_grad(set_to_none=True)
    worker.backward(retain_graph=True)  # their worker gradients: worker_params (line 267)
    assert g.goal_init.grad is None
    assert all(p.grad is None for p in g.manager_parameters())
    manager.backward()  # their manager gradients: manager_params, goal_init among them
    assert g.goal_init.grad is not None and g.goal_init.grad.abs().sum() > 0


def test_sampling_with_a_per_row_initial_goal_matches_teacher_forcing(monkeypatch):
    g, y = manager_goal_generator(), tokens(9)
    given = torch.arange(9) % (LENGTH + 1)
    drawn, step_log_probs = g.complete(y, given, 1.0, torch.Generator().manual_seed(3),
                                       return_log_probs=True)
    kept = torch.arange(LENGTH) < given[:, None]
    with torch.no_grad():
        teacher_forced = g.token_log_probs(drawn)
    torch.testing.assert_close(step_log_probs[~kept], teacher_forced[~kept], atol=1e-5, rtol=0)
    # A sample drawn in chunks numbers its rows across them: row i takes goal i mod B.
    starts, initial_goals = [], g.initial_goals
    monkeypatch.setattr(g, "initial_goals", lambda rows, first_row=0: (
        starts.append((rows, first_row)), initial_goals(rows, first_row))[1])
    g.sample(10, generator=torch.Generator().manual_seed(0), chunk=4)
    assert starts == [(4, 0), (4, 4), (2, 8)]


def test_the_authors_profile_takes_their_loaders_and_initial_goal():
    from dataclasses import asdict

    from harness.config import resolve

    method = lg.LeakGan()
    config = asdict(resolve(method, "authors", {}))
    assert (config["shuffle"], config["disc_shuffle"], config["initial_goal"]) == (
        False, "round", "manager")
    for profile in ("default", "paper"):  # as before
        other = asdict(resolve(method, profile, {}))
        assert (other["shuffle"], other["disc_shuffle"], other["initial_goal"]) == (
            True, "epoch", "worker")
    with pytest.raises(ValueError, match="initial_goal"):
        lg.LeakGanConfig(initial_goal="both")
    with pytest.raises(ValueError, match="disc_shuffle"):
        lg.LeakGanConfig(disc_shuffle="never")


@pytest.mark.slow
def test_an_authors_profile_run_stopped_in_each_phase_resumes_to_identical_metrics(
        cli, tiny_dataset, monkeypatch):
    longer = [item for item in TINY_AUTHORS
              if not item.startswith(("pretrain_cycles=", "adv_batches="))]
    longer += ["pretrain_cycles=2", "adv_batches=3"]
    run = lambda run_id: cli("-q", "run", "-m", "leakgan", "-d", "tiny",  # noqa: E731
                             "--profile", "authors", "--run-id", run_id, *settings(longer))
    assert run("straight").exit_code == 0
    for phase in ("pretrain", "adversarial"):
        with monkeypatch.context() as patch:
            stop_after(patch, phase, 2)
            assert run("stopped").exit_code == 130
    assert run("stopped").exit_code == 0
    assert_the_stopped_run_is_the_straight_one()
