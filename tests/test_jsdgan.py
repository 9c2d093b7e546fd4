"""JSDGAN: its loss's gradient is the exact Jensen-Shannon gradient (checked against the
JSD itself, differentiated by autograd over every sequence of a tiny generator), it runs
end to end after the shared MLE pre-training, and a killed run resumes to identical
metrics."""
from __future__ import annotations

import itertools
import math
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness import plugins, store
from harness.generator import LSTMGenerator
from harness_plugins.jsdgan import batch_jsd, batch_jsd_loss, jsd_surrogate

VOCAB, LENGTH = 3, 3
DRIVER = Path(__file__).with_name("fault_driver.py")
SETTINGS = ["pretrain_epochs=3", "eval_every=3", "batch_size=32", "adv_epochs=3",
            "adv_eval_every=1"]


# --- the mechanism: the exact JSD gradient ------------------------------------------------

@pytest.fixture
def generator() -> LSTMGenerator:
    torch.manual_seed(0)
    # Large initial weights: a clearly non-uniform sequence distribution.
    return LSTMGenerator(VOCAB, LENGTH, emb_dim=4, hidden_dim=4, init_std=0.8).double()


def every_sequence() -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(VOCAB), repeat=LENGTH)))


def naive_jsd(p_data: torch.Tensor, p_model: torch.Tensor) -> torch.Tensor:
    """JSD(p_data || p_model) over a whole (enumerated) space, straight from the
    definition, 0 log 0 = 0."""
    mixture = (p_data + p_model) / 2

    def kl(p: torch.Tensor) -> torch.Tensor:
        kept = p > 0
        return (p[kept] * (p[kept] / mixture[kept]).log()).sum()

    return (kl(p_data) + kl(p_model)) / 2


def gradient(generator: LSTMGenerator, value: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(value, list(generator.parameters()))
    return torch.cat([g.flatten() for g in grads])


def exact_jsd_gradient(generator: LSTMGenerator, p_data: torch.Tensor) -> torch.Tensor:
    """Autograd through the JSD over all VOCAB ** LENGTH sequences; ``p_data`` [27]."""
    p_model = generator.log_likelihood(every_sequence()).exp()
    assert p_model.sum().item() == pytest.approx(1.0)  # the enumeration is the whole space
    return gradient(generator, naive_jsd(p_data, p_model))


def test_the_surrogate_over_the_data_support_is_the_exact_jsd_gradient(generator):
    # A non-uniform data distribution on 5 of the 27 sequences: the surrogate reads only
    # those 5, the exact JSD all 27 (the other 22 contribute log(p / p) = 0).
    space = every_sequence()
    support = torch.tensor([0, 5, 11, 17, 26])
    mass = torch.tensor([0.4, 0.25, 0.15, 0.15, 0.05], dtype=torch.double)
    p_data = torch.zeros(len(space), dtype=torch.double).index_put_((support,), mass)

    surrogate = jsd_surrogate(generator.log_likelihood(space[support]), mass.log())
    torch.testing.assert_close(gradient(generator, surrogate),
                               exact_jsd_gradient(generator, p_data), rtol=1e-9, atol=1e-12)


def test_the_minibatch_loss_is_the_jsd_gradient_of_the_batch_scaled(generator):
    # p_d is the batch's empirical distribution (a repeated row carries twice the mass);
    # the loss divides the exact gradient by the batch's total generator probability.
    space = every_sequence()
    rows = torch.tensor([2, 7, 7, 13, 20, 24])
    batch = space[rows]
    p_data = torch.bincount(rows, minlength=len(space)).double() / len(rows)

    log_likelihoods = generator.log_likelihood(batch)
    scale = log_likelihoods.exp().sum().item()
    loss_gradient = gradient(generator, batch_jsd_loss(batch, log_likelihoods))
    exact = exact_jsd_gradient(generator, p_data)
    torch.testing.assert_close(loss_gradient * scale, exact, rtol=1e-9, atol=1e-12)
    # Near misses are not even parallel to it: the batch's plain likelihood gradient (MLE),
    # and the weights with p_d = 1/B per row, the repeated row's count ignored.
    mle = gradient(generator, -generator.log_likelihood(batch).sum())
    per_row = generator.log_likelihood(batch)
    weights = (per_row.exp() * F.logsigmoid(per_row + math.log(len(rows)))).detach()
    uncounted = gradient(generator, (weights * per_row).sum())
    for wrong in (mle, uncounted):
        assert F.cosine_similarity(wrong, exact, dim=0) < 1 - 1e-4


def test_batch_jsd_is_zero_for_an_even_spread_and_log2_at_most():
    assert batch_jsd(torch.full((8,), -40.0)) == pytest.approx(0.0, abs=1e-12)
    one_row = torch.tensor([0.0] + [-1e4] * 7)
    assert 0.0 < batch_jsd(one_row) < torch.log(torch.tensor(2.0)).item()


# --- end to end ---------------------------------------------------------------------------

@pytest.mark.slow
def test_jsdgan_runs_after_the_shared_mle_pretraining(cli, tiny_dataset):
    args = [arg for setting in SETTINGS for arg in ("--set", setting)]
    result = cli("-q", "run", "-m", "mle", "-m", "jsdgan", "-d", "tiny", "--set", "epochs=3",
                 *args)
    assert result.exit_code == 0, result.output
    results = Path(os.environ["HARNESS_RESULTS"])
    assert len(list(store.shared_dir(results, "tiny", 0).glob("mle-*.pt"))) == 1  # trained once
    directory = next(results.glob("*/tiny/jsdgan/seed-0"))
    curve = pd.read_csv(directory / "curve.csv")
    assert set(curve.phase) == {"mle", "jsd"}
    jsd = curve[curve.phase == "jsd"]
    assert list(jsd.epoch) == [4, 5, 6]  # continues after 3 pre-training epochs
    assert jsd.batch_jsd.between(0, 0.7).all() and jsd.nll_oracle.notna().all()
    metrics = json.loads((directory / "metrics.json").read_text())
    assert all(pd.notna(v) for v in metrics.values() if isinstance(v, float))


# --- resume -------------------------------------------------------------------------------

def harness_args(results: Path) -> list[str]:
    return ["-q", "run", "-m", "jsdgan", "-d", "tiny", "--results", str(results),
            "--run-id", "faults", *[arg for s in SETTINGS for arg in ("--set", s)]]


def drive(fault: str, results: Path) -> subprocess.CompletedProcess:
    """The CLI in a process of its own with ``fault`` injected (see fault_driver.py)."""
    env = {**os.environ, plugins.PLUGINS_ENV: "harness_tiny",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(DRIVER.parent),
                                                       os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(DRIVER), fault, *harness_args(results)],
                          capture_output=True, text=True, env=env, timeout=300)


def outcome(results: Path) -> dict:
    """What must not depend on a fault: the metrics, the learning curve, the samples."""
    directory = results / "faults" / "tiny" / "jsdgan" / "seed-0"
    metrics = json.loads((directory / "metrics.json").read_text())
    curve = pd.read_csv(directory / "curve.csv").astype(object).fillna("")  # NaN != NaN
    return {"metrics": {k: v for k, v in metrics.items()
                        if k not in ("train_seconds", "eval_seconds")},
            "curve": curve.to_dict("list"),
            "samples": (directory / "samples.txt").read_text()}


@pytest.mark.slow
def test_a_run_killed_in_the_jsd_phase_resumes_to_identical_metrics(cli, tiny_dataset,
                                                                     tmp_path):
    # The uninterrupted run in this process (one torch thread, as the driver's).
    assert cli(*harness_args(tmp_path / "clean")).exit_code == 0
    killed = drive("kill-after:jsd:2", tmp_path / "killed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = drive("none", tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(tmp_path / "killed") == outcome(tmp_path / "clean")
