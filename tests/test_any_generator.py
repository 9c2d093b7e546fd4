"""A generator the harness has never seen, through the decoding contract alone
(``harness.generator.Decoder``): a GRU trains by the shared MLE, samples by stepping, rolls
out as the authors' loop does, and takes SeqGAN's policy-gradient loop; each run resumes exactly."""
import json
import types

import pandas as pd
import pytest
import torch
from torch import nn

import harness
import harness_tiny
from harness import store
from harness.api import Interrupted
from harness.generator import Decoder
from harness.training import train_by_mle
from harness_plugins import adversarial as adv


class GruDecoder(Decoder):
    """embedding -> GRU -> linear; its state is the GRU's hidden state [1, n, dim]."""

    def __init__(self, vocab_size: int, seq_len: int, start_token: int, dim: int = 16):
        super().__init__()
        self.vocab_size, self.seq_len, self.start_token = vocab_size, seq_len, start_token
        self.embedding = nn.Embedding(vocab_size, dim)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.output = nn.Linear(dim, vocab_size)

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.output(self.gru(self.embedding(self.shifted_inputs(tokens)))[0])

    def start_state(self, n):
        return torch.zeros(1, n, self.gru.hidden_size, device=self.device)

    def step(self, tokens, state):
        hidden, state = self.gru(self.embedding(tokens[:, None]), state)
        return self.output(hidden[:, 0]), state

    def select_state(self, state, rows):
        return state[:, rows]


def tiny_gru(seed: int = 0) -> GruDecoder:
    torch.manual_seed(seed)
    return GruDecoder(9, 5, start_token=0, dim=6).eval()


def test_stepping_gives_the_teacher_forced_logits_and_sampling_draws_from_them():
    gru = tiny_gru()
    tokens = torch.randint(9, (4, 5), generator=torch.Generator().manual_seed(1))
    state, stepped = gru.start_state(4), []
    for token in gru.shifted_inputs(tokens).T:
        logits, state = gru.step(token, state)
        stepped.append(logits)
    torch.testing.assert_close(torch.stack(stepped, dim=1), gru.teacher_forced_logits(tokens))
    # Decoder.sample: every position drawn from the step's softmax (many rows, one position's
    # frequencies against the teacher-forced probabilities of the first token).
    samples = gru.sample(20_000, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (20_000, 5) and samples.min() >= 0 and samples.max() < 9
    first = torch.softmax(gru.teacher_forced_logits(samples[:1])[0, 0], dim=0)
    counts = torch.bincount(samples[:, 0], minlength=9) / 20_000
    assert (counts - first).abs().max() < 0.02  # about 7 standard errors of a share


def assert_greedy_completions(policy: Decoder, tokens: torch.Tensor, n_rollouts: int,
                              completed: torch.Tensor) -> None:
    """The rollout's completions [(T-1) * N * B, T], ordered (t, n, b), are what the authors'
    get_reward loop gives greedily: row (t, n, b) holds y_1..y_t of sequence b, and every
    later token is the argmax of the policy given all before it. The argmax is read from
    one teacher-forced pass, another float path than the steps the rollout took, so a token
    counts as the argmax where its logit is the largest up to rounding (1e-5)."""
    n_seq, length = tokens.shape
    rows = completed.view(length - 1, n_rollouts, n_seq, length)
    with torch.no_grad():
        logits = policy.teacher_forced_logits(completed).view(length - 1, n_rollouts, n_seq,
                                                              length, -1)
    chosen = logits.gather(-1, rows.unsqueeze(-1)).squeeze(-1)
    for t in range(1, length):
        assert torch.equal(rows[t - 1, :, :, :t], tokens[None, :, :t].expand(n_rollouts, -1, -1))
        best = logits[t - 1, :, :, t:].amax(dim=-1)
        assert (chosen[t - 1, :, :, t:] >= best - 1e-5).all(), t


def test_the_rollout_of_any_decoder_completes_as_the_authors_loop():
    gru = tiny_gru()
    tokens = gru.sample(3, generator=torch.Generator().manual_seed(3))
    rollout = adv.Rollout(gru)
    seen = []

    def score(rows):  # the share of even tokens: a reward every completion earns its own
        seen.append(rows.clone())
        return (rows % 2 == 0).float().mean(dim=1)

    q = rollout.rewards(tokens, 2, score, greedy=True)
    completed = torch.cat(seen)[:-len(tokens)]
    assert_greedy_completions(gru, tokens, 2, completed)
    assert q.shape == (3, 5) and torch.equal(q[:, -1], score(tokens))
    # Sampled: the prefixes kept, every drawn token in the vocabulary, one row per (t, n, b).
    seen.clear()
    rollout.rewards(tokens, 2, score, generator=torch.Generator().manual_seed(4))
    completed = torch.cat(seen)[:-len(tokens)].view(4, 2, 3, 5)
    for t in range(1, 5):
        assert torch.equal(completed[t - 1, :, :, :t], tokens[None, :, :t].expand(2, -1, -1))
    assert completed.min() >= 0 and completed.max() < 9


def train_a_gru(ctx):
    corpus = ctx.corpus
    with ctx.seeded("gru: initial weights"):
        generator = GruDecoder(corpus.vocab_size, corpus.seq_len, corpus.start_token)
    if ctx.resume_phase != adv.PHASE:
        train_by_mle(ctx, generator, "gru", epochs=4, batch_size=32, lr=0.01, grad_clip=5.0,
                     shuffle=True, eval_every=2)
    if not getattr(ctx.config, "adversarial", False):
        return generator
    # SeqGAN's loop, rewarded by a fixed score: the share of tokens of the upper half.
    upper = ctx.corpus.vocab_size // 2
    settings = adv.PolicyGradientSettings(batches=3, g_steps=1, batch_size=16, n_rollouts=2,
                                          lr=0.01, grad_clip=5.0, rollout_update_rate=0.0,
                                          eval_every=1)
    return adv.train_policy_gradient(ctx, generator, lambda rows: (rows >= upper).float().mean(1),
                                     settings, epoch_offset=4)


@pytest.fixture
def gru_methods(register_plugin):
    module = types.ModuleType("harness_gru")

    @harness.hookimpl
    def register_methods(register):
        register(harness_tiny.ToyMethod("gru", train_a_gru))
        register(harness_tiny.ToyMethod("gru-pg", train_a_gru,
                                        fields=[("adversarial", bool, True)]))

    module.register_methods = register_methods
    register_plugin(module)


def stop_after(patch, count: int) -> None:
    write_torch, saved = store.write_torch, []

    def write(path, obj):
        write_torch(path, obj)
        if path.name == store.CHECKPOINT:
            saved.append(path)
            if len(saved) == count:
                raise Interrupted(f"stopped after checkpoint {count}")

    patch.setattr(store, "write_torch", write)


@pytest.mark.slow
@pytest.mark.parametrize("method, stops", [("gru", {2: "gru"}),
                                           ("gru-pg", {2: "gru", 3: adv.PHASE})])
def test_a_gru_trains_and_resumes_exactly(cli, tiny_dataset, gru_methods, tmp_path,
                                          monkeypatch, method, stops):
    def run(run_id: str):
        return cli("-q", "run", "-m", method, "-d", "tiny", "--results", str(tmp_path),
                   "--run-id", run_id, "--sweep", "1")

    assert run("straight").exit_code == 0
    straight = tmp_path / "straight" / "tiny" / method / "seed-0"
    curve = pd.read_csv(straight / "curve.csv")
    mle = curve[curve.phase == "gru"]
    assert list(mle.epoch) == [0, 2, 4]
    assert mle.nll_oracle.iloc[-1] < mle.nll_oracle.iloc[0] - 0.1  # it learned
    if method == "gru-pg":
        assert list(curve[curve.phase == adv.PHASE].epoch) == [5, 6, 7]
    stopped = tmp_path / "stopped" / "tiny" / method / "seed-0"
    for count, phase in stops.items():  # stopped in each phase (checkpoints of this process)
        with monkeypatch.context() as patch:
            stop_after(patch, count)
            assert run("stopped").exit_code == 130
        saved = torch.load(stopped / store.CHECKPOINT, weights_only=True)
        assert saved["state"]["phase"] == phase
    assert run("stopped").exit_code == 0
    assert (stopped / "curve.csv").read_text() == (straight / "curve.csv").read_text()
    metrics = [{k: v for k, v in json.loads((d / "metrics.json").read_text()).items()
                if not k.endswith("_seconds")} for d in (straight, stopped)]
    assert metrics[0] == metrics[1]
