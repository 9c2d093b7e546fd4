"""RelGAN: the Gumbel-softmax relaxation and its beta schedule, the relational memory, the
multi-representation discriminator and the RSGAN loss, pinned on hand-made tensors against
direct computations of the paper's formulas; then tiny runs end to end and resumed."""
import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.generator import LSTMGenerator
from harness_plugins.relgan import (MultiRepDiscriminator, RelationalMemory, RelGanConfig,
                                    RelGanGenerator, inverse_temperature, new_relgan_generator,
                                    rsgan_losses)
from test_faults import drive, outcome, run_dir

TINY = ["--set", "pretrain_epochs=2", "--set", "eval_every=1", "--set", "adv_steps=4",
        "--set", "adv_eval_every=2", "--set", "batch_size=16", "--set", "head_size=4",
        "--set", "disc_emb_dim=8", "--set", "num_rep=4", "--set", "disc_filters=4",
        "--set", "disc_hidden=8", "--set", "beta_max=9"]


def tiny_generator(core: str = "rmc", **sizes) -> RelGanGenerator:
    torch.manual_seed(0)
    return RelGanGenerator(vocab_size=7, seq_len=5, start_token=0, core=core, emb_dim=4,
                           hidden_dim=6, **{"mem_slots": 2, "num_heads": 2, "head_size": 3,
                                            **sizes})


# --- (a) the Gumbel-softmax relaxation and beta ---------------------------------------

def test_exponential_beta_is_beta_max_to_the_n_over_n():
    for n in (0, 1, 7, 250, 999, 1000):
        assert inverse_temperature(n, 1000.0, 1000) == pytest.approx(1000.0 ** (n / 1000))
    assert inverse_temperature(0, 100.0, 50) == 1.0
    assert inverse_temperature(50, 100.0, 50) == pytest.approx(100.0)
    assert inverse_temperature(25, 100.0, 50) == pytest.approx(10.0)  # the geometric midpoint


@pytest.mark.parametrize("schedule, midpoint", [
    ("lin", 1 + 2000 / 4999 * 99), ("sigmoid", 99 / 2 + 1), ("no", 100.0),
    ("quad", 99 / 4999 ** 2 * 2500 ** 2 + 1), ("sqrt", 99 / math.sqrt(4999) * 50 + 1),
    ("log", 1 + 99 / math.log(5000) * math.log(2501))])
def test_other_schedules_rise_from_one_to_beta_max(schedule, midpoint):
    n = 2000 if schedule == "lin" else 2500
    assert inverse_temperature(n, 100.0, 5000, schedule) == pytest.approx(midpoint)
    if schedule != "no":
        assert inverse_temperature(0, 100.0, 5000, schedule) == pytest.approx(1.0, abs=0.01)
        assert inverse_temperature(4999, 100.0, 5000, schedule) == pytest.approx(100.0, rel=0.02)


@pytest.mark.parametrize("core", ["rmc", "lstm"])
def test_relaxed_samples_are_softmax_of_beta_times_perturbed_logits(core):
    generator, beta = tiny_generator(core), 3.0
    tokens, relaxed = generator.sample_relaxed(6, beta, torch.Generator().manual_seed(5))
    # Direct: teacher-force the drawn tokens, redraw the same uniforms, apply the formula.
    logits, _ = generator(generator.shifted_inputs(tokens))
    uniforms = torch.Generator().manual_seed(5)
    for t in range(generator.seq_len):
        g = -torch.log(-torch.log(torch.rand(6, 7, generator=uniforms)))
        perturbed = logits[:, t] + g
        assert torch.equal(tokens[:, t], perturbed.argmax(dim=1))
        assert torch.allclose(relaxed[:, t], torch.softmax(beta * perturbed, dim=1), atol=1e-5)
    # Large beta: the relaxation approaches the one-hot of the drawn token.
    _, sharp = generator.sample_relaxed(6, 1e6, torch.Generator().manual_seed(5))
    assert torch.allclose(sharp, F.one_hot(tokens, 7).float(), atol=1e-4)


def test_discriminator_gradient_reaches_the_generator_through_the_relaxation():
    generator = tiny_generator()
    disc = MultiRepDiscriminator(7, 5, emb_dim=4, num_rep=2, num_filters=3, hidden=4).eval()
    real = torch.randint(7, (4, 5), generator=torch.Generator().manual_seed(1))
    _, fake = generator.sample_relaxed(4, 2.0, torch.Generator().manual_seed(2))
    g_loss = rsgan_losses(disc(real), disc(fake))[1]
    g_loss.backward()
    for name, parameter in generator.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


# --- (b) the relational memory ---------------------------------------------------------

def naive_rmc_step(core: RelationalMemory, x: torch.Tensor, memory: torch.Tensor):
    """One step written out head by head and row by row from Santoro et al. 2018."""
    heads, size = core.num_heads, core.head_size
    joined = torch.cat([memory, core.project_input(x)[:, None]], dim=1)
    attended = torch.zeros_like(joined)
    for b in range(len(x)):
        qkv = core.qkv_norm(core.qkv(joined[b]))  # [rows, 3 * mem]
        for h in range(heads):
            block = qkv[:, h * 3 * size:(h + 1) * 3 * size]
            q, k, v = block[:, :size], block[:, size:2 * size], block[:, 2 * size:]
            for i in range(len(joined[b])):
                scores = torch.stack([q[i] @ k[j] for j in range(len(k))]) / math.sqrt(3 * size)
                attended[b, i, h * size:(h + 1) * size] = torch.softmax(scores, 0) @ v
    joined = core.attention_norm(joined + attended)
    joined = core.mlp_norm(joined + core.mlp(joined))
    gates = core.gate_memory(torch.tanh(memory)) + core.gate_input(core.project_input(x))[:, None]
    i_gate = torch.sigmoid(gates[..., :core.mem_size])
    f_gate = torch.sigmoid(gates[..., core.mem_size:] + 1.0)  # forget bias 1
    return i_gate * torch.tanh(joined[:, :-1]) + f_gate * memory


def test_relational_memory_step_matches_a_head_by_head_computation():
    torch.manual_seed(0)
    core = RelationalMemory(input_size=4, mem_slots=3, num_heads=2, head_size=3)
    memory = core.initial_state(2, torch.device("cpu"))
    assert torch.equal(memory[0], torch.eye(3, 6))  # distinct one-hot slots
    for _ in range(3):
        x = torch.randn(2, 4)
        output, updated = core(x, memory)
        assert torch.allclose(updated, naive_rmc_step(core, x, memory), atol=1e-5)
        assert torch.equal(output, updated.flatten(1))
        memory = updated


def test_lstm_variant_is_the_shared_lstm_generator():
    torch.manual_seed(0)
    shared = LSTMGenerator(7, 5, emb_dim=4, hidden_dim=6)
    variant = tiny_generator("lstm")
    variant.load_state_dict(shared.state_dict())  # same names and shapes: loads strictly
    tokens = torch.randint(7, (3, 5))
    assert torch.allclose(variant.log_likelihood(tokens), shared.log_likelihood(tokens))
    rmc = tiny_generator()
    assert (-rmc.log_likelihood(tokens)).gt(0).all() and rmc.sample(3).shape == (3, 5)


# --- (c) the multi-representation discriminator and RSGAN -------------------------------

def test_rsgan_losses_match_the_formula():
    real = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    fake = torch.tensor([[1.0, 1.0], [-3.0, 0.0]])
    d_loss, g_loss = rsgan_losses(real, fake)
    gaps = [1.0, -2.0, 3.5, 0.0]
    sigmoid = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert d_loss.item() == pytest.approx(-sum(math.log(sigmoid(g)) for g in gaps) / 4)
    assert g_loss.item() == pytest.approx(-sum(math.log(sigmoid(-g)) for g in gaps) / 4)


def test_each_representation_is_scored_by_the_shared_cnn_on_its_own_columns():
    torch.manual_seed(0)
    disc = MultiRepDiscriminator(7, 5, emb_dim=6, num_rep=3, filter_sizes=(2, 3),
                                 num_filters=4, hidden=5).eval()
    tokens = torch.randint(7, (4, 5))
    scores = disc(tokens)
    assert scores.shape == (4, 3)
    assert torch.allclose(disc(F.one_hot(tokens, 7).float()), scores, atol=1e-6)
    for r in range(3):  # direct: representation r alone, d = 2 columns, through the CNN
        emb = disc.embedding[tokens][:, :, 2 * r:2 * r + 2].transpose(1, 2)  # [B, d, T]
        pooled = torch.cat([F.relu(F.conv1d(emb, conv.weight, conv.bias).amax(dim=2))
                            for conv in disc.convs], dim=1)
        direct = disc.score(disc.hidden(disc.highway(pooled))).squeeze(1)
        assert torch.allclose(scores[:, r], direct, atol=1e-5)


# --- end to end and resume --------------------------------------------------------------

def tiny_run_dir(method: str = "relgan") -> Path:
    return next(Path(os.environ["HARNESS_RESULTS"]).glob(f"*/tiny/{method}/seed-0"))


@pytest.mark.slow
def test_rmc_relgan_runs_end_to_end_with_its_beta_schedule(cli, tiny_dataset):
    result = cli("-q", "run", "-m", "relgan", "-d", "tiny", *TINY)
    assert result.exit_code == 0, result.output
    curve = pd.read_csv(tiny_run_dir() / "curve.csv")
    assert list(curve.phase) == ["mle"] * 3 + ["adversarial"] * 2
    adversarial = curve[curve.phase == "adversarial"]
    assert list(adversarial.epoch) == [4, 6]  # after 2 pre-training epochs
    # beta at 0-based iterations 1 and 3 of 4: 9 ** (n / 4)
    assert list(adversarial.beta) == pytest.approx([9 ** 0.25, 9 ** 0.75])
    metrics = json.loads((tiny_run_dir() / "metrics.json").read_text())
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert math.isfinite(metrics["nll_oracle"])


@pytest.mark.slow
def test_lstm_relgan_starts_from_the_shared_mle_run(cli, tiny_dataset):
    result = cli("-q", "run", "-m", "mle", "-m", "relgan", "-d", "tiny", "--set", "epochs=2",
                 "--set", "generator=lstm", *TINY)
    assert result.exit_code == 0, result.output
    mle = pd.read_csv(tiny_run_dir("mle") / "curve.csv")
    curve = pd.read_csv(tiny_run_dir() / "curve.csv")
    assert list(curve[curve.phase == "mle"].nll_oracle) == list(mle.nll_oracle)
    assert curve[curve.phase == "adversarial"].g_loss.notna().all()


@pytest.mark.slow
def test_killed_relgan_resumes_to_identical_metrics(tmp_path):
    """Killed in the adversarial phase, so the resumed run also crosses from the saved
    pre-training into it (a kill during pre-training resumes through mle's phase)."""
    assert drive("none", "relgan", tmp_path / "clean", TINY[1::2]).returncode == 0
    killed = drive("kill-after:adversarial:2", "relgan", tmp_path / "killed", TINY[1::2])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (run_dir(tmp_path / "killed", "relgan") / "metrics.json").exists()
    assert drive("none", "relgan", tmp_path / "killed", TINY[1::2]).returncode == 0
    assert outcome(tmp_path / "killed", "relgan") == outcome(tmp_path / "clean", "relgan")


# --- the authors' initialisation, highway and LSTM biases ------------------------------

def tiny_corpus(vocab_size: int = 7, seq_len: int = 5):
    from types import SimpleNamespace

    return SimpleNamespace(vocab_size=vocab_size, seq_len=seq_len, start_token=0)


def test_the_authors_embedding_is_a_normal_of_std_one_over_sqrt_vocab_cut_at_two_std():
    """weilinie/RelGAN @7402725 models/rmc_vanilla.py 14-15: g_emb [vocab, gen_emb_dim] with
    create_linear_initializer(vocab_size), which is (utils/ops.py 17-20)
    tf.truncated_normal_initializer(stddev=1 / math.sqrt(input_size * 1.0)): a normal whose
    draws beyond 2 std are redrawn."""
    vocab = 5000
    std = 1 / math.sqrt(vocab * 1.0)                       # ops.py 19, input_size = vocab
    cfg = RelGanConfig(emb_init="authors")
    torch.manual_seed(0)
    weights = new_relgan_generator(tiny_corpus(vocab, 20), cfg, torch.device("cpu"))
    x = weights.embedding.weight.detach().double().flatten()
    n = len(x)
    assert n == vocab * cfg.emb_dim
    # truncation: nothing beyond 2 std, and the draws reach it
    assert float(x.abs().max()) <= 2 * std
    assert float(x.abs().max()) > 1.99 * std
    # the law: N(0, std) restricted to [-2 std, 2 std]; its std is 0.8796 std
    normal = torch.distributions.Normal(0.0, 1.0)
    mass = float(normal.cdf(torch.tensor(2.0)) - normal.cdf(torch.tensor(-2.0)))
    density = math.exp(-2.0) / math.sqrt(2 * math.pi)  # phi(2)
    cut_std = std * math.sqrt(1 - 2 * 2 * density / mass)
    assert cut_std == pytest.approx(0.87962566 * std)
    # Six standard errors (a fixed seed: deterministic; no seed fails them by chance; the
    # sample std's standard error is below cut_std / sqrt(n), this law's kurtosis under 5).
    assert abs(float(x.mean())) < 6 * cut_std / math.sqrt(n)
    assert float(x.std()) == pytest.approx(cut_std, abs=6 * cut_std / math.sqrt(n))
    ordered = x.sort().values
    cdf = (normal.cdf(ordered / std) - normal.cdf(torch.tensor(-2.0))) / mass
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    assert float(torch.maximum(ranks / n - cdf, cdf - (ranks - 1) / n).max()) < 3 / math.sqrt(n)
    # about 70 times smaller than nn.Embedding's N(0, 1), which the default keeps, draw for draw
    torch.manual_seed(0)
    default = new_relgan_generator(tiny_corpus(vocab, 20), RelGanConfig(), torch.device("cpu"))
    torch.manual_seed(0)
    plain = RelGanGenerator(vocab, 20, 0, "rmc", 32, 32, 1, 2, 16)
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(),
                                                   plain.state_dict().values()))
    assert float(default.embedding.weight.detach().std()) == pytest.approx(1.0, abs=0.02)
    # the "lstm" generator's embedding is the shared MLE run's: left as drawn
    torch.manual_seed(0)
    lstm = new_relgan_generator(tiny_corpus(vocab, 20),
                                RelGanConfig(generator="lstm", emb_init="authors"),
                                torch.device("cpu"))
    assert float(lstm.embedding.weight.detach().std()) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="emb_init"):
        RelGanConfig(emb_init="xavier")


def authors_highway(x, lin_matrix, gate_matrix):
    """utils/ops.py 66-80 as models/rmc_vanilla.py 133 calls it (num_layers 1, bias 0), in
    numpy: linear(input_, size) (line 28, use_bias False) is input_ @ W^T, W [out, in]."""
    g = np.maximum(x @ lin_matrix.T, 0.0)                                     # line 75
    t = 1.0 / (1.0 + np.exp(-(x @ gate_matrix.T + 0)))                        # line 77
    return t * g + (1.0 - t) * x                                              # line 79


def test_the_authors_discriminator_highway_has_no_biases():
    torch.manual_seed(0)
    disc = MultiRepDiscriminator(7, 5, emb_dim=6, num_rep=3, filter_sizes=(2, 3),
                                 num_filters=4, hidden=5, highway_bias=False).eval()
    assert not any(name.startswith("highway.") and name.endswith("bias")
                   for name, _ in disc.named_parameters())
    pooled = np.random.default_rng(0).standard_normal((6, 8))
    expected = authors_highway(pooled, disc.highway.transform.weight.detach().double().numpy(),
                               disc.highway.gate.weight.detach().double().numpy())
    got = disc.highway(torch.from_numpy(pooled).float()).detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    tokens = torch.randint(7, (4, 5))
    assert disc(tokens).shape == (4, 3)
    assert MultiRepDiscriminator(7, 5, emb_dim=6, num_rep=3).highway.gate.bias is not None


def test_the_lstm_variant_with_one_bias_per_gate_is_the_shared_one():
    torch.manual_seed(0)
    shared = LSTMGenerator(7, 5, emb_dim=4, hidden_dim=6, lstm_biases=1)
    variant = tiny_generator("lstm", lstm_biases=1)
    bias_hh = variant.lstm.bias_hh_l0
    assert not bias_hh.requires_grad and torch.equal(bias_hh, torch.zeros_like(bias_hh))
    variant.load_state_dict(shared.state_dict())
    tokens = torch.randint(7, (3, 5))
    assert torch.allclose(variant.log_likelihood(tokens), shared.log_likelihood(tokens))
    assert variant.constructor_args["lstm_biases"] == 1
    assert tiny_generator("lstm").lstm.bias_hh_l0.requires_grad  # the default: two, trained


def test_pretraining_hands_lstm_biases_to_the_shared_mle_run_only(monkeypatch):
    from types import SimpleNamespace

    from harness_plugins import relgan

    seen = {}

    def start_from(method, **settings):
        seen[method] = settings
        return LSTMGenerator(7, 5, emb_dim=4, hidden_dim=6, lstm_biases=1)

    ctx = SimpleNamespace(corpus=tiny_corpus(), device=torch.device("cpu"), start_from=start_from)
    cfg = RelGanConfig(generator="lstm", emb_dim=4, hidden_dim=6, lstm_biases=1, shuffle=False)
    generator = relgan.pretrain(ctx, cfg)
    assert seen["mle"]["lstm_biases"] == 1 and seen["mle"]["shuffle"] is False
    assert not generator.lstm.bias_hh_l0.requires_grad
    monkeypatch.setattr(relgan, "train_by_mle",
                        lambda ctx, generator, phase, **settings: seen.update(rmc=settings))
    relgan.pretrain(ctx, RelGanConfig(head_size=4, lstm_biases=1))
    assert not {"emb_dim", "hidden_dim", "lstm_biases"} & set(seen["rmc"])


def test_the_authors_profile_holds_their_code_settings():
    from dataclasses import asdict

    from harness.config import resolve
    from harness.plugins import registry
    from harness_plugins import relgan

    method = registry().methods["relgan"]
    config = asdict(resolve(method, "authors", {}))
    assert {key: config[key] for key in relgan.AUTHORS} == relgan.AUTHORS
    keys = ("emb_init", "shuffle", "highway_bias", "lstm_biases")
    assert tuple(config[key] for key in keys) == ("authors", False, False, 1)
    for profile in ("default", "paper"):  # as before
        other = asdict(resolve(method, profile, {}))
        assert tuple(other[key] for key in keys) == ("torch", True, True, 2)


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["rmc", "lstm"])
def test_the_authors_profile_runs_end_to_end(cli, tiny_dataset, tmp_path, generator):
    result = cli("-q", "run", "-m", "relgan", "-d", "tiny", "--profile", "authors",
                 "--results", str(tmp_path), "--set", f"generator={generator}", *TINY)
    assert result.exit_code == 0, result.output
    found = next(tmp_path.glob("*/tiny/relgan/seed-0"))
    config = json.loads((found / "config.json").read_text())["config"]
    assert (config["emb_init"], config["shuffle"], config["highway_bias"],
            config["lstm_biases"]) == ("authors", False, False, 1)
    metrics = json.loads((found / "metrics.json").read_text())
    assert math.isfinite(metrics["nll_oracle"])
