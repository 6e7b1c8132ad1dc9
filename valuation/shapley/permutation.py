"""Permutation-sampling semivalues: (truncated) Monte Carlo Shapley and Beta Shapley.

Where it sits: an `Estimator` for `runner.run`. Each draw is a uniform random order of the
training samples; the utility of every prefix of the order is computed by the engine in
batches of masks, and the marginal contribution `U(prefix + i) - U(prefix)` of each sample,
times the importance weight `w(k) / p(k)` of its prefix size k (semivalue weight over the
permutation sampler's probability, both in log space), is folded into running moments. For
Shapley the importance weight is exactly 1.

Truncation (TMC-Shapley, Ghorbani & Zou, "Data Shapley", ICML 2019). With
`truncation_rtol=r`, a permutation is truncated at the first position t where
`|U(prefix_t) - U(N)| <= r * |U(N)|`; the marginals of all later positions are set to 0
(their prefixes are treated as worth `U(prefix_t)`). This is *biased*: it drops the
remaining marginals, which sum to `U(N) - U(prefix_t)`, at most `r * |U(N)|` per
permutation, so the estimates' sum is off from `U(N) - U(empty)` by at most that. Prefixes
are scored in blocks of `block` positions per permutation, and a permutation's later blocks
are skipped once it is truncated; the truncation point (and so the values) does not depend on
`block`, only the evaluations spent (up to `block - 1` wasted per permutation).

Antithetic sampling: draws come in pairs (an order and its reverse), which are negatively
correlated; the standard errors treat all draws as independent, which over-states them.

Sign: positive value = adding the sample raises the utility (more valuable).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from .. import estimate as est
from ..errors import ValuationError
from ..runner import Estimator
from .samplers import log_permutation_probability, permutations, training_keys
from .weights import Weights, beta, shapley

__all__ = ["beta_shapley", "permutation_semivalue", "tmc_shapley"]


class PermutationState(NamedTuple):
    """Running moments of the weighted marginals, and `[U(empty), U(N)]` (NaN until the
    first update)."""

    moments: est.Moments
    ends: np.ndarray


def _score(utility, masks, keys):
    """Scores of `masks` `(B, n)`; padded to a whole number of the engine's chunks so that
    every call reuses one compiled shape (the padding rows are discarded)."""
    masks, keys = np.asarray(masks, np.float32), np.asarray(keys)
    rows = masks.shape[0]
    chunk = getattr(utility, "chunk", None)
    if chunk is not None and rows % chunk:
        pad = chunk - rows % chunk
        masks = np.concatenate([masks, np.repeat(masks[:1], pad, axis=0)])
        keys = np.concatenate([keys, np.repeat(keys[:1], pad, axis=0)])
    return np.asarray(utility(masks, key=keys), np.float64)[:rows]


def permutation_semivalue(
    weights: Weights | None = None,
    *,
    truncation_rtol: float | None = None,
    antithetic: bool = False,
    block: int | None = None,
    batch: int = 32,
) -> Estimator:
    """Semivalue by permutation sampling with importance weights (optionally truncated).

    Args:
      weights: the semivalue (default `weights.shapley()`).
      truncation_rtol: truncate a permutation once a prefix scores within this fraction of
        `|U(N)|` (see the module docstring: biased, bias per permutation at most
        `truncation_rtol * |U(N)|`); None scores every prefix (unbiased).
      antithetic: draw permutations in pairs (an order and its reverse).
      block: prefixes scored per permutation and utility call (default: enough to fill one
        chunk of the utility, `utility.chunk // live permutations`); it changes no value,
        only the evaluations spent after a truncation point within the last block.
      batch: permutations per update.

    Returns:
      An `Estimator`; its estimate has values, stderr and counts (= permutations), `(n,)`.

    References:
      Ghorbani & Zou, "Data Shapley", ICML 2019 (TMC); Kwon & Zou, "Beta Shapley",
      AISTATS 2022 (weights); Castro et al., "Polynomial calculation of the Shapley value
      based on sampling", 2009 (permutation sampling).
    """
    weights = weights or shapley()
    if truncation_rtol is not None and not truncation_rtol >= 0:
        raise ValuationError(f"truncation_rtol must be >= 0 or None, got {truncation_rtol!r}")
    if block is not None and int(block) < 1:
        raise ValuationError(f"block must be a positive int, got {block!r}")
    multiple = 2 if antithetic else 1
    if batch < 1 or batch % multiple:
        raise ValuationError(f"batch must be a positive multiple of {multiple}, got {batch}")

    def init(n):
        return PermutationState(est.moments(n), np.full(2, np.nan))

    @functools.cache
    def importance(n):
        """`w(k) / p(k)` for prefix sizes `k = 0 .. n-1` (computed once per n, not per update)."""
        return np.exp(weights.log_weight(n) - log_permutation_probability(n))

    def update(state, utility, keys):
        n = state.moments.count.shape[0]
        b = keys.shape[0]
        if antithetic:
            base = permutations(keys[0::2], n)
            orders = np.stack([base, base[:, ::-1]], axis=1).reshape(b, n)
            train_keys = np.repeat(np.asarray(keys[0::2]), 2, axis=0)
        else:
            orders = np.asarray(permutations(keys, n))
            train_keys = np.asarray(keys)
        train_keys = np.asarray(training_keys(train_keys))
        # U(empty) and U(N) are scored once per run, with the first block of prefixes.
        ends = state.ends
        extra = 2 if np.isnan(ends).any() else 0
        evaluations = extra
        rank = np.argsort(orders, axis=1)  # rank[p, i]: position of sample i in order p
        scores = np.full((b, n + 1), np.nan)
        cut = np.full(b, n)  # last position whose marginal counts
        alive = np.ones(b, bool)
        t0 = 0
        while t0 < n and alive.any():
            live = np.flatnonzero(alive)
            room = getattr(utility, "chunk", 8 * n) - extra
            size = int(block or max(1, room // live.size))
            ts = np.arange(t0 + 1, min(t0 + size, n) + 1)
            t0 = ts[-1]
            masks = (rank[live][:, None, :] < ts[None, :, None]).reshape(-1, n)
            keys_ = np.repeat(train_keys[live], len(ts), axis=0)
            if extra:
                masks = np.concatenate([np.zeros((1, n)), np.ones((1, n)), masks])
                keys_ = np.concatenate([np.repeat(train_keys[:1], 2, axis=0), keys_])
            s = _score(utility, masks, keys_)
            if extra:
                ends, s, extra = s[:2], s[2:], 0
            u_empty, u_full = ends
            scores[:, 0] = u_empty
            s = s.reshape(live.size, len(ts))
            scores[live[:, None], ts[None, :]] = s
            evaluations += s.size
            if truncation_rtol is not None:
                hit = np.abs(s - u_full) <= truncation_rtol * abs(u_full)
                done = hit.any(axis=1)
                cut[live[done]] = ts[np.argmax(hit[done], axis=1)]
                alive[live[done]] = False
        positions = np.arange(n + 1)
        scores = np.where(positions > cut[:, None],
                          scores[np.arange(b), cut][:, None], scores)
        by_position = np.diff(scores, axis=1)  # (b, n): marginal at prefix size k = 0..n-1
        marginals = np.take_along_axis(by_position, rank, axis=1)
        observations = marginals * importance(n)[rank]
        return PermutationState(est.update(state.moments, observations), ends), evaluations

    def estimate(state):
        return est.estimate(state.moments)

    params = {"weights": weights.name, **weights.params, "truncation_rtol": truncation_rtol,
              "antithetic": antithetic}
    if weights.name == "shapley":
        name = "permutation_shapley" if truncation_rtol is None else "tmc_shapley"
    else:  # "beta(16, 1)" -> "beta_shapley", "banzhaf" -> "banzhaf_semivalue"
        stem = weights.name.split("(")[0]
        name = "beta_shapley" if stem == "beta" else f"{stem}_semivalue"
    return Estimator(init, update, estimate, name, params, batch, multiple)


def tmc_shapley(*, truncation_rtol: float | None = 0.01, antithetic: bool = False,
                block: int | None = None, batch: int = 32) -> Estimator:
    """Truncated Monte Carlo Data Shapley (Ghorbani & Zou, ICML 2019).

    `permutation_semivalue` with Shapley weights; `truncation_rtol=None` gives plain
    (unbiased) permutation Shapley.

    Example:
      >>> est = tmc_shapley(truncation_rtol=0.05)
      >>> est.name, est.params["truncation_rtol"]
      ('tmc_shapley', 0.05)
    """
    return permutation_semivalue(shapley(), truncation_rtol=truncation_rtol,
                                 antithetic=antithetic, block=block, batch=batch)


def beta_shapley(alpha: float = 16.0, beta_param: float = 1.0, *,
                 truncation_rtol: float | None = None, antithetic: bool = False,
                 block: int | None = None, batch: int = 32) -> Estimator:
    """Beta(alpha, beta) Shapley (Kwon & Zou, AISTATS 2022) by permutation sampling.

    Each marginal at prefix size k is importance-weighted by
    `w_beta(k) * n * C(n-1, k)`; Beta(16, 1) (the default) emphasises small coalitions.
    """
    return permutation_semivalue(beta(alpha, beta_param), truncation_rtol=truncation_rtol,
                                 antithetic=antithetic, block=block, batch=batch)
