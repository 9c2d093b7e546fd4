"""The tests' tiny data set as a plugin module, so processes the tests start (fault
injection, executor jobs) load it too: ``HARNESS_PLUGINS=harness_tiny`` with this
directory on PYTHONPATH. Also a method for tests to register, trained by a function."""
from dataclasses import make_dataclass

import harness
from harness import oracle
from harness.api import Dataset


def tiny_oracle_corpus(profile: str, seed: int, mirror=None):
    """A 40-token, length-8 random oracle with a few hundred sequences: trains in a second."""
    tiny = oracle.random_oracle(vocab_size=40, seq_len=8, emb_dim=8, hidden_dim=8, seed=123)
    return oracle.oracle_corpus(tiny, "tiny", seed, n_train=256, n_test=128, eval_samples=256)


class ToyMethod(harness.Method):
    """A test's method: ``train(ctx)`` is the function given, its settings the ``fields``
    of a dataclass made for it (``make_dataclass``'s), ``profiles`` its other profiles."""

    def __init__(self, name: str, train=None, fields=(), profiles=None):
        self.name, self._train = name, train
        self.Config = make_dataclass("Config", fields)
        self.profiles = profiles or {}

    def train(self, ctx):
        return self._train(ctx)


@harness.hookimpl
def register_datasets(register):
    register(Dataset("tiny", tiny_oracle_corpus, "a tiny random oracle for tests"))
