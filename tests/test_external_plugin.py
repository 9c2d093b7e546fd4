"""A method plugin from outside the harness: examples/harness-cot (CoT, Lu et al. 2019),
installed offline like a third-party package and found through its entry point; and the
mechanism that makes it CoT, on hand-made tensors."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, kl_divergence

from harness import plugins

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "harness-cot"
DRIVER = Path(__file__).with_name("fault_driver.py")
TINY_COT = ["--set", "pretrain_epochs=2", "--set", "eval_every=1",
            "--set", "mediator_warmup_epochs=1", "--set", "cot_epochs=3",
            "--set", "cot_eval_every=1", "--set", "mediator_emb_dim=16",
            "--set", "mediator_hidden_dim=16"]


def load_example():
    """harness_cot imported from the example directory by path (not installed)."""
    spec = importlib.util.spec_from_file_location(
        "harness_cot", EXAMPLE / "harness_cot" / "__init__.py",
        submodule_search_locations=[str(EXAMPLE / "harness_cot")])
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("harness_cot", module)
    spec.loader.exec_module(module)
    return module


cot = load_example()


# --- the mechanism ------------------------------------------------------------------------

# Two sequences of three steps over a four-word vocabulary, written out by hand.
GENERATOR_LOGITS = torch.tensor([
    [[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4], [-2.0, 1.0, 1.0, 0.5]],
    [[0.0, 0.0, 0.0, 3.0], [1.5, -0.5, 0.0, 0.25], [0.7, 0.7, -0.3, -1.2]]])
MEDIATOR_LOGITS = torch.tensor([
    [[1.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, -1.0], [0.5, 0.5, 0.5, 0.5]],
    [[-1.0, 0.0, 1.0, 2.0], [1.0, 0.0, -1.0, 0.0], [0.0, 2.5, 0.0, -0.5]]])


def papers_objective(generator_logits: torch.Tensor, mediator_logits: torch.Tensor) -> list[float]:
    """The paper's generator objective per sequence, step by step and word by word in plain
    floats: sum_t sum_v G(v|s<t) (log M(v|s<t) - log G(v|s<t))."""
    totals = []
    for g_steps, m_steps in zip(generator_logits.tolist(), mediator_logits.tolist()):
        total = 0.0
        for g_row, m_row in zip(g_steps, m_steps):
            g_norm = math.log(sum(math.exp(x) for x in g_row))
            m_norm = math.log(sum(math.exp(x) for x in m_row))
            for g, m in zip(g_row, m_row):
                total += math.exp(g - g_norm) * ((m - m_norm) - (g - g_norm))
        totals.append(total)
    return totals


def test_the_generator_loss_is_the_papers_objective_negated():
    mediator_log_probs = F.log_softmax(MEDIATOR_LOGITS, dim=-1)
    loss = cot.cooperative_loss(GENERATOR_LOGITS, mediator_log_probs)
    expected = [-value for value in papers_objective(GENERATOR_LOGITS, MEDIATOR_LOGITS)]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)
    # The direction is pinned: KL(M || G) on the same tensors is another number.
    reverse = papers_objective(MEDIATOR_LOGITS, GENERATOR_LOGITS)
    for ours, reversed_kl in zip(loss.tolist(), reverse):
        assert ours != pytest.approx(-reversed_kl, rel=1e-3)


def test_its_gradient_is_that_of_the_exact_per_step_kl():
    logits = GENERATOR_LOGITS.clone().requires_grad_()
    cot.cooperative_loss(logits, F.log_softmax(MEDIATOR_LOGITS, dim=-1)).sum().backward()

    exact = GENERATOR_LOGITS.clone().requires_grad_()
    kl_divergence(Categorical(logits=exact), Categorical(logits=MEDIATOR_LOGITS)).sum().backward()
    torch.testing.assert_close(logits.grad, exact.grad)

    # And in closed form: d/dz_k sum_v G_v (log G_v - log M_v) = G_k (r_k - E_G[r]), with
    # r = log G - log M: every word of the vocabulary moves, not only sampled ones.
    g = F.softmax(GENERATOR_LOGITS, dim=-1)
    r = F.log_softmax(GENERATOR_LOGITS, dim=-1) - F.log_softmax(MEDIATOR_LOGITS, dim=-1)
    torch.testing.assert_close(logits.grad, g * (r - (g * r).sum(dim=-1, keepdim=True)))
    assert (logits.grad != 0).all()


def test_the_mediator_learns_half_real_half_generated_by_maximum_likelihood():
    torch.manual_seed(0)
    mediator = cot.Mediator(vocab_size=6, seq_len=4, emb_dim=4, hidden_dim=4, start_token=0,
                            dropout=0.5).eval()
    real = torch.tensor([[1, 2, 3, 4], [5, 5, 1, 0]])
    generated = torch.tensor([[0, 0, 0, 0], [3, 1, 4, 1]])
    nll = [-mediator.log_likelihood(rows).mean().item() / 4 for rows in (real, generated)]
    assert cot.balanced_nll(mediator, real, generated).item() == pytest.approx(sum(nll) / 2)
    with pytest.raises(ValueError, match="balanced"):
        cot.balanced_nll(mediator, real, generated[:1])


def test_the_paper_profile_trains_from_scratch_as_the_authors():
    config = cot.CotConfig(**cot.Cot.profiles["paper"])
    assert config.pretrain_epochs == 0 and config.mediator_warmup_epochs == 0


# --- installed from outside, found by its entry point, run end to end ---------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """examples/harness-cot pip-installed offline into a directory of its own (from a copy,
    so no build files land in the source tree); the environment a user's shell would have:
    that directory on PYTHONPATH, plugin autoload on, the tests' tiny data set loaded."""
    work = tmp_path_factory.mktemp("external")
    source = shutil.copytree(EXAMPLE, work / "harness-cot",
                             ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    target = work / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, timeout=300)
    env = {key: value for key, value in os.environ.items() if key != plugins.NO_AUTOLOAD_ENV}
    env.update({"PYTHONPATH": os.pathsep.join([str(target), str(DRIVER.parent)]),
                plugins.PLUGINS_ENV: "harness_tiny"})
    return {"env": env, "target": target, "cwd": work}


def harness(installed: dict, *args: str, fault: str = "none") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DRIVER), fault, *args], cwd=installed["cwd"],
                          env=installed["env"], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_harness_list_finds_the_installed_plugin(installed):
    listed = harness(installed, "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:2] == ["cot", "cot"] for line in listed.stdout.splitlines())


def outcome(results: Path) -> dict:
    """What must not depend on an interruption: metrics (timings aside), curve, samples."""
    directory = results / "cot-test" / "tiny" / "cot" / "seed-0"
    metrics = json.loads((directory / "metrics.json").read_text())
    return {"metrics": {k: v for k, v in metrics.items() if not k.endswith("_seconds")},
            "curve": pd.read_csv(directory / "curve.csv").astype(object).fillna("").to_dict("list"),
            "samples": (directory / "samples.txt").read_text()}


@pytest.mark.slow
def test_a_tiny_cot_run_finishes_and_resumes_to_the_same_result(installed, tmp_path):
    args = ["-q", "run", "-m", "cot", "-d", "tiny", "--run-id", "cot-test", "--sweep", "1.0",
            *TINY_COT]
    clean = harness(installed, *args, "--results", str(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    result = outcome(tmp_path / "clean")
    assert all(math.isfinite(v) for v in result["metrics"].values() if isinstance(v, float))
    curve = pd.DataFrame(result["curve"])
    assert list(curve.phase.unique()) == ["mle", "mediator", "cooperative"]
    assert list(curve[curve.phase == "cooperative"].epoch) == [3, 4, 5]

    interrupted = [*args, "--results", str(tmp_path / "resumed")]
    killed = harness(installed, *interrupted, fault="kill-after:cooperative:1")
    assert killed.returncode == -9, killed.stderr
    resumed = harness(installed, *interrupted)
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(tmp_path / "resumed") == result
