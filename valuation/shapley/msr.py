"""Data Banzhaf with the maximum-sample-reuse (MSR) estimator.

Where it sits: an `Estimator` for `runner.run`. Each draw is a coalition S holding every
sample independently with probability 1/2 (all coalitions equally likely), scored once by
the utility engine. Since the Banzhaf value is

    phi_i = E[U(S) | i in S] - E[U(S) | i not in S]     (S uniform over all coalitions),

every evaluation updates *every* sample: it joins sample i's "in" statistics if i is in S,
its "out" statistics otherwise (Wang & Jia, "Data Banzhaf: A Robust Data Valuation Framework
for Machine Learning", AISTATS 2023, Algorithm 1). The standard error is that of a
difference of two independent means, `sqrt(se_in^2 + se_out^2)`; the count is the number of
coalitions (`count_in + count_out`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import estimate as est
from ..errors import ValuationError
from ..runner import Estimator
from .samplers import bernoulli_masks, training_keys

__all__ = ["msr_banzhaf"]


class MSRState(NamedTuple):
    """Moments of the utilities of coalitions with (`inside`) and without (`outside`) each
    sample."""

    inside: est.Moments
    outside: est.Moments


def msr_banzhaf(*, batch: int = 256) -> Estimator:
    """Data Banzhaf values by maximum sample reuse (Wang & Jia, AISTATS 2023).

    Args:
      batch: coalitions per update (one utility call); the stopping rule is checked
        between updates.

    Returns:
      An `Estimator`; values, stderr and counts `(n,)`.

    Example:
      >>> msr_banzhaf(batch=64).name
      'msr_banzhaf'
    """
    if int(batch) < 1:
        raise ValuationError(f"batch must be a positive int, got {batch!r}")

    def init(n):
        return MSRState(est.moments(n), est.moments(n))

    def update(state, utility, keys, limit):
        n = state.inside.count.shape[0]
        inside, outside = state
        take = int(min(keys.shape[0], limit.draws, limit.evaluations))  # one model per draw
        # One engine chunk of coalitions at a time: memory O(chunk * n), not O(batch * n).
        # A chunk is scored whole (one compiled shape); its rows past `take` are padding.
        step = getattr(utility, "chunk", keys.shape[0])
        for start in range(0, take, step):
            chunk_keys = keys[start:start + step]
            rows = min(step, take - start)
            masks = np.asarray(bernoulli_masks(chunk_keys, n))
            scores = np.asarray(utility(masks.astype(np.float32),
                                        key=training_keys(chunk_keys)), np.float64)
            inside = est.update(inside, scores[:rows], masks[:rows])
            outside = est.update(outside, scores[:rows], ~masks[:rows])
        return MSRState(inside, outside), take, take

    def estimate(state):
        a, b = est.estimate(state.inside), est.estimate(state.outside)
        return est.Estimate(a.values - b.values, np.sqrt(a.stderr**2 + b.stderr**2),
                            a.counts + b.counts)

    return Estimator(init, update, estimate, "msr_banzhaf", {}, int(batch))
