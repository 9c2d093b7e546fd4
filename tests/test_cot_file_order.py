"""CoT's cooperative epoch: under the ``authors`` profile the real rows in file order, in the
steps the authors' code takes (desire2020/CoT @05f3908, cot.py and dataloader.py), checked
against a transcription of their loader; the default profile's shuffled epoch unchanged.

The example is loaded from its directory by path, installed or not."""
from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_external_plugin import cot  # the example, loaded from its directory

VOCAB, LENGTH = 7, 5


def authors_cooperative_batches(rows: list[list[int]], batch_size: int, steps: int
                                ) -> tuple[int, list[list[list[int]]]]:
    """Their loader as their cooperative loop reads it, transcribed: create_batches
    (dataloader.py lines 10-23) keeps the rows of the right length in file order,
    int(N / B) batches, the rest dropped, np.split; each step's mediator update takes
    next_batch() (cot.py line 188; dataloader.py 25-28: the pointer cycles mod num_batch,
    never reset in training); an epoch is num_batch steps (cot.py line 200). Returns
    (num_batch, the real batch of each of ``steps`` steps)."""
    token_stream = [row for row in rows if len(row) == LENGTH]
    num_batch = int(len(token_stream) / batch_size)
    token_stream = token_stream[:num_batch * batch_size]
    sequence_batch = np.split(np.array(token_stream), num_batch, 0)
    pointer, out = 0, []
    for _ in range(steps):
        out.append(sequence_batch[pointer].tolist())
        pointer = (pointer + 1) % num_batch
    return num_batch, out


def test_their_156_steps_an_epoch_is_int_of_rows_over_the_batch():
    # cot.py line 121: generate_samples writes int(10000 / 64) x 64 rows (line 36); the
    # loader keeps int(9984 / 64) batches: 156, as int(10000 / 64) on our 10,000 rows.
    assert int(10_000 / 64) * 64 == 9_984 and int(9_984 / 64) == 156 == int(10_000 / 64)
    rng = torch.Generator().manual_seed(0)
    assert len(cot.real_batches(10_000, 64, rng, "file")) == 156
    assert len(cot.real_batches(10_000, 64, rng, "shuffled")) == 157  # ours: every row


def cooperative_run(monkeypatch, real_order: str, train: torch.Tensor, epochs: int):
    """The real batches the mediator is given over ``epochs`` cooperative epochs, and the
    number of generator steps, with the models' updates left out (only the order counts)."""
    config = cot.CotConfig(batch_size=4, real_order=real_order, mediator_emb_dim=4,
                           mediator_hidden_dim=4, emb_dim=4, hidden_dim=4)
    streams = {}

    def rng(name, device=None):
        streams[name] = torch.Generator().manual_seed(len(name))
        return streams[name]

    ctx = SimpleNamespace(config=config, corpus=SimpleNamespace(train=train),
                          device=torch.device("cpu"), rng=rng)
    generator = cot.LSTMGenerator(VOCAB, LENGTH, 4, 4)
    mediator = cot.Mediator(VOCAB, LENGTH, 4, 4, 0, 0.5)
    reals, generator_steps = [], []
    monkeypatch.setattr(cot, "mediator_step",
                        lambda mediator, optimizer, real, generated: reals.append(
                            real.tolist()) or 1.0)
    monkeypatch.setattr(cot, "generator_step",
                        lambda *args: generator_steps.append(args[4]) or 1.0)
    training = cot.CooperativeTraining(ctx, generator, mediator)
    state = streams["cot_real_order"].get_state()
    for _ in range(epochs):
        training.epoch(train_generator=True)
    moved = not torch.equal(streams["cot_real_order"].get_state(), state)
    return reals, generator_steps, moved


def test_an_authors_epoch_takes_their_steps_in_file_order(monkeypatch):
    train = torch.randint(VOCAB, (10, LENGTH), generator=torch.Generator().manual_seed(1))
    reals, generator_steps, moved = cooperative_run(monkeypatch, "file", train, 2)
    num_batch, expected = authors_cooperative_batches(train.tolist(), 4, 2 * 2)
    assert num_batch == 2 and reals == expected  # 2 steps an epoch, rows 8, 9 never seen
    assert generator_steps == [4] * 4  # one generator step of B samples per mediator step
    assert not moved  # the real-order stream is made and checkpointed, never drawn from
    # The default: a fresh permutation each epoch, every row, the last batch short.
    reals, generator_steps, moved = cooperative_run(monkeypatch, "shuffled", train, 1)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(len("cot_real_order")))
    assert reals == [train[order[start:start + 4]].tolist() for start in (0, 4, 8)]
    assert len(generator_steps) == 3 and moved
    assert [b.tolist() for b in cot.real_batches(3, 4, torch.Generator(), "file")] == [[0, 1, 2]]


def test_the_authors_profile_takes_their_order_and_the_default_keeps_shuffling():
    from harness.config import resolve

    method = cot.Cot()
    assert asdict(resolve(method, "authors", {}))["real_order"] == "file"
    for profile in ("default", "paper"):
        assert asdict(resolve(method, profile, {}))["real_order"] == "shuffled"
    with pytest.raises(ValueError, match="real_order"):
        cot.CotConfig(real_order="sorted")
