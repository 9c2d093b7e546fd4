import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness_tiny import tiny_oracle_corpus
from harness.api import HarnessError
from harness_plugins import vae

# Small enough to train in about a second; free bits keep the posterior from collapsing.
TINY = vae.VaeConfig(emb_dim=16, hidden_dim=32, latent_dim=8, lr=3e-3, kl_anneal_steps=16,
                     free_bits=0.25, word_dropout=0.3)


def tiny_settings(**changes) -> list[str]:
    """--set arguments for the TINY configuration, with ``changes``."""
    values = {key: getattr(TINY, key) for key in ("emb_dim", "hidden_dim", "latent_dim", "lr",
                                                  "kl_anneal_steps", "free_bits", "word_dropout")}
    return [arg for key, value in {**values, **changes}.items()
            for arg in ("--set", f"{key}={value}")]


def zero_posterior(model: vae.VaeGenerator) -> vae.VaeGenerator:
    """Make every q(z|x) exactly N(0, I): a fully collapsed posterior."""
    for layer in (model.to_mu, model.to_logvar):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    return model


@pytest.fixture(scope="module")
def corpus():
    return tiny_oracle_corpus("default", seed=0)


@pytest.fixture(scope="module")
def model(corpus):
    """A VAE trained briefly on the tiny oracle: its posterior is informative."""
    torch.manual_seed(0)
    model = vae.new_model(corpus, TINY, torch.device("cpu"))
    optimizer = torch.optim.Adam(model.parameters(), lr=TINY.lr)
    rng, step = torch.Generator().manual_seed(0), 0
    for _ in range(8):
        _, step = vae.vae_epoch(model, corpus.train, optimizer, TINY, rng, step)
    return model.eval()


def results() -> Path:
    return Path(os.environ["HARNESS_RESULTS"])


def test_kl_annealing_schedules():
    assert [vae.kl_weight(s, "linear", 100) for s in (0, 25, 50, 100, 500)] == [0, .25, .5, 1, 1]
    logistic = [vae.kl_weight(s, "logistic", 100) for s in (0, 50, 100, 500)]
    assert logistic == pytest.approx([1 / (1 + math.exp(5)), 0.5, 1, 1])
    assert vae.kl_weight(0, "none", 100) == 1
    with pytest.raises(HarnessError, match="kl_anneal=cyclic"):
        vae.kl_weight(0, "cyclic", 100)


def test_free_bits_floor_each_dimension_of_the_batch_mean_kl():
    kl = torch.tensor([[0.0, 0.3, 2.0], [0.2, 0.1, 2.0]], requires_grad=True)  # means .1 .2 2
    assert vae.kl_penalty(kl, 0.0).item() == pytest.approx(2.3)
    penalty = vae.kl_penalty(kl, 0.25)
    assert penalty.item() == pytest.approx(0.25 + 0.25 + 2.0)
    penalty.backward()
    assert kl.grad.tolist() == [[0, 0, 0.5], [0, 0, 0.5]]  # dimensions under the floor are free


@pytest.mark.slow
def test_elbo_below_iwae_which_grows_with_k(model, corpus):
    tokens = corpus.test[:32]
    elbo = model.elbo(tokens, samples=200).mean().item()
    # IWAE_K estimates averaged over many repeats of each sequence: close to their expectation.
    iwae = {k: model.log_likelihood(tokens.repeat(reps, 1), samples=k).mean().item()
            for k, reps in ((1, 200), (5, 40), (50, 4), (500, 1))}
    assert elbo < iwae[500]
    assert iwae[1] <= iwae[5] <= iwae[50] <= iwae[500]
    assert iwae[500] - iwae[1] > 0.01  # a real gap: the test is not vacuous
    assert iwae[1] == pytest.approx(elbo, abs=0.02)  # K = 1 is the ELBO in expectation
    # Repeatable: the evaluation draws z from its own fixed seed.
    assert torch.equal(model.log_likelihood(tokens), model.log_likelihood(tokens))
    assert model.likelihood_is_bound and isinstance(model, torch.nn.Module)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
@torch.no_grad()
def test_iwae_at_several_temperatures_is_the_direct_bound_at_each(model, corpus, temperature):
    # The sweep's shared pass (one decoder pass per z for every temperature) against the
    # bound written out: K draws of z, log p_T(x|z) + log p(z) - log q(z|x), log-mean-exp.
    tokens, k = corpus.test[:8], 4
    rng = torch.Generator().manual_seed(vae.EVAL_Z_SEED)
    mu, logvar = model.encode(tokens)
    weights = []
    for _ in range(k):
        eps = torch.randn(mu.shape, generator=rng)
        z = mu + (0.5 * logvar).exp() * eps
        log_q = -0.5 * (eps.pow(2) + logvar + vae.LOG_2PI).sum(dim=1)
        weights.append(model.token_log_probs(tokens, z, temperature).sum(dim=1)
                       + vae.standard_normal_log_density(z) - log_q)
    direct = torch.logsumexp(torch.stack(weights), dim=0) - math.log(k)
    shared = model.log_likelihoods(tokens, (0.3, temperature, 2.0), samples=k)[1]
    assert torch.equal(shared, direct)


def test_collapsed_posterior_has_no_active_units(model, corpus):
    collapsed = vae.new_model(corpus, TINY, torch.device("cpu"))
    collapsed.load_state_dict(model.state_dict())
    measured = vae.diagnostics(zero_posterior(collapsed), corpus.train)
    assert measured["active_units"] == 0 and measured["kl"] == 0
    assert vae.diagnostics(model, corpus.train)["active_units"] > 0


@pytest.mark.slow
def test_collapse_is_warned_and_recorded(cli, tiny_dataset, monkeypatch):
    new_model = vae.new_model
    monkeypatch.setattr(vae, "new_model", lambda *args: zero_posterior(new_model(*args)))
    # lr 0 keeps the posterior collapsed through the epoch.
    result = cli("-q", "run", "-m", "vae", "-d", "tiny", *tiny_settings(epochs=1, lr=0))
    assert result.exit_code == 0, result.output
    run_dir = next(results().glob("*/tiny/vae/seed-0"))
    assert "the posterior collapsed (0 of 8 active units)" in (run_dir / "run.log").read_text()
    last = pd.read_csv(run_dir / "curve.csv").iloc[-1]
    assert last.active_units == 0 and bool(last.collapsed)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_carries_the_decoder_state(model, temperature):
    z = torch.randn(16, model.latent_dim, generator=torch.Generator().manual_seed(1))
    tokens, step_log_probs = model.decode(z, temperature, torch.Generator().manual_seed(2))
    teacher_forced = model.token_log_probs(tokens, z, temperature)
    torch.testing.assert_close(step_log_probs, teacher_forced, atol=1e-5, rtol=0)


def test_sample_is_reproducible_from_its_generator(model, corpus):
    draw = lambda: model.sample(200, generator=torch.Generator().manual_seed(3))  # noqa: E731
    first = draw()
    assert first.shape == (200, corpus.seq_len) and first.dtype == torch.int64
    assert torch.equal(first, draw())
    assert first.max() < corpus.vocab_size  # the <drop> token is never emitted


def test_interpolation_runs_from_one_sequence_to_the_other(model, corpus):
    a, b = corpus.test[0], corpus.test[1]
    path = model.interpolate(a, b, steps=5)
    assert path.shape == (5, corpus.seq_len)
    mu, _ = model.encode(torch.stack([a, b]))
    with torch.no_grad():
        ends = model.decode(mu, greedy=True)[0]
    assert torch.equal(path[0], ends[0]) and torch.equal(path[-1], ends[1])


@pytest.mark.slow
def test_runs_end_to_end_and_does_not_collapse(cli, tiny_dataset):
    result = cli("-q", "run", "-m", "vae", "-d", "tiny", *tiny_settings(epochs=6))
    assert result.exit_code == 0, result.output
    run_dir = next(results().glob("*/tiny/vae/seed-0"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["nll_oracle"] < 20 and 0 < metrics["nll_test"] < 20
    curve = pd.read_csv(run_dir / "curve.csv")
    assert list(curve.epoch) == list(range(7))
    assert {"recon_nll", "kl", "bound", "active_units", "beta", "nll_oracle"} <= set(curve)
    assert curve.beta.iloc[-1] == 1
    assert curve.kl.iloc[-1] > 0.5 and curve.active_units.iloc[-1] > 0
    assert not curve.collapsed.iloc[-1]


@pytest.mark.slow
def test_resumes_exactly_from_its_checkpoint(cli, tiny_dataset):
    run = lambda run_id, epochs: cli(  # noqa: E731
        "-q", "run", "-m", "vae", "-d", "tiny", "--run-id", run_id, *tiny_settings(epochs=epochs))
    assert run("straight", 2).exit_code == 0
    assert run("resumed", 1).exit_code == 0
    resumed = results() / "resumed" / "tiny" / "vae" / "seed-0"
    (resumed / "metrics.json").unlink()  # unfinished again: the next run resumes at epoch 1
    assert run("resumed", 2).exit_code == 0
    straight = results() / "straight" / "tiny" / "vae" / "seed-0"
    assert (resumed / "curve.csv").read_text() == (straight / "curve.csv").read_text()
    assert (json.loads((resumed / "metrics.json").read_text())["nll_test"]
            == json.loads((straight / "metrics.json").read_text())["nll_test"])
