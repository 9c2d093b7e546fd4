import pytest
import torch

import harness
from harness.generator import LSTMGenerator, draw_inverse_cdf, eval_mode, sample_from_logits


@pytest.mark.parametrize("batch", [1, 5, 64])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_stepwise_sampling_log_probs_equal_teacher_forced(batch, temperature):
    torch.manual_seed(0)
    generator = LSTMGenerator(vocab_size=50, seq_len=12, emb_dim=16, hidden_dim=16, init_std=0.5)
    tokens, log_probs = generator.sample(batch, temperature, return_log_probs=True, chunk=3)
    forced = generator.token_log_probs(tokens, temperature)
    torch.testing.assert_close(log_probs, forced, atol=1e-5, rtol=0)


def test_sampling_carries_the_state():
    # A sampler that dropped (h, c) would draw step t from the start state's distribution;
    # with a strongly state-dependent model the second token then follows the first one's law.
    torch.manual_seed(1)
    generator = LSTMGenerator(vocab_size=6, seq_len=2, emb_dim=8, hidden_dim=8, init_std=2.0)
    tokens = generator.sample(4000, generator=torch.Generator().manual_seed(0))
    inputs = generator.shifted_inputs(tokens)
    logits, _ = generator(inputs)
    expected = torch.softmax(logits[:, 1], dim=-1).mean(0)
    observed = torch.bincount(tokens[:, 1], minlength=6).float() / len(tokens)
    torch.testing.assert_close(observed, expected, atol=0.03, rtol=0)


def test_inverse_cdf_sampling_draws_the_softmax_distribution():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0, 1.0]]).repeat(20000, 1)
    tokens, _ = sample_from_logits(logits, temperature=1.0, generator=torch.Generator().manual_seed(3))
    counts = torch.bincount(tokens, minlength=5).double()
    expected = torch.softmax(logits[0].double(), 0) * len(tokens)
    chi_square = ((counts - expected) ** 2 / expected).sum().item()
    assert chi_square < 18.47  # the 0.999 quantile of chi-square with 4 degrees of freedom


def full_cdf_draw(logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """The textbook inverse CDF: the first token whose running sum exceeds u * total."""
    cdf = torch.softmax(logits.double(), -1).cumsum(-1)
    return torch.searchsorted(cdf, uniform.double() * cdf[:, -1:], right=True).squeeze(1)


@pytest.mark.parametrize("vocab", [1, 2, 5, 37, 100, 5000])
def test_blocked_inverse_cdf_draws_the_tokens_of_the_full_cumulative_sum(vocab):
    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(400, vocab, generator=g, dtype=torch.float64) * 3
    uniform = torch.rand(400, 1, generator=g, dtype=torch.float64)
    tokens, log_probs = draw_inverse_cdf(logits, uniform, None)
    assert torch.equal(tokens, full_cdf_draw(logits, uniform))
    torch.testing.assert_close(log_probs, torch.log_softmax(logits, -1).gather(1, tokens[:, None])
                               .squeeze(1))
    in_place = logits.clone()
    assert torch.equal(draw_inverse_cdf(in_place, uniform, in_place, log_probs=False)[0], tokens)


def test_blocked_inverse_cdf_never_draws_a_token_of_zero_weight():
    vocab = 5000
    logits = torch.full((6, vocab), -1e4)
    alive = [[0], [4999], [70, 71], [4969, 4970, 4999], [3], [2000, 2001, 4998]]
    for row, columns in enumerate(alive):
        logits[row, columns] = torch.arange(len(columns), dtype=torch.float32)
    below_one = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))
    for u in (torch.tensor(0.0), below_one, torch.tensor(0.5)):
        tokens, log_probs = draw_inverse_cdf(logits, u.repeat(6, 1), None)
        assert all(token in columns for token, columns in zip(tokens.tolist(), alive))
        assert torch.isfinite(log_probs).all()


def test_blocked_inverse_cdf_draws_the_softmax_distribution_past_a_ragged_block():
    logits = torch.randn(37, generator=torch.Generator().manual_seed(0)).repeat(40000, 1)
    tokens, _ = sample_from_logits(logits, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(tokens, minlength=37).double()
    expected = torch.softmax(logits[0].double(), 0) * len(tokens)
    chi_square = ((counts - expected) ** 2 / expected).sum().item()
    assert chi_square < 67.99  # the 0.999 quantile of chi-square with 36 degrees of freedom


def test_sampling_is_reproducible_with_a_seeded_generator():
    generator = LSTMGenerator(vocab_size=30, seq_len=7)
    first = generator.sample(10, generator=torch.Generator().manual_seed(5))
    second = generator.sample(10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second) and first.shape == (10, 7)
    assert first.min() >= 0 and first.max() < 30


def test_likelihoods_at_several_temperatures_equal_one_call_per_temperature():
    # The sweep scores the held-out set at every temperature from one teacher-forced pass;
    # the figures must be exactly those of one log_likelihood call per temperature.
    from harness.generator import mean_token_nll, mean_token_nlls

    torch.manual_seed(2)
    generator = LSTMGenerator(vocab_size=40, seq_len=9, emb_dim=8, hidden_dim=8, init_std=0.5)
    tokens = generator.sample(37)
    temperatures = (0.3, 1.0, 1.7)
    together = generator.log_likelihoods(tokens, temperatures)
    for temperature, values in zip(temperatures, together):
        assert torch.equal(values, generator.log_likelihood(tokens, temperature))
    assert mean_token_nlls(generator, tokens, temperatures) == \
        [mean_token_nll(generator, tokens, temperature=t) for t in temperatures]


def test_a_generator_gets_the_defaults_the_harness_reads():
    class Constant(harness.Generator):
        def log_likelihood(self, tokens, temperature=1.0):
            return torch.full((len(tokens),), -1.0 / temperature)

    generator, tokens = Constant(), torch.zeros(3, 4, dtype=torch.long)
    assert [v.tolist() for v in generator.log_likelihoods(tokens, (0.5, 1.0))] == \
        [[-2.0] * 3, [-1.0] * 3]  # one log_likelihood per temperature
    assert generator.samples_outside("train", 3, torch.Generator()) is None
    assert not generator.likelihood_is_bound and generator.likelihood_batches_per_call == 1
    assert generator.constructor_args is None  # not saved as generator.pt
    with pytest.raises(NotImplementedError):
        generator.sample(1)
    assert isinstance(LSTMGenerator(5, 3), harness.Generator)


def test_eval_mode_switches_training_off_for_the_block_and_restores_the_mode():
    module = torch.nn.Dropout()
    with eval_mode(module):
        assert not module.training
    assert module.training
    module.eval()
    with eval_mode(module):
        pass
    assert not module.training
    with eval_mode(object()):  # not a module: left as it is
        pass
