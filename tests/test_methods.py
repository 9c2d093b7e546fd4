"""The LSTM methods end to end on the tiny oracle, and the pre-training they share."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness import store
from harness.generator import LSTMGenerator, draw_inverse_cdf, sample_from_logits
from harness_plugins.adversarial import policy_gradient_step
from harness_plugins.scheduled_sampling import (ScheduledSamplingConfig,
                                                next_inputs, scheduled_sampling_loss,
                                                true_token_rate)

ADVERSARIAL = ["--set", "pretrain_epochs=3", "--set", "eval_every=3", "--set", "adv_batches=4",
               "--set", "adv_eval_every=2", "--set", "n_rollouts=2", "--set", "disc_negatives=256",
               "--set", "disc_pretrain_rounds=1", "--set", "lr=0.02"]


def run_dir(method: str) -> Path:
    return next(Path(os.environ["HARNESS_RESULTS"]).glob(f"*/tiny/{method}/seed-0"))


@pytest.mark.slow
def test_seqgan_and_pg_bleu_reuse_the_mle_pretraining(cli, tiny_dataset, caplog):
    result = cli("-q", "run", "-m", "mle", "-m", "seqgan", "-m", "pg-bleu", "-d", "tiny",
                 "--set", "epochs=3", *ADVERSARIAL)
    assert result.exit_code == 0, result.output
    shared = list(store.shared_dir(None, "tiny", 0).glob("mle-*.pt"))
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
        # The best inside the adversarial loop, as the authors kept it (pre-training left out).
        assert metrics["nll_oracle_best_so_far"] <= metrics["nll_oracle"]
        assert metrics["nll_oracle_best_so_far"] == adversarial.nll_oracle.min()
    assert "discriminator" in set(pd.read_csv(run_dir("seqgan") / "curve.csv").phase)


@pytest.mark.slow
def test_a_run_that_trains_its_pretraining_itself_equals_one_that_reuses_it(cli, tiny_dataset,
                                                                           tmp_path):
    """The discriminator is built before the pre-training: the generator's initial weights
    still come from the run's seed, so `harness verify` (a scratch directory, no snapshot)
    repeats a run that reused the MLE run's snapshot."""
    def outcome(results: Path, *before: str) -> tuple:
        for method in before:
            assert cli("-q", "run", "-m", method, "-d", "tiny", "--results", str(results),
                       "--run-id", "x", "--set", "epochs=3", "--set", "lr=0.02",
                       "--set", "eval_every=3").exit_code == 0
        assert cli("-q", "run", "-m", "seqgan", "-d", "tiny", "--results", str(results),
                   "--run-id", "x", *ADVERSARIAL).exit_code == 0
        directory = results / "x" / "tiny" / "seqgan" / "seed-0"
        metrics = json.loads((directory / "metrics.json").read_text())
        return ({k: v for k, v in metrics.items() if not k.endswith("_seconds")},
                (directory / "curve.csv").read_text())

    alone, after = outcome(tmp_path / "alone"), outcome(tmp_path / "after", "mle")
    # One snapshot: the MLE run's, reused by SeqGAN (the run alone trained its own).
    assert len(list(store.shared_dir(tmp_path / "after", "tiny", 0).glob("mle-*.pt"))) == 1
    assert alone == after


@pytest.mark.slow
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


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9, 1.0])
def test_scheduled_sampling_draws_the_tokens_of_sample_from_logits_then_a_coin(rate):
    """Sampling only the rows that need it (the CPU) or every row (a GPU) gives the tokens,
    and leaves the random stream where sample_from_logits and then the coins would."""
    torch.manual_seed(0)
    logits, true_tokens = torch.randn(64, 300) * 3, torch.randint(0, 300, (64,))
    before, after, every_row = (torch.Generator().manual_seed(5) for _ in range(3))
    sampled, _ = sample_from_logits(logits, generator=before)
    expected = torch.where(torch.rand(64, generator=before) < rate, true_tokens, sampled)
    assert torch.equal(next_inputs(logits, true_tokens, rate, after), expected)
    assert torch.equal(after.get_state(), before.get_state())
    uniforms = torch.rand(64, 1, generator=every_row)
    use_true = torch.rand(64, generator=every_row) < rate
    assert torch.equal(torch.where(use_true, true_tokens, draw_inverse_cdf(logits, uniforms, None, log_probs=False)[0]),
                       expected)


def test_a_positive_reward_raises_the_sequence_likelihood():
    torch.manual_seed(0)
    generator = LSTMGenerator(vocab_size=20, seq_len=7, emb_dim=8, hidden_dim=8)
    optimizer = torch.optim.Adam(generator.parameters(), lr=0.01)
    sequence = generator.sample(1)
    before = generator.log_likelihood(sequence).item()
    policy_gradient_step(generator, optimizer, sequence, torch.ones(1, 7), grad_clip=5.0)
    assert generator.log_likelihood(sequence).item() > before


def authors_pg_loss(probs: np.ndarray, sequences: np.ndarray, rewards: np.ndarray) -> float:
    """A transcription of the authors' g_loss (LantaoYu/SeqGAN MLE_SeqGAN/model.py 115-119
    @4152436): -reduce_sum(reduce_sum(one_hot(x) * log(clip(p, 1e-20, 1)), 1) * rewards)."""
    one_hot = np.eye(probs.shape[-1])[sequences.reshape(-1)]
    log_p = np.log(np.clip(probs.reshape(-1, probs.shape[-1]), 1e-20, 1.0))
    return float(-np.sum(np.sum(one_hot * log_p, 1) * rewards.reshape(-1)))


@pytest.mark.parametrize("pg_loss", ["sum", "mean"])
def test_the_policy_gradient_loss_is_the_authors_sum_or_its_batch_mean(pg_loss):
    torch.manual_seed(0)
    generator = LSTMGenerator(vocab_size=9, seq_len=5, emb_dim=4, hidden_dim=4, init_std=0.5)
    sequences = torch.randint(0, 9, (6, 5))
    rewards = torch.rand(6, 5)
    with torch.no_grad():
        logits, _ = generator(generator.shifted_inputs(sequences))
        probs = torch.softmax(logits.double(), dim=-1).numpy()
    theirs = authors_pg_loss(probs, sequences.numpy(), rewards.numpy())
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.0)  # the loss, not the step
    ours = policy_gradient_step(generator, optimizer, sequences, rewards, 5.0, pg_loss)
    assert ours == pytest.approx(theirs if pg_loss == "sum" else theirs / 6, rel=1e-5)


def test_the_authors_profiles_sum_the_policy_gradient_and_the_table_says_so():
    from dataclasses import asdict

    from harness.config import resolve
    from harness.plugins import registry

    for name in ("seqgan", "pg-bleu", "rankgan"):
        method = registry().methods[name]
        for profile, reduction in (("default", "averaged"), ("paper", "averaged"),
                                   ("authors", "summed")):
            config = asdict(resolve(method, profile, {}))
            assert method.conditions(config)["pg_loss"] == f"{reduction} over the batch"
    # A run recorded before the setting existed averaged the loss.
    assert registry().methods["seqgan"].conditions({})["pg_loss"] == "averaged over the batch"


# --- the authors' 2016 settings and protocol ---------------------------------------------

@pytest.mark.parametrize("method, expected", [
    ("mle", {"epochs": 350, "lr": 0.001, "shuffle": False}),
    ("ss", {"epochs": 300, "rate_decay": 0.002, "lr": 0.001, "shuffle": False, "eval_every": 1}),
    ("pg-bleu", {"pretrain_epochs": 200, "adv_batches": 800, "lr": 0.001, "shuffle": False,
                 "adv_eval_every": 1, "bleu_rule": "nltk-3.2", "bleu_order": 3,
                 "reference_fraction": 0.4, "n_rollouts": 1, "rollout_update_rate": 0.0,
                 "pg_loss": "sum"}),
    ("seqgan", {"pretrain_epochs": 240, "adv_batches": 800, "lr": 0.001, "shuffle": False,
                "adv_eval_every": 1, "disc_size": "paper", "disc_pretrain_rounds": 50,
                "disc_epochs": 3, "d_steps": 5, "disc_negatives": 9984, "n_rollouts": 16,
                "rollout_update_rate": 0.0, "disc_lr": 1e-4, "pg_loss": "sum"}),
    ("random", {"mle_epochs": 1, "lr": 0.001, "shuffle": False}),
])
def test_the_authors_2016_profile_holds_their_first_commits_settings(method, expected):
    from dataclasses import asdict

    from harness.config import resolve
    from harness.plugins import registry

    config = asdict(resolve(registry().methods[method], "authors", {}))
    assert {key: config[key] for key in expected} == expected


def test_under_authors_2016_the_random_row_is_the_generator_after_one_mle_epoch(cli, tiny_dataset):
    result = cli("-q", "run", "-m", "random", "-d", "tiny", "--profile", "authors")
    assert result.exit_code == 0, result.output
    curve = pd.read_csv(run_dir("random") / "curve.csv")
    assert list(curve.epoch) == [0, 1] and set(curve.phase) == {"mle"}
    metrics = json.loads((run_dir("random") / "metrics.json").read_text())
    assert metrics["nll_oracle"] == pytest.approx(curve.nll_oracle.iloc[-1], abs=0.05)
    note = "random: the generator after 1 MLE epoch(s) at Adam 0.001, not an untrained one"
    assert json.loads((run_dir("random") / "config.json").read_text())["notes"] == [note]
    assert note in cli("table").output


def test_a_rollout_rate_of_zero_rolls_out_with_the_generator_itself():
    from harness_plugins.adversarial import Rollout

    torch.manual_seed(0)
    generator = LSTMGenerator(vocab_size=20, seq_len=5, emb_dim=8, hidden_dim=8)
    rollout = Rollout(generator, update_rate=0.0)
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(1.0)
    rollout.update(generator)
    assert all(torch.equal(a, b) for a, b in zip(rollout.policy.parameters(),
                                                 generator.parameters()))
    delayed = Rollout(LSTMGenerator(vocab_size=20, seq_len=5, emb_dim=8, hidden_dim=8), 0.8)
    before = [p.clone() for p in delayed.policy.parameters()]
    delayed.update(generator)
    lstm = dict(delayed.policy.named_parameters())["lstm.weight_hh_l0"]
    expected = 0.8 * before[2] + 0.2 * dict(generator.named_parameters())["lstm.weight_hh_l0"]
    torch.testing.assert_close(lstm, expected)


def test_pg_bleus_default_reward_rule_rewards_where_the_strict_one_gives_zero():
    from harness.metrics import BleuReferences
    from harness_plugins.pg_bleu import PgBleuConfig
    from harness_tiny import tiny_oracle_corpus

    assert PgBleuConfig().bleu_rule == "nltk-3.2"
    corpus = tiny_oracle_corpus("default", 0)
    references = BleuReferences(corpus.train[:100].tolist(), 3)
    # Early in training the samples are nearly uniform: many have no matching trigram.
    noise = torch.randint(0, corpus.vocab_size, (200, corpus.seq_len),
                          generator=torch.Generator().manual_seed(0)).tolist()
    strict = references.sentence_scores(noise, rule="strict")
    authors = references.sentence_scores(noise, rule="nltk-3.2")
    assert (strict == 0).mean() > 0.5 and (authors == 0).mean() < 0.05
    assert (authors >= strict).all()


def test_the_real_row_is_scored_against_a_split_it_is_not_drawn_from():
    from harness import evaluate
    from harness_plugins.reference import RealSentences
    from harness_tiny import tiny_oracle_corpus

    corpus = tiny_oracle_corpus("default", 0)
    real = RealSentences(corpus.train, corpus.test)
    metrics, samples = evaluate.evaluate(real, corpus, 0)
    training = {tuple(row) for row in corpus.train.tolist()}
    assert all(tuple(row) in training for row in samples.tolist())  # against the held-out refs
    held_out = real.samples_outside("train", 50, torch.Generator().manual_seed(0))
    assert {tuple(row) for row in held_out.tolist()} <= {tuple(r) for r in corpus.test.tolist()}
    assert metrics["train_copy"] < 0.5  # held-out sentences, not copies of the training data


@pytest.mark.slow
def test_a_longer_mle_run_serves_a_shorter_pretraining_bit_for_bit(cli, tiny_dataset, tmp_path):
    adversarial = ["--set", "pretrain_epochs=2", "--set", "eval_every=2", "--set", "adv_batches=1",
                   "--set", "n_rollouts=1"]
    shared = ["-q", "run", "-d", "tiny", "--run-id", "x"]
    assert cli(*shared, "-m", "mle", "--set", "epochs=4", "--set", "eval_every=2",
               "--results", str(tmp_path / "a")).exit_code == 0
    assert cli(*shared, "-m", "pg-bleu", *adversarial, "--results", str(tmp_path / "a")).exit_code == 0
    assert cli(*shared, "-m", "pg-bleu", *adversarial, "--results", str(tmp_path / "b")).exit_code == 0
    reused, alone = (tmp_path / r / "x" / "tiny" / "pg-bleu" / "seed-0" for r in "ab")
    assert "reusing the MLE pre-training" in (reused / "run.log").read_text()
    assert "reusing the MLE pre-training" not in (alone / "run.log").read_text()
    timing = ("train_seconds", "eval_seconds", "judge_lm_seconds")
    metrics = [{k: v for k, v in json.loads((d / "metrics.json").read_text()).items()
                if k not in timing} for d in (reused, alone)]
    assert metrics[0] == metrics[1]
    mle_curve = pd.read_csv(tmp_path / "a" / "x" / "tiny" / "mle" / "seed-0" / "curve.csv")
    pre = pd.read_csv(reused / "curve.csv").query("phase == 'mle'")
    assert list(pre.nll_oracle) == list(mle_curve.nll_oracle[mle_curve.epoch <= 2])


@pytest.mark.slow
def test_a_data_sets_method_settings_apply_under_the_default_profile_only(cli, register_plugin):
    import types

    import harness
    from harness.api import Dataset
    from harness_tiny import tiny_oracle_corpus

    module = types.ModuleType("harness_short")
    module.register_datasets = harness.hookimpl(lambda register: register(Dataset(
        "short", lambda **kw: tiny_oracle_corpus("default", kw["seed"]), "short epochs",
        method_settings={"epochs": 2, "pretrain_epochs": 2, "no_such_setting": 1})))
    register_plugin(module)

    def epochs(method: str, *options: str, run_id: str = "ours") -> tuple[int, int]:
        result = cli("-q", "run", "-m", method, "-d", "short", "--set", "eval_every=1",
                     "--run-id", run_id, *options)
        assert result.exit_code == 0, result.output
        run = Path(os.environ["HARNESS_RESULTS"]) / run_id / "short" / method / "seed-0"
        config = json.loads((run / "config.json").read_text())["config"]
        return config.get("epochs", config.get("pretrain_epochs")), \
            pd.read_csv(run / "curve.csv").epoch.max()

    assert epochs("mle") == (2, 2)
    # --set is the user's word: it beats the data set's.
    assert epochs("mle", "--set", "epochs=1", run_id="mine")[0] == 1
    # SeqGAN starts from the MLE run's generator: the same 2 epochs, reused.
    assert epochs("seqgan", "--set", "adv_batches=1", "--set", "n_rollouts=1",
                  "--set", "disc_negatives=64", "--set", "disc_pretrain_rounds=1")[0] == 2
    assert len(list(store.shared_dir(None, "short", 0).glob("mle-*-epoch-2.pt"))) == 1


def test_a_data_sets_method_settings_leave_other_profiles_and_unknown_keys_alone():
    from harness.api import Dataset
    from harness.config import resolve
    from harness.plugins import registry

    mle = registry().methods["mle"]
    short = Dataset("short", lambda **kw: None, method_settings={"epochs": 2, "nothing": 1})
    assert resolve(mle, "default", {}, short).epochs == 2
    assert resolve(mle, "paper", {}, short).epochs == 120
    assert resolve(mle, "default", {"epochs": "3"}, short).epochs == 3
    assert resolve(mle, "default", {}).epochs == 8


def test_on_obama_the_mle_run_and_the_pretraining_of_the_methods_that_start_from_it_agree(cli):
    from harness.config import resolve
    from harness.plugins import registry

    found = registry()
    obama = found.dataset("obama")
    assert resolve(found.methods["mle"], "default", {}, obama).epochs == 16
    assert resolve(found.methods["mle"], "default", {}, found.dataset("poems")).epochs == 8
    starting = [m for m in found.methods.values() if "mle" in m.starts_from]
    assert len(starting) >= 5
    for method in starting:
        assert resolve(method, "default", {}, obama).pretrain_epochs == 16, method.name
    assert "[default profile: epochs=16, pretrain_epochs=16]" in cli("list").output
