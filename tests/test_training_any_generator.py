"""The shared MLE training (``harness.training.mle_epoch``, ``train_by_mle``) takes any
``TeacherForced`` generator: a GRU that is not the LSTM trains in a phase, is judged by the
harness and resumes exactly."""
import json
import types

import pandas as pd
import pytest
import torch
from torch import nn

import harness
import harness_tiny
from harness.generator import TeacherForced, sample_from_logits
from harness.training import train_by_mle


class GruGenerator(TeacherForced):
    """embedding -> GRU -> linear: a generator the harness has never seen, through the
    teacher-forced contract alone (``teacher_forced_logits``, ``sample``)."""

    def __init__(self, vocab_size: int, seq_len: int, start_token: int, dim: int = 16):
        super().__init__()
        self.vocab_size, self.seq_len, self.start_token = vocab_size, seq_len, start_token
        self.embedding = nn.Embedding(vocab_size, dim)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.output = nn.Linear(dim, vocab_size)

    def teacher_forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.output(self.gru(self.embedding(self.shifted_inputs(tokens)))[0])

    @torch.no_grad()
    def sample(self, n, temperature=1.0, generator=None):
        token = torch.full((n, 1), self.start_token, dtype=torch.long, device=self.device)
        state, drawn = None, []
        for _ in range(self.seq_len):
            hidden, state = self.gru(self.embedding(token), state)
            token = sample_from_logits(self.output(hidden[:, -1]), temperature, generator)[0][:, None]
            drawn.append(token)
        return torch.cat(drawn, dim=1)


def train_a_gru(ctx):
    corpus = ctx.corpus
    with ctx.seeded("gru: initial weights"):
        generator = GruGenerator(corpus.vocab_size, corpus.seq_len, corpus.start_token)
    train_by_mle(ctx, generator, "gru", epochs=4, batch_size=32, lr=0.01, grad_clip=5.0,
                 shuffle=True, eval_every=2)
    return generator


@pytest.fixture
def gru_method(register_plugin):
    module = types.ModuleType("harness_gru")

    @harness.hookimpl
    def register_methods(register):
        register(harness_tiny.ToyMethod("gru", train_a_gru))

    module.register_methods = register_methods
    register_plugin(module)


@pytest.mark.slow
def test_a_gru_trains_by_the_shared_mle_and_resumes_exactly(cli, tiny_dataset, gru_method,
                                                            tmp_path, monkeypatch):
    from harness import store
    from harness.api import Interrupted

    def run(run_id: str):
        return cli("-q", "run", "-m", "gru", "-d", "tiny", "--results", str(tmp_path),
                   "--run-id", run_id, "--sweep", "1")

    assert run("straight").exit_code == 0
    straight = tmp_path / "straight" / "tiny" / "gru" / "seed-0"
    curve = pd.read_csv(straight / "curve.csv")
    assert list(curve.epoch) == [0, 2, 4] and set(curve.phase) == {"gru"}
    assert curve.nll_oracle.iloc[-1] < curve.nll_oracle.iloc[0] - 0.1  # it learned
    # Stopped after its second epoch's checkpoint, then resumed: the very same run.
    write_torch, saved = store.write_torch, []

    def stop_after_two(path, obj):
        write_torch(path, obj)
        if path.name == store.CHECKPOINT:
            saved.append(path)
            if len(saved) == 2:
                raise Interrupted("stopped after two epochs")

    with monkeypatch.context() as patch:
        patch.setattr(store, "write_torch", stop_after_two)
        assert run("stopped").exit_code == 130
    assert run("stopped").exit_code == 0
    stopped = tmp_path / "stopped" / "tiny" / "gru" / "seed-0"
    assert (stopped / "curve.csv").read_text() == (straight / "curve.csv").read_text()
    metrics = [{k: v for k, v in json.loads((d / "metrics.json").read_text()).items()
                if not k.endswith("_seconds")} for d in (straight, stopped)]
    assert metrics[0] == metrics[1]
