"""The fast sampler and scorer of ``LSTMGenerator`` give exactly the floats of the plain
step-by-step forms they replaced, at the paper's sizes (vocabulary 5,000, hidden 32)."""
import pytest
import torch
import torch.nn.functional as F

from harness.generator import LSTMGenerator, sample_from_logits, sequence_log_likelihoods


def reference_draw(logits, temperature, generator):
    """The plain draw: ``sample_from_logits``, fresh tensors every pass (the draw itself is
    checked against the full cumulative sum in test_generator.py)."""
    return sample_from_logits(logits, temperature, generator)


@torch.no_grad()
def reference_sample(model, n, temperature, generator, chunk=128):
    """Chunk after chunk, the whole module called once per step."""
    tokens, log_probs = [], []
    for start in range(0, n, chunk):
        token = torch.full((min(chunk, n - start), 1), model.start_token)
        state, steps, step_log_probs = None, [], []
        for _ in range(model.seq_len):
            logits, state = model(token, state)
            drawn, log_p = reference_draw(logits[:, -1], temperature, generator)
            token = drawn.unsqueeze(1)
            steps.append(drawn)
            step_log_probs.append(log_p)
        tokens.append(torch.stack(steps, dim=1))
        log_probs.append(torch.stack(step_log_probs, dim=1))
    return torch.cat(tokens), torch.cat(log_probs)


@torch.no_grad()
def reference_nll(model, tokens, temperature):
    """Batches of 16, the logits of each made whole, the sums added one batch at a time."""
    total, rows = 0.0, []
    for start in range(0, len(tokens), 16):
        batch = tokens[start:start + 16]
        logits = model(model.shifted_inputs(batch))[0]
        if temperature != 1.0:
            logits = logits / temperature
        nll = F.cross_entropy(logits.flatten(0, 1), batch.flatten(), reduction="none")
        value = (-nll.view_as(batch)).sum(dim=1)
        total -= value.sum().item()
        rows.append(value)
    return total / tokens.numel(), torch.cat(rows).double().numpy()


@pytest.fixture(scope="module")
def paper_sized():
    torch.manual_seed(0)
    return LSTMGenerator(vocab_size=5000, seq_len=20, emb_dim=32, hidden_dim=32).eval()


@pytest.fixture(scope="module")
def judge_sized():
    """The judge LMs' sizes (``language_model.LmSettings``) on Obama-like paragraphs."""
    torch.manual_seed(1)
    return LSTMGenerator(vocab_size=5000, seq_len=40, emb_dim=32, hidden_dim=64).eval()


@pytest.mark.parametrize("n, chunk, temperature", [(1000, None, 1.0), (333, 50, 1.5),
                                                   (129, None, 0.7)])
def test_sampling_gives_the_reference_tokens_and_log_probs(paper_sized, n, chunk, temperature):
    tokens, log_probs = paper_sized.sample(n, temperature, torch.Generator().manual_seed(4),
                                           return_log_probs=True, chunk=chunk)
    expected_tokens, expected_log_probs = reference_sample(
        paper_sized, n, temperature, torch.Generator().manual_seed(4), chunk or 128)
    assert torch.equal(tokens, expected_tokens)
    assert torch.equal(log_probs, expected_log_probs)
    alone = paper_sized.sample(n, temperature, torch.Generator().manual_seed(4), chunk=chunk)
    assert torch.equal(alone, expected_tokens)


@pytest.mark.parametrize("model, temperatures", [("paper_sized", (1.0,)),
                                                 ("paper_sized", (0.5, 1.0, 1.75)),
                                                 ("judge_sized", (1.0,))])
def test_nll_gives_the_reference_floats(model, temperatures, request):
    model = request.getfixturevalue(model)
    tokens = model.sample(1001, generator=torch.Generator().manual_seed(5))
    means, per_sequence = sequence_log_likelihoods(model, tokens, temperatures)
    for mean, rows, temperature in zip(means, per_sequence, temperatures):
        expected_mean, expected_rows = reference_nll(model, tokens, temperature)
        assert mean == expected_mean
        assert (rows == expected_rows).all()


@pytest.mark.parametrize("rows", [1, 7, 300, 100_000])
def test_the_rows_a_step_takes_change_no_token_and_no_float(paper_sized, rows, monkeypatch):
    """``SAMPLE_ROWS`` and ``LIKELIHOOD_ROWS`` only set how much work one call does."""
    monkeypatch.setattr(LSTMGenerator, "SAMPLE_ROWS", rows)
    monkeypatch.setattr(LSTMGenerator, "LIKELIHOOD_ROWS", rows)
    tokens, log_probs = paper_sized.sample(700, generator=torch.Generator().manual_seed(6),
                                           return_log_probs=True)
    expected_tokens, expected_log_probs = reference_sample(
        paper_sized, 700, 1.0, torch.Generator().manual_seed(6))
    assert torch.equal(tokens, expected_tokens)
    assert torch.equal(log_probs, expected_log_probs)
    means, per_sequence = sequence_log_likelihoods(paper_sized, tokens, (1.0,))
    expected_mean, expected_rows = reference_nll(paper_sized, tokens, 1.0)
    assert means[0] == expected_mean
    assert (per_sequence[0] == expected_rows).all()
