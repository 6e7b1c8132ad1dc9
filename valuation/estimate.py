"""Running per-sample statistics: Welford/Chan moments and the `Estimate` they yield.

Where it sits: every Monte Carlo estimator (permutation and Banzhaf semivalues, Data-OOB)
accumulates its per-sample observations here, between the utility engine and the
`ValuationResult`. Host-side float64 numpy: the statistics are tiny next to the models, and
float64 keeps long runs from drifting.

A batch of observations is folded in with Chan, Golub & LeVeque's parallel update
("Updating formulae and a pairwise algorithm for computing sample variances", 1979), which
generalises Welford's one-at-a-time recurrence (Welford, Technometrics 1962). Folding the same
observations in batches of any size gives the same moments up to float64 rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Estimate", "Moments", "combine", "estimate", "moments", "update"]

BLOCK_ELEMENTS = 4_000_000  # observations folded at once: ~32 MB per float64 temporary


class Moments(NamedTuple):
    """Per-sample count, mean and sum of squared deviations, each of shape `(n,)`."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray


class Estimate(NamedTuple):
    """Per-sample values with standard errors and update counts, each of shape `(n,)`.

    `stderr` is the standard error of the mean, `sqrt(var / count)`; it is `inf` where fewer
    than two observations exist and 0 for exact methods.
    """

    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray


def moments(n: int) -> Moments:
    """Empty statistics for `n` samples."""
    return Moments(np.zeros(n, np.int64), np.zeros(n), np.zeros(n))


def combine(a: Moments, b: Moments) -> Moments:
    """Pool two sets of moments (Chan et al. 1979, eq. 2.1)."""
    count = a.count + b.count
    safe = np.maximum(count, 1)
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / safe)
    m2 = a.m2 + b.m2 + delta**2 * (a.count * b.count / safe)
    return Moments(count, mean, m2)


def update(m: Moments, observations, mask=None) -> Moments:
    """Fold in a batch of observations.

    Args:
      m: current moments of `n` samples.
      observations: `(b, n)`: observation j of sample i, or `(b,)` (one value per row shared
        by all samples, e.g. a utility score).
      mask: `(b, n)` booleans, which observations count (default all).
    """
    n = m.count.shape[0]
    x = np.asarray(observations)
    if x.ndim == 1:
        x = x[:, None]
    x = np.broadcast_to(x, (x.shape[0], n))
    mask = None if mask is None else np.broadcast_to(mask, x.shape)
    # Blocks of rows keep the float64 temporaries near BLOCK_ELEMENTS whatever b and n
    # (the same moments up to float64 rounding: Chan's update pools the blocks).
    rows = max(1, BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, x.shape[0], rows):
        block = x[start:start + rows].astype(np.float64)
        w = (np.ones(block.shape, bool) if mask is None
             else np.asarray(mask[start:start + rows], bool))
        count = w.sum(axis=0)
        mean = np.where(w, block, 0.0).sum(axis=0) / np.maximum(count, 1)
        m2 = np.where(w, (block - mean) ** 2, 0.0).sum(axis=0)
        m = combine(m, Moments(count.astype(np.int64), mean, m2))
    return m


def estimate(m: Moments) -> Estimate:
    """Means with their standard errors `sqrt(m2 / (count - 1) / count)`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        var = m.m2 / (m.count - 1)
        stderr = np.where(m.count >= 2, np.sqrt(np.maximum(var, 0.0) / m.count), np.inf)
    return Estimate(m.mean.copy(), stderr, m.count.copy())
