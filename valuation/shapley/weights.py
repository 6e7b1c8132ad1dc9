"""Semivalue weights: how much each coalition size counts in a sample's value.

Where it sits: the coefficient half of "utility x sampler x coefficient". Exact enumeration
(`exact.py`) applies the weights directly; the permutation estimator (`permutation.py`)
divides them by its sampling probability (importance weights).

A semivalue of sample i (Dubey, Neyman & Weber 1981) is

    phi_i = sum_{S subset of N \\ {i}} w(|S|) * (U(S + i) - U(S)),
    with   sum_{k=0}^{n-1} C(n-1, k) w(k) = 1,

so `w(k)` is the weight of *one* coalition of size k. A `Weights` object returns `log w(k)`
for `k = 0 .. n-1` (log space: `C(n-1, k)` and `2^(n-1)` overflow float64 beyond n ~ 1000).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..errors import ValuationError

__all__ = ["Weights", "banzhaf", "beta", "log_binomial", "loo", "shapley"]


class Weights(NamedTuple):
    """A semivalue's coalition weights.

    Attributes:
      name: short name, e.g. "beta(16, 1)".
      params: JSON-ready parameters.
      log_weight: `log_weight(n) -> (n,)` float64, `log w(k)` for `k = 0 .. n-1`
        (`-inf` for weight 0).
    """

    name: str
    params: dict
    log_weight: Callable[[int], np.ndarray]


def _lgamma(x: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(v) for v in np.asarray(x, float).ravel()]).reshape(np.shape(x))


def log_binomial(n: int, k: np.ndarray) -> np.ndarray:
    """`log C(n, k)` for integer arrays `k` in `[0, n]`."""
    k = np.asarray(k, float)
    return _lgamma(np.asarray(n + 1.0)) - _lgamma(k + 1.0) - _lgamma(n - k + 1.0)


def _log_betafn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _lgamma(a) + _lgamma(b) - _lgamma(np.asarray(a) + np.asarray(b))


def beta(alpha: float = 16.0, beta: float = 1.0) -> Weights:
    """Beta(alpha, beta) Shapley weights (Kwon & Zou, "Beta Shapley", AISTATS 2022).

    `w(k) = B(k + beta, n - 1 - k + alpha) / B(alpha, beta)`: a coalition's weight is the
    probability of drawing exactly it when each other sample joins with probability
    `t ~ Beta(beta, alpha)`. `alpha > beta` favours small coalitions, where a noisy label
    hurts most (the paper recommends Beta(16, 1)); `beta(1, 1)` is the Shapley value.
    """
    if not (alpha > 0 and beta > 0):
        raise ValuationError(f"Beta Shapley needs alpha, beta > 0, got ({alpha}, {beta})")

    def log_weight(n):
        k = np.arange(n, dtype=float)
        return (_log_betafn(k + beta, n - 1 - k + alpha)
                - _log_betafn(np.asarray(alpha), np.asarray(beta)))

    return Weights(f"beta({alpha:g}, {beta:g})", {"alpha": alpha, "beta": beta}, log_weight)


def shapley() -> Weights:
    """Shapley weights `w(k) = 1 / (n C(n-1, k))` (Shapley 1953; Ghorbani & Zou 2019)."""

    def log_weight(n):
        return -math.log(n) - log_binomial(n - 1, np.arange(n))

    return Weights("shapley", {}, log_weight)


def banzhaf() -> Weights:
    """Banzhaf weights `w(k) = 2^-(n-1)` (Banzhaf 1965; Wang & Jia, "Data Banzhaf", 2023)."""
    return Weights("banzhaf", {}, lambda n: np.full(n, -(n - 1) * math.log(2.0)))


def loo() -> Weights:
    """Leave-one-out: all weight on the full coalition, `w(n-1) = 1`."""

    def log_weight(n):
        out = np.full(n, -np.inf)
        out[-1] = 0.0
        return out

    return Weights("leave_one_out", {}, log_weight)
