"""The causal Transformer (``harness.transformer``): its key-value-cached steps give the
teacher-forced pass, it samples from its own softmax, sees no future token, saves and loads,
is sized on the meta device, rolls out through the decoding contract and learns by MLE."""
import pytest
import torch

from harness.generator import Decoder, load_generator, save_generator
from harness.training import mle_epoch
from harness.transformer import TransformerGenerator
from harness_plugins import adversarial as adv
from test_any_generator import assert_greedy_completions

VOCAB, LENGTH = 11, 7


def tiny_transformer(seed: int = 0, **sizes) -> TransformerGenerator:
    torch.manual_seed(seed)
    sizes = {"layers": 2, "heads": 2, "d_model": 16, "d_ff": 24, **sizes}
    model = TransformerGenerator(VOCAB, LENGTH, start_token=0, **sizes).eval()
    with torch.no_grad():  # weights far from nanoGPT's small start: the logits vary by token
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def random_tokens(n: int, seed: int) -> torch.Tensor:
    return torch.randint(VOCAB, (n, LENGTH), generator=torch.Generator().manual_seed(seed))


def stepped_logits(model, inputs: torch.Tensor, state=None):
    state = model.start_state(len(inputs)) if state is None else state
    stepped = []
    for token in inputs.T:
        logits, state = model.step(token, state)
        stepped.append(logits)
    return torch.stack(stepped, dim=1), state


@torch.no_grad()
def test_stepping_the_cache_gives_the_teacher_forced_logits_and_selected_rows_step_alone():
    model = tiny_transformer()
    tokens = random_tokens(5, 1)
    inputs = model.shifted_inputs(tokens)
    stepped, _ = stepped_logits(model, inputs)
    forced = model.teacher_forced_logits(tokens)
    assert forced.shape == (5, LENGTH, VOCAB)
    torch.testing.assert_close(stepped, forced)
    # The state after 3 tokens, rows picked and repeated; its copies stepped on give what
    # stepping those rows alone gives, and the state they came from is left as it was.
    _, state = stepped_logits(model, inputs[:, :3])
    kept = [t.clone() for layer in state[1] for t in layer]
    rows = torch.tensor([4, 1, 1, 0])
    picked = model.select_state(state, rows)
    after, end = stepped_logits(model, inputs[rows, 3:], picked)
    torch.testing.assert_close(after, forced[rows, 3:])
    assert all(torch.equal(a, b) for a, b in zip(kept, [t for layer in state[1] for t in layer]))
    assert state[0] == 3 and end[0] == LENGTH
    assert end[1][0][0].shape == (4, 2, LENGTH, 8)
    with pytest.raises(ValueError, match="past position"):
        model.step(inputs[rows, 0], end)


def test_sampling_draws_from_the_model():
    model = tiny_transformer(seed=3).train()  # sampling switches dropout off itself
    samples = model.sample(20_000, generator=torch.Generator().manual_seed(2))
    assert model.training  # and gives the mode back
    assert samples.dtype == torch.int64 and samples.shape == (20_000, LENGTH)
    assert samples.min() >= 0 and samples.max() < VOCAB
    with torch.no_grad():
        first = torch.softmax(model.eval().teacher_forced_logits(samples[:1])[0, 0], dim=0)
    assert first.max() > 0.15  # a distribution far from uniform, so the check means something
    counts = torch.bincount(samples[:, 0], minlength=VOCAB) / 20_000
    assert (counts - first).abs().max() < 0.02  # about 7 standard errors of a share
    # A later position follows the model's conditionals, so the cache is read.
    second = torch.softmax(model.teacher_forced_logits(samples)[:, 1], dim=-1).mean(0).detach()
    torch.testing.assert_close(torch.bincount(samples[:, 1], minlength=VOCAB) / 20_000, second,
                               atol=0.02, rtol=0)
    # The same generator seed, the same samples.
    assert torch.equal(samples, model.sample(20_000, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_its_buffered_sampler_draws_the_tokens_of_the_stepping_one(temperature):
    model = tiny_transformer(seed=12)
    mine = model.sample(300, temperature, generator=torch.Generator().manual_seed(5))
    stepped = Decoder.sample(model, 300, temperature, generator=torch.Generator().manual_seed(5))
    assert torch.equal(mine, stepped)
    assert model.sample(0).shape == (0, LENGTH)


@torch.no_grad()
def test_a_token_changes_no_logit_at_or_before_its_position():
    model = tiny_transformer(seed=4)
    tokens = random_tokens(3, 5)
    forced = model.teacher_forced_logits(tokens)
    for t in range(LENGTH):
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] + 1) % VOCAB
        logits = model.teacher_forced_logits(changed)
        # y_t is the input at position t + 1: positions 0..t do not read it.
        assert torch.equal(logits[:, :t + 1], forced[:, :t + 1])
        if t + 1 < LENGTH:
            assert not torch.allclose(logits[:, t + 1], forced[:, t + 1])


def test_it_saves_loads_and_is_sized_on_the_meta_device(tmp_path):
    model = tiny_transformer(seed=6, dropout=0.1)
    save_generator(tmp_path / "generator.pt", model)
    loaded = load_generator(tmp_path / "generator.pt")
    assert type(loaded) is TransformerGenerator
    assert loaded.constructor_args == model.constructor_args
    tokens = random_tokens(4, 7)
    with torch.no_grad():
        assert torch.equal(loaded.teacher_forced_logits(tokens),
                           model.teacher_forced_logits(tokens))
    for sizes in [dict(layers=2, heads=2, d_model=64, d_ff=128),
                  dict(layers=3, heads=4, d_model=32, d_ff=8)]:
        built = TransformerGenerator(50, 9, 0, **sizes)
        assert TransformerGenerator.parameter_count(50, 9, **sizes) == \
            sum(p.numel() for p in built.parameters())
    # A seeded construction draws the same weights.
    torch.manual_seed(8)
    first = TransformerGenerator(50, 9).state_dict()
    torch.manual_seed(8)
    again = TransformerGenerator(50, 9).state_dict()
    assert all(torch.equal(a, b) for a, b in zip(first.values(), again.values()))


@pytest.mark.parametrize("bad", [dict(d_model=30, heads=4), dict(layers=0), dict(heads=0),
                                 dict(d_model=0), dict(d_ff=0), dict(vocab_size=0),
                                 dict(seq_len=0), dict(dropout=1.0), dict(dropout=-0.1),
                                 dict(start_token=12)])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        TransformerGenerator(**{"vocab_size": 12, "seq_len": 5, **bad})


def test_the_rollout_takes_it():
    model = tiny_transformer(seed=9)
    tokens = model.sample(3, generator=torch.Generator().manual_seed(3))
    seen = []

    def score(rows):
        seen.append(rows.clone())
        return (rows % 2 == 0).float().mean(dim=1)

    rollout = adv.Rollout(model)
    q = rollout.rewards(tokens, 2, score, greedy=True)
    completed = torch.cat(seen)[:-len(tokens)]
    assert_greedy_completions(model, tokens, 2, completed)
    assert q.shape == (3, LENGTH) and torch.equal(q[:, -1], score(tokens))
    seen.clear()
    rollout.rewards(tokens, 2, score, generator=torch.Generator().manual_seed(4))
    completed = torch.cat(seen)[:-len(tokens)].view(LENGTH - 1, 2, 3, LENGTH)
    for t in range(1, LENGTH):
        assert torch.equal(completed[t - 1, :, :, :t], tokens[None, :, :t].expand(2, -1, -1))
    assert completed.min() >= 0 and completed.max() < VOCAB


def test_mle_steps_lower_the_teacher_forced_nll():
    torch.manual_seed(10)
    model = TransformerGenerator(VOCAB, LENGTH, layers=2, heads=2, d_model=16, d_ff=24)
    data = random_tokens(32, 11)

    def nll():
        with torch.no_grad():
            return -model.eval().token_log_probs(data).mean().item()

    before = nll()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(5):
        mle_epoch(model, data, optimizer, batch_size=32, grad_clip=5.0, rng=None)
    assert nll() < before - 0.1
