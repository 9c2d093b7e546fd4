"""RelGAN: the Gumbel-softmax relaxation and its beta schedule, the relational memory, the
multi-representation discriminator and the RSGAN loss, pinned on hand-made tensors against
direct computations of the paper's formulas; then tiny runs end to end and resumed."""
import json
import math
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.generator import LSTMGenerator
from harness_plugins.relgan import (MultiRepDiscriminator, RelationalMemory, RelGanGenerator,
                                    inverse_temperature, rsgan_losses)
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
