import itertools

import pytest
import torch

from harness.generator import LSTMGenerator
from harness_plugins.adversarial import Rollout

TARGET = [5, 2, 9, 11, 3, 7, 1, 4]  # distinct tokens, none the start token 0
VOCAB = 12


def successor_generator(successor: dict[int, int], vocab: int = VOCAB) -> LSTMGenerator:
    """A generator whose next token is, with near certainty, successor[current token].

    One-hot embedding; the LSTM's gates are saturated so h is (0.76 x) the one-hot of the
    last token read, whatever came before; the output layer maps it to its successor.
    """
    gen = LSTMGenerator(vocab, len(TARGET), emb_dim=vocab, hidden_dim=vocab, init_std=None)
    eye = torch.eye(vocab)
    with torch.no_grad():
        for p in gen.parameters():
            p.zero_()
        gen.embedding.weight.copy_(eye)
        gates = gen.lstm.bias_ih_l0.view(4, vocab)  # PyTorch's order: i, f, g, o
        gates[0], gates[1], gates[3] = 30.0, -30.0, 30.0
        gen.lstm.weight_ih_l0.view(4, vocab, vocab)[2] = 30.0 * eye
        for token in range(vocab):
            gen.output.weight[successor.get(token, 10), token] = 200.0
    return gen


def target_policy() -> LSTMGenerator:
    path = [0, *TARGET]  # from the start token, each target token leads to the next
    return successor_generator(dict(zip(path[:-1], path[1:])))


def is_target(rows: torch.Tensor) -> torch.Tensor:
    return (rows == torch.tensor(TARGET)).all(dim=1).float()


def diverged(position: int, token: int = 0) -> list[int]:
    """TARGET with its 1-based ``position`` replaced (0 and 10 never occur in TARGET)."""
    row = list(TARGET)
    row[position - 1] = token
    return row


def linear_score(length: int, vocab: int, seed: int = 0):
    """A score in (0, 1) that depends on every token and its position."""
    weights = torch.randn(length, vocab, generator=torch.Generator().manual_seed(seed))
    return lambda rows: torch.sigmoid(weights.gather(1, rows.T).sum(0) / 2)


@pytest.mark.parametrize("greedy", [True, False])
def test_rewards_land_on_the_right_sequence_and_step(greedy):
    # Row 1 is the target; the others leave it at positions 3, 1 and 8. A completion of a
    # prefix of the target is the target (score 1); any prefix past a divergence scores 0.
    rows = torch.tensor([diverged(3), TARGET, diverged(1, 10), diverged(8)])
    rollout = Rollout(target_policy())
    q = rollout.rewards(rows, n_rollouts=3, score=is_target, greedy=greedy,
                        generator=torch.Generator().manual_seed(0))
    expected = torch.zeros(4, len(TARGET))
    expected[0, :2] = 1
    expected[1, :] = 1
    expected[3, :7] = 1
    assert torch.equal(q, expected)


def test_batched_and_naive_rewards_agree_with_greedy_completions():
    torch.manual_seed(0)
    gen = LSTMGenerator(vocab_size=30, seq_len=9, emb_dim=16, hidden_dim=16, init_std=1.0)
    rollout = Rollout(gen)
    sequences = gen.sample(6, generator=torch.Generator().manual_seed(1))
    score = linear_score(9, 30)
    batched = rollout.rewards(sequences, 4, score, greedy=True, chunk=5)
    naive = rollout.rewards_naive(sequences, 4, score, greedy=True)
    assert batched.shape == (6, 9) and batched.dtype == torch.float32
    torch.testing.assert_close(batched, naive, atol=1e-6, rtol=0)
    assert ((batched >= 0) & (batched <= 1)).all()


def exact_rewards(gen: LSTMGenerator, sequences: torch.Tensor, score) -> torch.Tensor:
    """Q_t by enumerating every completion of every prefix, weighted by its probability."""
    length = sequences.shape[1]
    every = torch.tensor(list(itertools.product(range(gen.vocab_size), repeat=length)))
    log_p = gen.token_log_probs(every).detach()
    scores = score(every)
    q = torch.zeros(sequences.shape, dtype=torch.float64)
    for b, row in enumerate(sequences):
        for t in range(1, length + 1):
            match = (every[:, :t] == row[:t]).all(dim=1)
            weights = log_p[match, t:].sum(dim=1).double().exp()
            q[b, t - 1] = (weights * scores[match].double()).sum()
    return q.float()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rewards", "rewards_naive"])
def test_sampled_rewards_estimate_the_exact_expectation(method):
    torch.manual_seed(2)
    gen = LSTMGenerator(vocab_size=4, seq_len=5, emb_dim=8, hidden_dim=8, init_std=1.0)
    sequences = gen.sample(3, generator=torch.Generator().manual_seed(3))
    score = linear_score(5, 4, seed=4)
    n = 3000 if method == "rewards" else 300
    q = getattr(Rollout(gen), method)(sequences, n, score, generator=torch.Generator().manual_seed(5))
    # Each Q_t is a mean of n scores in [0, 1]: its standard error is below 0.5 / sqrt(n).
    torch.testing.assert_close(q, exact_rewards(gen, sequences, score), atol=2.5 / n ** 0.5, rtol=0)


def test_last_reward_is_the_score_of_the_sequence_itself():
    torch.manual_seed(0)
    gen = LSTMGenerator(vocab_size=20, seq_len=6, emb_dim=8, hidden_dim=8)
    sequences = gen.sample(7)
    score = linear_score(6, 20)
    q = Rollout(gen).rewards(sequences, 2, score, generator=torch.Generator().manual_seed(0))
    assert q.shape == (7, 6)
    assert torch.equal(q[:, -1], score(sequences))
    assert ((q >= 0) & (q <= 1)).all()


def test_update_moves_towards_the_generator_and_copies_the_embedding():
    torch.manual_seed(0)
    gen = LSTMGenerator(vocab_size=20, seq_len=6, emb_dim=8, hidden_dim=8)
    rollout = Rollout(gen, update_rate=0.8)
    before = {k: v.clone() for k, v in rollout.policy.state_dict().items()}
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(torch.randn_like(p))
    assert torch.equal(rollout.policy.output.weight, before["output.weight"])  # a copy, not a view
    rollout.update(gen)
    for name, theirs in gen.state_dict().items():
        expected = theirs if name.startswith("embedding.") else 0.8 * before[name] + 0.2 * theirs
        torch.testing.assert_close(rollout.policy.state_dict()[name], expected, atol=1e-6, rtol=0)
    assert not any(p.requires_grad for p in rollout.policy.parameters())


def test_state_dict_round_trip():
    gen = LSTMGenerator(vocab_size=20, seq_len=6, emb_dim=8, hidden_dim=8)
    saved = Rollout(gen, update_rate=0.5).state_dict()
    restored = Rollout(LSTMGenerator(vocab_size=20, seq_len=6, emb_dim=8, hidden_dim=8))
    restored.load_state_dict(saved)
    assert restored.update_rate == 0.5
    for name, value in gen.state_dict().items():
        assert torch.equal(restored.policy.state_dict()[name], value)


@pytest.mark.parametrize("across_batch", [None, lambda scores: torch.softmax(scores, dim=1)])
def test_a_discriminator_scores_completions_as_prob_real_does_bit_for_bit(across_batch):
    # Paper-like shapes: 64 sequences of 20, 16 completions of each prefix, 19,520 rows
    # scored (more than the 500 words, so by look-up); the prefix-sharing scoring must give
    # exactly the rewards of scoring every row with prob_real.
    from harness_plugins.adversarial import SMALL, Discriminator
    torch.manual_seed(0)
    gen = LSTMGenerator(vocab_size=500, seq_len=20, emb_dim=16, hidden_dim=16, init_std=1.0)
    disc = Discriminator(500, 20, **SMALL)
    sequences = gen.sample(64, generator=torch.Generator().manual_seed(1))
    rollout = Rollout(gen)
    by_rows, by_structure = (
        rollout.rewards(sequences, 16, score, generator=torch.Generator().manual_seed(2),
                        across_batch=across_batch)
        for score in (disc.prob_real, disc))
    assert torch.equal(by_structure, by_rows)


def test_the_cpu_random_stream_is_the_same_in_one_call_or_several():
    # What lets the rollout's chunk size change no token: each chunk draws its uniforms in turn.
    whole = torch.rand(1000, 1, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    pieces = [torch.rand(rows, 1, generator=generator) for rows in (1, 7, 256, 3, 733)]
    assert torch.equal(torch.cat(pieces), whole)


@torch.no_grad()
def test_the_rows_a_rollout_step_takes_change_no_token(monkeypatch):
    torch.manual_seed(0)
    gen = LSTMGenerator(vocab_size=50, seq_len=10, emb_dim=8, hidden_dim=8, init_std=1.0)
    sequences = gen.sample(8, generator=torch.Generator().manual_seed(1))
    rollout = Rollout(gen)

    def completed(rows: int) -> torch.Tensor:
        monkeypatch.setattr(Rollout, "ROLLOUT_ROWS", rows)
        return rollout.rewards(sequences, 4, lambda r: r.float().mean(1),
                               generator=torch.Generator().manual_seed(2))

    expected = completed(1)
    for rows in (5, 256, 10_000):
        assert torch.equal(completed(rows), expected)


def rewards_before_the_speed_work(rollout: Rollout, sequences, n_rollouts, score, generator,
                                  chunk=256):
    """Rollout.rewards as it was (policy.output + sample_from_logits per chunk, every row
    scored by ``score``): the reference the faster code must equal bit for bit."""
    from harness.generator import sample_from_logits
    policy = rollout.policy
    n_seq, length = sequences.shape
    block = n_rollouts * n_seq
    rows = (length - 1) * block
    completed = sequences.expand(length - 1, n_rollouts, n_seq, length).reshape(rows, length).clone()
    h, c = (s.unsqueeze(1).expand(-1, n_rollouts, -1, -1).reshape(1, rows, -1).clone()
            for s in rollout._prefix_states(sequences))
    for step in range(1, length):
        ready, active = (step - 1) * block, step * block
        if ready:
            inputs = policy.embedding(completed[:ready, step - 1:step])
            _, (h[:, :ready], c[:, :ready]) = policy.lstm(inputs, (h[:, :ready], c[:, :ready]))
        for i in range(0, active, chunk):
            j = min(i + chunk, active)
            completed[i:j, step] = sample_from_logits(policy.output(h[0, i:j]),
                                                      generator=generator)[0]
    scores = score(torch.cat([completed, sequences])).float()
    q = scores[:rows].view(length - 1, n_rollouts, n_seq).mean(dim=1)
    return torch.cat([q.T, scores[rows:, None]], dim=1)


@torch.no_grad()
@pytest.mark.parametrize("vocab, n_seq, n_rollouts", [
    (600, 64, 16),  # paper shapes but the vocabulary: 19,520 rows > 600 words, looked up
    (1000, 8, 4),   # 616 rows <= 1000 words: convolved
])
def test_rewards_equal_the_implementation_before_the_speed_work(vocab, n_seq, n_rollouts):
    from harness_plugins.adversarial import SMALL, Discriminator
    torch.manual_seed(0)
    gen = LSTMGenerator(vocab_size=vocab, seq_len=20, emb_dim=32, hidden_dim=32, init_std=1.0)
    disc = Discriminator(vocab, 20, **SMALL)
    sequences = gen.sample(n_seq, generator=torch.Generator().manual_seed(1))
    rollout = Rollout(gen)
    expected = rewards_before_the_speed_work(rollout, sequences, n_rollouts, disc.prob_real,
                                             torch.Generator().manual_seed(2))
    q = rollout.rewards(sequences, n_rollouts, disc, generator=torch.Generator().manual_seed(2))
    assert torch.equal(q, expected)
