"""Sampling standard errors of the evaluation's metrics, so a re-run can be judged "within
noise". Pure numpy: every function takes the per-unit values (or jackknife replicates) a
metric is computed from and leaves the metric itself to the code that computes it.

A standard error here is NaN where it is undefined (fewer than two units); the evaluation
leaves such a metric out of its ``standard_errors``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["standard_error", "mean_and_se", "token_nll_se", "binomial_se",
           "jackknife_groups", "jackknife_se"]

JACKKNIFE_GROUPS = 20  # delete-a-group jackknife: the variance estimate has ~19 degrees of freedom


def standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of independent ``values``: std (ddof=1) / sqrt(n)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return math.nan
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """``float(values.mean())`` (the very float a metric that averages ``values`` reports)
    and its standard error."""
    return float(values.mean()), standard_error(values)


def token_nll_se(log_likelihoods: np.ndarray, seq_len: int) -> float:
    """Standard error of a mean NLL per token over fixed-length rows: that mean (total over
    tokens / their number) is the mean of the rows' own NLLs per token."""
    return standard_error(-np.asarray(log_likelihoods, dtype=np.float64) / seq_len)


def binomial_se(share: float, n: int) -> float:
    """Standard error of a share of ``n`` independent yes/no outcomes: sqrt(p(1-p)/n)."""
    return math.sqrt(share * (1.0 - share) / n) if n > 0 else math.nan


def jackknife_groups(n: int, n_groups: int = JACKKNIFE_GROUPS) -> np.ndarray:
    """The group (0..G-1, G = min(n_groups, n)) of each of ``n`` units: contiguous blocks of
    near-equal size (the samples are drawn independently, so blocks are random groups)."""
    groups = min(n_groups, n)
    return np.arange(n, dtype=np.int64) * groups // max(n, 1)


def jackknife_se(replicates: np.ndarray) -> float:
    """Delete-a-group jackknife: the standard error of a statistic from its values with each
    of G groups left out, sqrt((G-1)/G * sum((r_k - mean r)^2))."""
    replicates = np.asarray(replicates, dtype=np.float64)
    groups = len(replicates)
    if groups < 2:
        return math.nan
    spread = ((replicates - replicates.mean()) ** 2).sum()
    return float(math.sqrt((groups - 1) / groups * spread))
