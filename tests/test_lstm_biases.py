"""``LSTMGenerator(lstm_biases=1)``: the authors' LSTM, one bias per gate.

The SeqGAN authors' generator (LantaoYu/SeqGAN @4152436, MLE_SeqGAN/model.py
``create_recurrent_unit``, lines 142-200; the same in pg_bleu/ and schedule_sampling/) has
for each gate W (emb x hidden), U (hidden x hidden) and ONE bias b, every one drawn by
``init_matrix``, ``tf.random_normal(shape, stddev=0.1)`` (lines 136-137); its output layer
(``create_output_unit``, lines 202-214) is logits = h W_o + b_o. ``nn.LSTM`` has two biases
per gate, bias_ih and bias_hh, which only ever appear as their sum.
"""
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import store
from harness.api import HarnessError
from harness.config import resolve
from harness.generator import FORMAT, LSTMGenerator, load_generator, save_generator
from harness.plugins import registry
from harness.training import mle_epoch


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def authors_lstm(x_steps, W, U, b, W_o, b_o):
    """The authors' recurrence written out (model.py 165-198, 207-212), h0 = c0 = 0:
    i = sigmoid(x Wi + h Ui + bi), f and o alike, c~ = tanh(x Wc + h Uc + bc),
    c = f * c_prev + i * c~, h = o * tanh(c), logits = h Wo + bo.
    ``x_steps`` [steps, n, emb]; W, U, b: dicts over the gates "i", "f", "o", "c"."""
    n, hidden = x_steps.shape[1], b["i"].shape[0]
    h, c = np.zeros((n, hidden)), np.zeros((n, hidden))
    hs, logits = [], []
    for x in x_steps:
        i = sigmoid(x @ W["i"] + h @ U["i"] + b["i"])
        f = sigmoid(x @ W["f"] + h @ U["f"] + b["f"])
        o = sigmoid(x @ W["o"] + h @ U["o"] + b["o"])
        c_ = np.tanh(x @ W["c"] + h @ U["c"] + b["c"])
        c = f * c + i * c_
        h = o * np.tanh(c)
        hs.append(h)
        logits.append(h @ W_o + b_o)
    return np.stack(hs, 1), np.stack(logits, 1)  # [n, steps, ...]


def authors_weights(generator: LSTMGenerator, bias: torch.Tensor):
    """Our weights in the authors' form: ``nn.LSTM`` stacks its gates as i, f, g (the cell
    candidate, the authors' c~), o; it computes x W^T, the authors x W."""
    lstm = generator.lstm
    gates = ("i", "f", "c", "o")  # nn.LSTM's order (g is the candidate)

    def split(t):
        return dict(zip(gates, t.detach().double().numpy().reshape(4, -1, *t.shape[1:])))

    W = {k: v.T for k, v in split(lstm.weight_ih_l0).items()}
    U = {k: v.T for k, v in split(lstm.weight_hh_l0).items()}
    b = split(bias)
    out = generator.output
    return W, U, b, out.weight.detach().double().numpy().T, out.bias.detach().double().numpy()


def test_nn_lstm_stacks_its_gates_input_forget_cell_output():
    # A gate made saturated on its own shows which chunk is which: with the forget gate's
    # chunk (the second) at -inf, c_t forgets c_{t-1}; with the output gate's (the fourth)
    # at -inf, h is zero.
    lstm = torch.nn.LSTM(1, 1).double()
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        x = torch.ones(2, 1, 1, dtype=torch.float64)
        lstm.bias_ih_l0[:] = torch.tensor([50.0, 0.0, 50.0, 50.0])  # i = 1, g = tanh(50), o = 1
        _, (_, c_kept) = lstm(x)  # f = 1/2: c2 = 1/2 * 1 + 1 = 1.5
        lstm.bias_ih_l0[1] = -50.0
        _, (_, c_forgot) = lstm(x)
        lstm.bias_ih_l0[3] = -50.0
        h_off, _ = lstm(x)
    assert c_kept.item() == pytest.approx(1.5) and c_forgot.item() == pytest.approx(1.0)
    assert h_off.abs().max().item() < 1e-20


@pytest.mark.parametrize("emb_hidden", [8, 32])
def test_one_bias_generator_is_the_authors_lstm_cell(emb_hidden):
    # emb_dim == hidden_dim, as the authors' sizes (32, 32): their Ui is built
    # [emb_dim, hidden_dim] (model.py 145), which is only well formed when the two are equal.
    torch.manual_seed(3)
    generator = LSTMGenerator(vocab_size=23, seq_len=9, emb_dim=emb_hidden,
                              hidden_dim=emb_hidden, lstm_biases=1).double()
    tokens = torch.randint(0, 23, (5, 9), generator=torch.Generator().manual_seed(4))
    inputs = generator.shifted_inputs(tokens)
    x = generator.embedding(inputs).detach().double().numpy().transpose(1, 0, 2)
    hidden, _ = generator.lstm(generator.embedding(inputs))
    logits = generator.teacher_forced_logits(tokens)
    theirs_h, theirs_logits = authors_lstm(x, *authors_weights(generator,
                                                                generator.lstm.bias_ih_l0))
    np.testing.assert_allclose(hidden.detach().numpy(), theirs_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(logits.detach().numpy(), theirs_logits, rtol=0, atol=1e-12)

    # Two biases: the authors' cell with b = bias_ih + bias_hh, not with bias_ih alone.
    torch.manual_seed(3)
    two = LSTMGenerator(vocab_size=23, seq_len=9, emb_dim=emb_hidden, hidden_dim=emb_hidden,
                        lstm_biases=2).double()
    logits2 = two.teacher_forced_logits(tokens).detach().numpy()
    summed = authors_lstm(x, *authors_weights(two, two.lstm.bias_ih_l0 + two.lstm.bias_hh_l0))
    alone = authors_lstm(x, *authors_weights(two, two.lstm.bias_ih_l0))
    np.testing.assert_allclose(logits2, summed[1], rtol=0, atol=1e-12)
    assert np.abs(logits2 - alone[1]).max() > 1e-3


def test_one_bias_draws_every_other_weight_as_two_biases_and_zeroes_bias_hh():
    torch.manual_seed(11)
    two = LSTMGenerator(vocab_size=30, seq_len=5, emb_dim=8, hidden_dim=8)
    torch.manual_seed(11)
    one = LSTMGenerator(vocab_size=30, seq_len=5, emb_dim=8, hidden_dim=8, lstm_biases=1)
    for (name, theirs), (_, mine) in zip(two.named_parameters(), one.named_parameters()):
        if name == "lstm.bias_hh_l0":
            assert torch.equal(mine, torch.zeros_like(mine)) and not mine.requires_grad
        else:
            assert torch.equal(mine, theirs) and mine.requires_grad, name
    # And the random state after it is the same: whatever follows draws as it did.
    after = []
    for biases in (1, 2):
        torch.manual_seed(11)
        LSTMGenerator(vocab_size=30, seq_len=5, emb_dim=8, hidden_dim=8, lstm_biases=biases)
        after.append(torch.rand(3))
    assert torch.equal(*after)
    assert [n for n, p in one.named_parameters() if not p.requires_grad] == ["lstm.bias_hh_l0"]


def test_the_gate_bias_has_the_authors_variance_with_one_bias_twice_it_with_two():
    # The effective gate bias is bias_ih + bias_hh: N(0, 0.1) with one, N(0, 0.02) with two.
    # 4 * 1024 values: the sample standard deviation's own error is about 0.1 / 90 = 0.0011.
    stds = {}
    for biases in (1, 2):
        torch.manual_seed(5)
        lstm = LSTMGenerator(vocab_size=3, seq_len=2, emb_dim=2, hidden_dim=1024,
                             lstm_biases=biases).lstm
        stds[biases] = (lstm.bias_ih_l0 + lstm.bias_hh_l0).std().item()
    assert stds[1] == pytest.approx(0.1, abs=0.006)
    assert stds[2] == pytest.approx(0.1 * 2 ** 0.5, abs=0.008)


def test_training_moves_bias_ih_and_leaves_bias_hh_zero():
    torch.manual_seed(7)
    generator = LSTMGenerator(vocab_size=15, seq_len=6, emb_dim=8, hidden_dim=8, lstm_biases=1)
    before = {n: p.detach().clone() for n, p in generator.named_parameters()}
    data = torch.randint(0, 15, (48, 6), generator=torch.Generator().manual_seed(8))
    optimizer = torch.optim.Adam(generator.parameters(), lr=0.01)
    mle_epoch(generator, data, optimizer, batch_size=16, grad_clip=5.0, rng=None)
    bias_hh = generator.lstm.bias_hh_l0
    assert torch.equal(bias_hh, torch.zeros_like(bias_hh)) and bias_hh.grad is None
    assert bias_hh not in optimizer.state  # Adam skips a parameter without a gradient
    for name, p in generator.named_parameters():
        if name != "lstm.bias_hh_l0":
            assert not torch.equal(p, before[name]), f"{name} did not move"


def test_the_rollout_of_a_one_bias_generator_keeps_bias_hh_zero():
    from harness_plugins.adversarial import Rollout

    torch.manual_seed(9)
    generator = LSTMGenerator(vocab_size=12, seq_len=5, emb_dim=4, hidden_dim=4, lstm_biases=1)
    rollout = Rollout(generator, update_rate=0.8)
    with torch.no_grad():
        generator.lstm.bias_ih_l0.add_(1.0)
    rollout.update(generator)
    assert not rollout.policy.lstm.bias_hh_l0.any()
    rollout.load_state_dict(rollout.state_dict())


def test_saved_generator_rebuilds_with_the_bias_frozen(tmp_path):
    torch.manual_seed(2)
    generator = LSTMGenerator(vocab_size=10, seq_len=4, emb_dim=4, hidden_dim=4, lstm_biases=1)
    assert generator.constructor_args["lstm_biases"] == 1
    save_generator(tmp_path / "g.pt", generator)
    loaded = load_generator(tmp_path / "g.pt")
    assert loaded.lstm_biases == 1 and loaded.constructor_args == generator.constructor_args
    assert not loaded.lstm.bias_hh_l0.requires_grad and not loaded.lstm.bias_hh_l0.any()
    tokens = torch.randint(0, 10, (3, 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.log_likelihood(tokens), generator.eval().log_likelihood(tokens))


def test_a_generator_saved_before_the_setting_loads_with_two_biases(tmp_path):
    torch.manual_seed(2)
    generator = LSTMGenerator(vocab_size=10, seq_len=4, emb_dim=4, hidden_dim=4)
    assert generator.constructor_args["lstm_biases"] == 2
    old_args = {k: v for k, v in generator.constructor_args.items() if k != "lstm_biases"}
    store.write_torch(tmp_path / "g.pt", {"format": FORMAT,
                                          "class": "harness.generator:LSTMGenerator",
                                          "args": old_args, "state_dict": generator.state_dict()})
    loaded = load_generator(tmp_path / "g.pt")
    assert loaded.lstm_biases == 2 and loaded.lstm.bias_hh_l0.requires_grad
    assert torch.equal(loaded.lstm.bias_hh_l0, generator.lstm.bias_hh_l0)


def test_two_bias_weights_do_not_load_into_a_one_bias_generator(tmp_path):
    two = LSTMGenerator(vocab_size=10, seq_len=4, emb_dim=4, hidden_dim=4)
    with pytest.raises(HarnessError, match="lstm_biases=1"):
        LSTMGenerator(10, 4, 4, 4, lstm_biases=1).load_state_dict(two.state_dict())
    store.write_torch(tmp_path / "g.pt", {"format": FORMAT,
                                          "class": "harness.generator:LSTMGenerator",
                                          "args": {**two.constructor_args, "lstm_biases": 1},
                                          "state_dict": two.state_dict()})
    with pytest.raises(HarnessError, match="bias_hh"):
        load_generator(tmp_path / "g.pt")
    for wrong in (0, 3, True):
        with pytest.raises(ValueError, match="lstm_biases"):
            LSTMGenerator(10, 4, lstm_biases=wrong)
    # The meta-device shapes load_generator checks are those of either form.
    assert LSTMGenerator.parameter_count(10, 4, 4) == \
        sum(p.numel() for p in LSTMGenerator(10, 4, 4, 4, lstm_biases=1).state_dict().values())


# --- the settings -------------------------------------------------------------------------

AUTHORS_ONE_BIAS = ("mle", "seqgan", "pg-bleu", "ss", "random")
SHARED_LSTM = (*AUTHORS_ONE_BIAS, "maligan", "jsdgan")


@pytest.mark.parametrize("method", SHARED_LSTM)
def test_the_authors_profiles_have_one_lstm_bias_and_the_others_two(method):
    found = registry().methods[method]
    assert resolve(found, "default", {}).lstm_biases == 2
    assert resolve(found, "paper", {}).lstm_biases == 2
    expected = 1 if method in AUTHORS_ONE_BIAS else 2
    assert resolve(found, "authors", {}).lstm_biases == expected
    assert resolve(found, "default", {"lstm_biases": "1"}).lstm_biases == 1
    with pytest.raises(HarnessError, match="lstm_biases must be one of 1, 2"):
        resolve(found, "default", {"lstm_biases": "3"})


@pytest.mark.parametrize("profile", ["default", "paper", "authors"])
@pytest.mark.parametrize("method", ["seqgan", "pg-bleu", "maligan", "jsdgan"])
def test_the_mle_run_a_method_starts_from_has_its_lstm_biases(method, profile):
    from harness_plugins.adversarial import mle_settings
    from harness_plugins.mle import MleConfig

    cfg = resolve(registry().methods[method], profile, {})
    settings = MleConfig(**mle_settings(cfg))
    assert settings.lstm_biases == cfg.lstm_biases
    if method == "seqgan":  # the mle run's settings of that profile: one snapshot, reused
        mle = resolve(registry().methods["mle"], profile, {})
        assert {**asdict(settings), "epochs": None} == {**asdict(mle), "epochs": None}


@pytest.mark.slow
def test_a_one_bias_mle_run_saves_a_one_bias_generator(cli, tiny_dataset):
    result = cli("-q", "run", "-m", "mle", "-m", "seqgan", "-d", "tiny", "--set", "epochs=2",
                 "--set", "pretrain_epochs=2", "--set", "eval_every=1", "--set", "adv_batches=2",
                 "--set", "adv_eval_every=1", "--set", "n_rollouts=2", "--set",
                 "disc_negatives=128", "--set", "disc_pretrain_rounds=1",
                 "--set", "lstm_biases=1")
    assert result.exit_code == 0, result.output
    # One MLE training (kept at every curve point), trained by the mle run, reused by seqgan.
    snapshots = store.shared_dir(None, "tiny", 0).glob("mle-*.pt")
    assert len({path.name.partition("-epoch-")[0] for path in snapshots}) == 1
    for method in ("mle", "seqgan"):
        run = next(Path(os.environ["HARNESS_RESULTS"]).glob(f"*/tiny/{method}/seed-0"))
        generator = load_generator(run / "generator.pt")
        assert generator.lstm_biases == 1 and not generator.lstm.bias_hh_l0.any()
        assert json.loads((run / "config.json").read_text())["config"]["lstm_biases"] == 1
