"""The LSTM methods end to end on the tiny oracle, and the pre-training they share."""
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.generator import LSTMGenerator
from harness_plugins.adversarial import policy_gradient_step
from harness_plugins.scheduled_sampling import (ScheduledSamplingConfig, scheduled_sampling_loss,
                                                true_token_rate)

ADVERSARIAL = ["--set", "pretrain_epochs=3", "--set", "eval_every=3", "--set", "adv_batches=4",
               "--set", "adv_eval_every=2", "--set", "n_rollouts=2", "--set", "disc_negatives=256",
               "--set", "disc_pretrain_rounds=1", "--set", "lr=0.02"]


def run_dir(method: str) -> Path:
    return next(Path(os.environ["HARNESS_RESULTS"]).glob(f"*/tiny/{method}/seed-0"))


def test_seqgan_and_pg_bleu_reuse_the_mle_pretraining(cli, tiny_dataset, caplog):
    result = cli("-q", "run", "-m", "mle", "-m", "seqgan", "-m", "pg-bleu", "-d", "tiny",
                 "--set", "epochs=3", *ADVERSARIAL)
    assert result.exit_code == 0, result.output
    shared = list(Path(os.environ["HARNESS_RESULTS"]).glob("_shared/tiny/seed-0/mle-*.pt"))
    assert len(shared) == 1  # trained once, by the mle run, then reused twice
    mle_curve = pd.read_csv(run_dir("mle") / "curve.csv")
    for method in ("seqgan", "pg-bleu"):
        curve = pd.read_csv(run_dir(method) / "curve.csv")
        pre = curve[curve.phase == "mle"]
        assert list(pre.nll_oracle) == list(mle_curve.nll_oracle)
        adversarial = curve[curve.phase == "adversarial"]
        assert list(adversarial.epoch) == [5, 7]  # continues after 3 pre-training epochs
        assert adversarial.mean_reward.between(0, 1).all()
        metrics = json.loads((run_dir(method) / "metrics.json").read_text())
        assert metrics["nll_oracle_best_so_far"] <= metrics["nll_oracle"]
        assert metrics["nll_oracle_best_so_far"] == pytest.approx(curve.nll_oracle.min())
    assert "discriminator" in set(pd.read_csv(run_dir("seqgan") / "curve.csv").phase)


def test_scheduled_sampling_runs_and_lowers_the_true_token_rate(cli, tiny_dataset):
    result = cli("-q", "run", "-m", "ss", "-d", "tiny", "--set", "epochs=4",
                 "--set", "eval_every=2", "--set", "rate_decay=0.2")
    assert result.exit_code == 0, result.output
    curve = pd.read_csv(run_dir("ss") / "curve.csv")
    assert list(curve.true_token_rate.round(6)) == [1.0, 0.6, 0.2]
    assert curve.nll_oracle.iloc[-1] < curve.nll_oracle.iloc[0]


def test_true_token_rate_follows_the_authors_schedule():
    paper = ScheduledSamplingConfig(rate_decay=0.002)
    assert true_token_rate(0, paper) == pytest.approx(0.998)   # lowered before each epoch
    assert true_token_rate(299, paper) == pytest.approx(0.4)
    assert true_token_rate(10_000, paper) == 0.0


def test_scheduled_sampling_is_teacher_forcing_at_rate_one_and_draws_per_token():
    torch.manual_seed(0)
    generator = LSTMGenerator(vocab_size=12, seq_len=6, emb_dim=8, hidden_dim=8, init_std=0.5)
    batch = torch.randint(0, 12, (5, 6))
    forced = -generator.token_log_probs(batch).mean()
    rng = torch.Generator().manual_seed(1)
    torch.testing.assert_close(scheduled_sampling_loss(generator, batch, 1.0, rng), forced)
    # At rate 0.5 the coins differ between tokens, so losses differ from draw to draw.
    losses = {round(scheduled_sampling_loss(generator, batch, 0.5, rng).item(), 6)
              for _ in range(5)}
    assert len(losses) > 1


def test_a_positive_reward_raises_the_sequence_likelihood():
    torch.manual_seed(0)
    generator = LSTMGenerator(vocab_size=20, seq_len=7, emb_dim=8, hidden_dim=8)
    optimizer = torch.optim.Adam(generator.parameters(), lr=0.01)
    sequence = generator.sample(1)
    before = generator.log_likelihood(sequence).item()
    policy_gradient_step(generator, optimizer, sequence, torch.ones(1, 7), grad_clip=5.0)
    assert generator.log_likelihood(sequence).item() > before
