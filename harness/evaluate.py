"""The harness's own evaluation: every method's generator is measured by this code."""
from __future__ import annotations

import torch

from harness.api import Corpus, Generator

EVAL_SEED_OFFSET = 7919  # evaluation draws its own random stream, apart from training's


@torch.no_grad()
def mean_token_nll(scorer: Generator, tokens: torch.Tensor, batch: int = 64) -> float:
    """Mean negative log-likelihood per token (nats) of ``tokens`` under ``scorer``."""
    device = next(scorer.parameters()).device if hasattr(scorer, "parameters") else None
    total = 0.0
    for start in range(0, len(tokens), batch):
        chunk = tokens[start:start + batch]
        total -= scorer.log_likelihood(chunk.to(device) if device else chunk).sum().item()
    return total / tokens.numel()


def _samples(generator: Generator, corpus: Corpus, seed: int, temperature: float) -> torch.Tensor:
    device = next(generator.parameters()).device if hasattr(generator, "parameters") else "cpu"
    rng = torch.Generator(device=device).manual_seed(seed + EVAL_SEED_OFFSET)
    return generator.sample(corpus.eval_samples, temperature=temperature, generator=rng)


class _eval_mode:
    """Evaluate with dropout and the like switched off, then restore the training mode."""

    def __init__(self, generator: Generator):
        self.generator, self.was_training = generator, getattr(generator, "training", False)

    def __enter__(self):
        if hasattr(self.generator, "eval"):
            self.generator.eval()

    def __exit__(self, *exc):
        if hasattr(self.generator, "train"):
            self.generator.train(self.was_training)


def curve_metrics(generator: Generator, corpus: Corpus, seed: int) -> dict:
    """The learning-curve figure: NLL-oracle on synthetic data, NLL-test otherwise."""
    with _eval_mode(generator):
        if corpus.oracle is not None:
            samples = _samples(generator, corpus, seed, 1.0)
            return {"nll_oracle": mean_token_nll(corpus.oracle, samples)}
        return {"nll_test": mean_token_nll(generator, corpus.test)}


def evaluate(generator: Generator, corpus: Corpus, seed: int, temperature: float = 1.0) -> dict:
    """The final metrics of a trained generator, with the sample counts they rest on."""
    with _eval_mode(generator):
        metrics: dict = {"temperature": temperature, "n_samples": corpus.eval_samples,
                         "n_test": len(corpus.test)}
        samples = _samples(generator, corpus, seed, temperature)
        if corpus.oracle is not None:
            metrics["nll_oracle"] = mean_token_nll(corpus.oracle, samples)
        metrics["nll_test"] = mean_token_nll(generator, corpus.test)
        return metrics
