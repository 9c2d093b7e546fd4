"""MaliGAN: its importance weights and gradient estimator against the paper's formulas,
the completions of real prefixes and their schedule, a tiny run and its resumption."""
import json
import math
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.generator import LSTMGenerator
from harness_plugins.adversarial import SMALL, Discriminator
from harness_plugins.maligan import (complete_prefixes, importance_weights, kept_tokens, log_odds,
                                     maligan_loss)
from test_faults import drive, outcome, run_dir

TINY = ["--set", "pretrain_epochs=2", "--set", "eval_every=1", "--set", "batch_size=32",
        "--set", "disc_pretrain_rounds=2", "--set", "disc_negatives=64",
        "--set", "disc_batch_size=32", "--set", "adv_batches=4", "--set", "adv_eval_every=1",
        "--set", "prefixes=4", "--set", "samples_per_prefix=3", "--set", "step_size=3",
        "--set", "stage_batches=1"]


def test_weights_are_d_over_one_minus_d_normalised_within_each_group_minus_the_baseline():
    d = torch.tensor([[0.9, 0.5, 0.2, 0.1],       # group 1: completions of one real prefix
                      [0.999, 0.98, 0.6, 0.3]])   # group 2: D much surer, another scale
    r = d / (1 - d)                              # the paper's r_D, computed directly
    expected = torch.stack([r[i] / r[i].sum() - 1 / 4 for i in range(2)])
    got = importance_weights(torch.log(d / (1 - d)))
    torch.testing.assert_close(got, expected)
    # Not D itself, and not normalised over the whole batch: both would differ here.
    assert not torch.allclose(got, d / d.sum(dim=1, keepdim=True) - 1 / 4, atol=1e-3)
    assert not torch.allclose(got, r / r.sum() * 2 - 1 / 4, atol=1e-3)
    torch.testing.assert_close(got.sum(dim=1), torch.zeros(2))


def test_log_odds_are_the_log_of_the_discriminators_d_over_one_minus_d():
    torch.manual_seed(0)
    disc = Discriminator(vocab_size=30, seq_len=8, **SMALL)
    tokens = torch.randint(0, 30, (10, 8))
    p = disc.prob_real(tokens).double()
    torch.testing.assert_close(log_odds(disc, tokens).double(), torch.log(p / (1 - p)),
                               rtol=1e-4, atol=1e-4)


def naive_log_prob(generator: LSTMGenerator, row: torch.Tensor, positions: range) -> torch.Tensor:
    """sum over ``positions`` of log p(y_t | y_<t), stepping the generator token by token."""
    token, state, total = torch.tensor([[generator.start_token]]), None, 0.0
    for t in range(len(row)):
        logits, state = generator(token, state)
        if t in positions:
            total = total + torch.log_softmax(logits[0, -1], dim=-1)[row[t]]
        token = row[t].view(1, 1)
    return total


def test_loss_gradient_is_the_papers_estimator_with_mle_on_the_real_prefix():
    torch.manual_seed(0)
    generator = LSTMGenerator(vocab_size=12, seq_len=6, emb_dim=8, hidden_dim=8, init_std=0.5)
    n, m, kept = 2, 3, 2
    real = torch.randint(0, 12, (n, 6))
    sequences = complete_prefixes(generator, real, kept, m, torch.Generator().manual_seed(1))
    weights = importance_weights(torch.randn(n, m))

    maligan_loss(generator, sequences, weights, kept).backward()
    got = [p.grad.clone() for p in generator.parameters()]

    # Algorithm 2's estimator written out: (1/n) sum_i [sum_j w_ij grad log p(suffix_ij |
    # prefix_i) + grad log p(prefix_i)], the prefix read from the real row itself.
    generator.zero_grad()
    objective = sum(weights[i, j] * naive_log_prob(generator, sequences[i * m + j], range(kept, 6))
                    for i in range(n) for j in range(m))
    objective = objective + sum(naive_log_prob(generator, real[i], range(kept)) for i in range(n))
    (-objective / n).backward()
    for mine, naive in zip(got, (p.grad for p in generator.parameters())):
        torch.testing.assert_close(mine, naive, rtol=1e-4, atol=1e-6)


def test_completions_keep_the_real_prefix_and_sample_the_rest_given_it():
    torch.manual_seed(0)
    generator = LSTMGenerator(vocab_size=5, seq_len=4, emb_dim=4, hidden_dim=4, init_std=1.0)
    real = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
    m = 4000
    sequences = complete_prefixes(generator, real, 3, m, torch.Generator().manual_seed(2))
    assert sequences.shape == (2 * m, 4)
    for i in range(2):
        group = sequences[i * m:(i + 1) * m]
        assert (group[:, :3] == real[i, :3]).all()
        # The last token follows the generator's conditional given this real prefix.
        logits, _ = generator(generator.shifted_inputs(real[i:i + 1]))
        expected = torch.softmax(logits[0, 3], dim=-1)
        found = torch.bincount(group[:, 3], minlength=5).float() / m
        torch.testing.assert_close(found, expected, atol=0.03, rtol=0)
    free = complete_prefixes(generator, real, 0, 3, torch.Generator().manual_seed(3))
    assert free.shape == (6, 4)  # N = 0: m free samples a group, the real row unused


def test_the_generated_suffix_grows_by_k_tokens_a_stage_down_to_no_real_tokens():
    assert [kept_tokens(b, 20, 4, 5) for b in (0, 4, 5, 10, 15, 20, 24, 100)] == \
        [16, 16, 12, 8, 4, 0, 0, 0]
    assert kept_tokens(0, 20, 20, 5) == 0  # K >= T: MaliGAN-basic from the start


@pytest.mark.slow
def test_maligan_runs_end_to_end_from_the_shared_mle_pretraining(cli, tiny_dataset):
    result = cli("-q", "run", "-m", "mle", "-m", "maligan", "-d", "tiny", "--set", "epochs=2",
                 *TINY)
    assert result.exit_code == 0, result.output
    results = Path(os.environ["HARNESS_RESULTS"])
    mle = pd.read_csv(next(results.glob("*/tiny/mle/seed-0")) / "curve.csv")
    directory = next(results.glob("*/tiny/maligan/seed-0"))
    curve = pd.read_csv(directory / "curve.csv")
    assert list(curve.phase.drop_duplicates()) == ["mle", "discriminator", "adversarial"]
    assert list(curve[curve.phase == "mle"].nll_oracle) == list(mle.nll_oracle)
    adversarial = curve[curve.phase == "adversarial"]
    assert list(adversarial.epoch) == [3, 4, 5, 6]
    assert list(adversarial.real_tokens) == [5, 2, 0, 0]  # T = 8, K = 3, one batch a stage
    assert adversarial.mean_disc_prob.between(0, 1).all()
    metrics = json.loads((directory / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))


@pytest.mark.slow
def test_a_run_killed_in_each_phase_resumes_to_the_metrics_of_an_uninterrupted_one(tmp_path):
    clean = tmp_path / "clean"
    done = drive("none", "maligan", clean, TINY[1::2])
    assert done.returncode == 0, done.stderr
    # Killed during discriminator pre-training, then again during adversarial training.
    faulty = tmp_path / "faulty"
    for fault in ("kill-after:discriminator:1", "kill-after:adversarial:2"):
        killed = drive(fault, "maligan", faulty, TINY[1::2])
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert not (run_dir(faulty, "maligan") / "metrics.json").exists()
    resumed = drive("none", "maligan", faulty, TINY[1::2])
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(faulty, "maligan") == outcome(clean, "maligan")
