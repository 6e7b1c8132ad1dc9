"""Exact semivalues by enumerating every coalition, and leave-one-out.

Where it sits: the ground truth for tests and experiments on small games (n <= 16), and the
cheap leave-one-out baseline. All `2^n` coalitions are scored in one batched utility call.
Exact methods report `stderr = 0`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ValuationError
from ..estimate import Estimate
from .weights import Weights, banzhaf, shapley

__all__ = ["exact_banzhaf", "exact_semivalue", "exact_shapley", "leave_one_out"]


def _n(utility, n):
    return int(utility.n if n is None else n)


def exact_semivalue(utility, weights: Weights, *, n: int | None = None, key=None,
                    max_n: int = 16) -> Estimate:
    """`phi_i = sum_{S not containing i} w(|S|) (U(S + i) - U(S))`, by enumeration.

    Args:
      utility: a `Utility` or game, `(B, n)` weights -> `(B,)` scores.
      weights: the semivalue's coalition weights (`weights.py`).
      n: number of players (default `utility.n`).
      key: training key shared by all coalitions (common random numbers).
      max_n: refuse larger games (the cost is `2^n` utility evaluations).

    Returns:
      An `Estimate` with stderr 0 and counts `2^(n-1)` (coalitions per sample).
    """
    n = _n(utility, n)
    if n > max_n:
        raise ValuationError(f"exact enumeration needs 2^{n} utility evaluations; it is "
                             f"limited to n <= {max_n}: use a Monte Carlo method instead")
    codes = np.arange(2**n)
    masks = (codes[:, None] >> np.arange(n)) & 1
    scores = np.asarray(utility(masks.astype(np.float32), key=key), np.float64)
    w = np.exp(weights.log_weight(n))  # (n,): weight of one coalition of size k
    sizes = masks.sum(axis=1)
    values = np.empty(n)
    for i in range(n):
        without = codes[masks[:, i] == 0]
        marginals = scores[without | (1 << i)] - scores[without]
        values[i] = np.sum(w[sizes[without]] * marginals)
    return Estimate(values, np.zeros(n), np.full(n, 2 ** (n - 1), np.int64))


def exact_shapley(utility, *, n: int | None = None, key=None, max_n: int = 16) -> Estimate:
    """Exact Shapley values (Shapley 1953) by enumeration; see `exact_semivalue`."""
    return exact_semivalue(utility, shapley(), n=n, key=key, max_n=max_n)


def exact_banzhaf(utility, *, n: int | None = None, key=None, max_n: int = 16) -> Estimate:
    """Exact Banzhaf values (Banzhaf 1965) by enumeration; see `exact_semivalue`."""
    return exact_semivalue(utility, banzhaf(), n=n, key=key, max_n=max_n)


def leave_one_out(utility, *, n: int | None = None, key=None) -> Estimate:
    """`U(N) - U(N \\ {i})` for every sample: `n + 1` evaluations in one batch.

    Returns:
      An `Estimate` with stderr 0 and counts 1.
    """
    n = _n(utility, n)
    masks = np.concatenate([np.ones((1, n)), 1.0 - np.eye(n)]).astype(np.float32)
    scores = np.asarray(utility(masks, key=key), np.float64)
    return Estimate(scores[0] - scores[1:], np.zeros(n), np.ones(n, np.int64))
