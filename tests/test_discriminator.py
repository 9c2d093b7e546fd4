from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from harness.config import resolve
from harness.plugins import registry
from harness_plugins import adversarial as adv
from harness_plugins import seqgan as sg
from harness_plugins.adversarial import (PAPER, SMALL, Discriminator, DiscriminatorRounds,
                                         Highway, train_discriminator)
from harness.oracle import random_oracle


@pytest.mark.slow
def test_separates_oracle_samples_from_uniform_noise():
    torch.manual_seed(0)
    oracle = random_oracle(vocab_size=40, seq_len=8, emb_dim=8, hidden_dim=8, seed=11)
    rng = torch.Generator().manual_seed(0)
    real = oracle.sample(1200, generator=rng)
    fake = torch.randint(0, 40, (1200, 8), generator=rng)
    disc = Discriminator(40, 8, emb_dim=16, filter_sizes=(1, 2, 3, 4, 8, 10),
                         num_filters=(16, 16, 16, 16, 16, 16), dropout=0.25)
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-3)
    untrained = torch.nn.functional.cross_entropy(
        disc(torch.cat([real[:1000], fake[:1000]])).detach(),
        torch.cat([torch.ones(1000, dtype=torch.long), torch.zeros(1000, dtype=torch.long)]))
    loss = train_discriminator(disc, optimizer, real[:1000], fake[:1000], epochs=3,
                               batch_size=64, l2=0.2, rng=rng)
    assert 0 < loss < untrained.item()  # the mean loss over training fell below the start
    p_real, p_fake = disc.prob_real(real[1000:], batch=64), disc.prob_real(fake[1000:], batch=64)
    accuracy = ((p_real > 0.5).float().mean() + (p_fake <= 0.5).float().mean()) / 2
    assert accuracy > 0.8
    assert p_real.mean() > p_fake.mean() + 0.3
    assert disc.training  # prob_real restores the training mode


def test_windows_wider_than_the_sequence_are_dropped():
    disc = Discriminator(30, 8, **PAPER)
    assert disc.filter_sizes == (1, 2, 3, 4, 5, 6, 7, 8)
    assert disc.num_filters == (100, 200, 200, 200, 200, 100, 100, 100)
    assert disc.highway.gate.in_features == sum(disc.num_filters) == 1200
    with pytest.raises(ValueError):
        Discriminator(30, 4, emb_dim=8, filter_sizes=(5, 6), num_filters=(2, 2))


@pytest.mark.parametrize("size", [PAPER, SMALL])
def test_output_shapes(size):
    disc = Discriminator(50, 20, **size)
    tokens = torch.randint(0, 50, (5, 20))
    assert disc(tokens).shape == (5, 2)
    probs = disc.prob_real(tokens, batch=2)
    assert probs.shape == (5,) and ((probs >= 0) & (probs <= 1)).all()
    assert not probs.requires_grad
    # eval mode: scoring in chunks equals scoring at once
    torch.testing.assert_close(probs, disc.prob_real(tokens), atol=1e-6, rtol=0)


def test_l2_penalty_is_the_authors_output_layer_term():
    disc = Discriminator(20, 8, **SMALL)
    out = disc.output
    expected = 0.5 * (out.weight.pow(2).sum() + out.bias.pow(2).sum())
    torch.testing.assert_close(disc.l2_penalty(), expected)



def test_lookup_scoring_of_many_rows_equals_the_convolutions():
    # More rows than words: prob_real looks the convolutions up in per-word tables.
    torch.manual_seed(0)
    disc = Discriminator(20, 10, **SMALL)
    tokens = torch.randint(0, 20, (300, 10))
    looked_up = disc.prob_real(tokens, batch=128)
    disc.eval()
    with torch.no_grad():
        convolved = torch.softmax(disc(tokens), dim=1)[:, 1]
    torch.testing.assert_close(looked_up, convolved, atol=1e-6, rtol=0)


def rollout_like_rows(vocab: int, seq_len: int, n_seq: int, n_rollouts: int, seed: int = 0):
    """Sequences [B, T] and completions of their prefixes [(T-1) * N * B, T], rows ordered
    (prefix length, rollout, sequence) as Rollout._complete orders them."""
    rng = torch.Generator().manual_seed(seed)
    sequences = torch.randint(0, vocab, (n_seq, seq_len), generator=rng)
    completed = sequences.expand(seq_len - 1, n_rollouts, n_seq, seq_len).clone()
    for t in range(1, seq_len):
        completed[t - 1, :, :, t:] = torch.randint(0, vocab, (n_rollouts, n_seq, seq_len - t),
                                                   generator=rng)
    return sequences, completed.reshape(-1, seq_len)


@pytest.mark.parametrize("vocab, seq_len, n_seq, n_rollouts, batch", [
    (40, 12, 6, 5, 64),     # 336 rows > 40 words: looked up; windows up to 10 of 12
    (300, 20, 8, 4, 128),   # windows 15 and 20 wider than most prefixes
    (2000, 12, 6, 5, 64),   # 336 rows <= 2000 words: convolved, as prob_real does
])
def test_rollout_scoring_equals_prob_real_bit_for_bit(vocab, seq_len, n_seq, n_rollouts, batch):
    torch.manual_seed(0)
    disc = Discriminator(vocab, seq_len, emb_dim=16, filter_sizes=(1, 2, 3, 5, 7, 10, 15, 20),
                         num_filters=(8, 12, 12, 8, 8, 8, 12, 12))
    sequences, completed = rollout_like_rows(vocab, seq_len, n_seq, n_rollouts)
    expected = disc.prob_real(torch.cat([completed, sequences]), batch=batch)
    assert torch.equal(disc.prob_real_of_rollout(completed, sequences, batch=batch), expected)
    assert disc.training  # the mode is restored


# --- the highway without biases: SeqGAN's first code (and RelGAN's) ----------------------

def authors_highway_without_biases(x: np.ndarray, output_matrix: np.ndarray,
                                   transform_matrix: np.ndarray) -> np.ndarray:
    """LantaoYu/SeqGAN @4152436 MLE_SeqGAN/text_classifier.py 7-24, as line 84 calls it
    (layer_size 1, bias 0), written out in numpy: rnn_cell._linear(args, size, 0) is
    ``args @ Matrix`` with Matrix [in, out] and, its third argument (bias) 0, no bias term."""
    output = np.maximum(x @ output_matrix, 0.0)                               # line 16
    transform_gate = 1.0 / (1.0 + np.exp(-(x @ transform_matrix + 0)))        # line 18-19
    carry_gate = 1.0 - transform_gate                                         # line 20
    return transform_gate * output + carry_gate * x                           # line 22


def test_the_highway_without_biases_is_the_authors_first_code():
    torch.manual_seed(0)
    highway = Highway(12, bias=False)
    assert [name for name, _ in highway.named_parameters()] == ["transform.weight", "gate.weight"]
    assert highway.transform.bias is None and highway.gate.bias is None
    x = np.random.default_rng(0).standard_normal((9, 12)).astype(np.float32)
    expected = authors_highway_without_biases(
        x.astype(np.float64), highway.transform.weight.detach().double().numpy().T,
        highway.gate.weight.detach().double().numpy().T)
    got = highway(torch.from_numpy(x)).detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # With biases (the default) the same formula plus b and b_t: zero biases give the above.
    with_bias = Highway(12)
    assert with_bias.transform.bias is not None and with_bias.gate.bias is not None
    with torch.no_grad():
        with_bias.transform.weight.copy_(highway.transform.weight)
        with_bias.gate.weight.copy_(highway.gate.weight)
        with_bias.transform.bias.zero_()
        with_bias.gate.bias.zero_()
    np.testing.assert_allclose(with_bias(torch.from_numpy(x)).detach().double().numpy(),
                               expected, rtol=0, atol=1e-6)


def test_the_discriminator_drops_only_the_highway_biases():
    torch.manual_seed(0)
    default = Discriminator(30, 8, **SMALL).state_dict()
    torch.manual_seed(0)
    unbiased = Discriminator(30, 8, **SMALL, highway_bias=False)
    assert set(default) - set(unbiased.state_dict()) == {"highway.transform.bias",
                                                          "highway.gate.bias"}
    tokens = torch.randint(0, 30, (4, 8))
    assert unbiased(tokens).shape == (4, 2)


def fake_context(config, vocab_size: int = 30, seq_len: int = 8) -> SimpleNamespace:
    corpus = SimpleNamespace(vocab_size=vocab_size, seq_len=seq_len,
                             train=torch.zeros(4, seq_len, dtype=torch.long))
    return SimpleNamespace(config=config, corpus=corpus, device=torch.device("cpu"),
                           rng=lambda *args: torch.Generator())


def test_seqgans_authors_profile_has_a_highway_without_biases_and_maligan_keeps_them():
    methods = registry().methods
    seqgan, maligan = methods["seqgan"], methods["maligan"]
    authors = asdict(resolve(seqgan, "authors", {}))
    assert {key: authors[key] for key in sg.AUTHORS} == sg.AUTHORS
    assert authors["highway_bias"] is False
    for profile in ("default", "paper"):  # the later code's linear has biases, as before
        assert resolve(seqgan, profile, {}).highway_bias is True
    cfg = resolve(seqgan, "authors", {"disc_size": "small"})
    rounds = DiscriminatorRounds(fake_context(cfg), cfg, highway_bias=cfg.highway_bias)
    assert rounds.disc.highway.transform.bias is None and rounds.disc.highway.gate.bias is None
    for profile in ("default", "authors"):  # MaliGAN's discriminator: unchanged
        cfg = resolve(maligan, profile, {"disc_size": "small"})
        rounds = DiscriminatorRounds(fake_context(cfg), cfg)
        assert rounds.disc.highway.transform.bias is not None


def test_seqgan_builds_its_discriminator_with_the_configs_highway(monkeypatch):
    class Built(Exception):
        pass

    seen = []

    def rounds(ctx, cfg, highway_bias=True, shuffle="epoch"):
        seen.append((highway_bias, shuffle))
        raise Built

    monkeypatch.setattr(adv, "DiscriminatorRounds", rounds)
    # The highway as each code had it; the rows reshuffled every epoch (@4152436's
    # batch_iter) or once a round (@e2b52fb's Dis_dataloader, the paper profile).
    for profile, expected in (("default", (True, "epoch")), ("paper", (True, "round")),
                              ("authors", (False, "epoch"))):
        with pytest.raises(Built):
            sg.SeqGan().train(fake_context(resolve(registry().methods["seqgan"], profile, {})))
        assert seen[-1] == expected
