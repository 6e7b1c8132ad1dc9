"""Permutation-sampling semivalues: (truncated) Monte Carlo Shapley and Beta Shapley.

Where it sits: an `Estimator` for `runner.run`. Each draw is a uniform random order of the
training samples; the utility of every prefix of the order is computed by the engine in
batches of masks, and the marginal contribution `U(prefix + i) - U(prefix)` of each sample,
times the importance weight `w(k) / p(k)` of its prefix size k (semivalue weight over the
permutation sampler's probability, both in log space), is folded into running moments. For
Shapley the importance weight is exactly 1.

Truncation (TMC-Shapley, Ghorbani & Zou, "Data Shapley", ICML 2019, Algorithm 1 and its
"performance tolerance"). With `truncation_rtol=r`, the tolerance is
`r * |U(N) - U(empty)|`, where U(N) is the mean score of `full_fits` models trained on all
samples (their training keys `fold_in(training key of draw 0, i)`; one deterministic solver
gives them all the same score). A permutation is truncated at position t once `patience`
consecutive prefixes that trained a model (held two classes; shorter prefixes are scored as a
constant predictor and do not count), the t-th the last of them, all score within the
tolerance of U(N);
the marginals of positions after t are set to 0 (their prefixes are treated as worth
`U(prefix_t)`). Requiring several prefixes in a row keeps one prefix that happens to score
like U(N) (a flat metric such as accuracy on imbalanced classes) from truncating a
permutation near its start and zeroing most values. This is *biased*: it drops the remaining
marginals, which sum to `U(N) - U(prefix_t)` (at most the tolerance per permutation when
U(N) is the full model's score), so the estimates' sum is off from `U(N) - U(empty)` by at
most that. The truncation positions (n: not truncated) of every permutation, in draw order,
are kept in the state and reported by `Estimator.extra`. Prefixes are scored in blocks of
`block` positions per permutation, and a permutation's later blocks are skipped once it is
truncated; the truncation point (and so the values) does not depend on `block`.

Evaluations: U(empty) (and, with truncation, the `full_fits` full models) once per run, plus
each permutation's prefixes up to its truncation point. An evaluation budget
(`runner.Limit`) is spent in draw order: the permutations that fit are folded in, and the next
one, which the budget cannot finish, is dropped (a partial permutation would bias the values)
with its evaluations up to the budget counted, so a run spends exactly its budget. Models a
block trains past a truncation point or past the budget are padding for static shapes: not
counted. (Continuing such a run with a larger budget scores the dropped permutation again.)

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
from ..runner import Estimator, draw_keys
from .samplers import log_permutation_probability, permutations, training_keys
from .weights import Weights, beta, shapley

__all__ = ["beta_shapley", "permutation_semivalue", "tmc_shapley"]


class PermutationState(NamedTuple):
    """Running moments of the weighted marginals; `[U(empty), U(N)]` (NaN until the first
    update; U(N), the mean of the full fits, stays NaN without truncation); the truncation
    position of every permutation folded in, in draw order (`(draws,)` int64, n: none)."""

    moments: est.Moments
    ends: np.ndarray
    cuts: np.ndarray


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


def _truncation_points(within: np.ndarray, run: np.ndarray, ts: np.ndarray,
                       patience: int) -> tuple[np.ndarray, np.ndarray]:
    """Where `patience` consecutive prefixes first lie within the tolerance.

    Args:
      within: `(p, m)` bool: prefix `ts[j]` of permutation p scores within the tolerance.
      run: `(p,)` consecutive prefixes within the tolerance just before `ts[0]`.
      ts: `(m,)` consecutive prefix sizes (positions).
      patience: prefixes in a row that truncate.

    Returns:
      `(cut, run)`: `(p,)` truncation positions (0 where none in `ts`) and the run lengths
      at `ts[-1]`.
    """
    m = len(ts)
    last_miss = np.maximum.accumulate(np.where(within, -1, np.arange(m)), axis=1)
    runs = np.where(last_miss >= 0, np.arange(m) - last_miss, run[:, None] + np.arange(m) + 1)
    hit = runs >= patience
    cut = np.where(hit.any(axis=1), ts[hit.argmax(axis=1)], 0)
    return cut, runs[:, -1]


def _first_trained_prefix(utility, orders: np.ndarray) -> np.ndarray:
    """Per order `(b, n)`, the first prefix size whose subset holds two classes, `(b,)`
    (n + 1 if none; 1 for a game without classes). Shorter prefixes train no model (the
    engine scores them as a constant predictor, `utility.py`), so they never count towards
    truncation: a constant predictor that scores like U(N) (accuracy on imbalanced classes)
    says nothing about whether the samples still to come matter."""
    train = getattr(utility, "train", None)
    if train is None or getattr(train, "task", "classification") != "classification":
        return np.ones(orders.shape[0], np.int64)
    labels = np.asarray(train.y)[orders]
    mixed = labels != labels[:, :1]
    return np.where(mixed.any(axis=1), mixed.argmax(axis=1) + 1, orders.shape[1] + 1)


def _truncation_record(state: PermutationState, rtol: float) -> dict:
    """`{"truncation": ...}` for the result's `extra`: every permutation's truncation position
    (in draw order; n = not truncated) and a summary."""
    n, cuts = state.moments.count.shape[0], state.cuts
    truncated = cuts[cuts < n]
    u_empty, u_full = (float(v) for v in state.ends)
    summary = {"permutations": int(cuts.size), "truncated": int(truncated.size),
               "median_position": float(np.median(cuts)) if cuts.size else None,
               "min_position": int(cuts.min()) if cuts.size else None,
               "share_of_marginals_zeroed": float(1 - cuts.mean() / n) if cuts.size else 0.0,
               "u_empty": u_empty, "u_full": u_full,
               "tolerance": rtol * abs(u_full - u_empty)}
    return {"truncation": {**summary, "positions": cuts.tolist()}}


def permutation_semivalue(
    weights: Weights | None = None,
    *,
    truncation_rtol: float | None = None,
    truncation_patience: int = 5,
    truncation_fits: int = 3,
    antithetic: bool = False,
    block: int | None = None,
    batch: int = 32,
) -> Estimator:
    """Semivalue by permutation sampling with importance weights (optionally truncated).

    Args:
      weights: the semivalue (default `weights.shapley()`).
      truncation_rtol: truncate a permutation once `truncation_patience` consecutive
        prefixes score within `truncation_rtol * |U(N) - U(empty)|` of U(N) (see the module
        docstring: biased); None scores every prefix (unbiased).
      truncation_patience: consecutive prefixes within the tolerance that truncate
        (Ghorbani & Zou use 5).
      truncation_fits: full-data models whose mean score is U(N) for truncation.
      antithetic: draw permutations in pairs (an order and its reverse).
      block: prefixes scored per permutation and utility call (default: enough to fill one
        chunk of the utility, `utility.chunk // live permutations`); it changes no value,
        only the models trained past a truncation point within the last block.
      batch: permutations per update.

    Returns:
      An `Estimator`; its estimate has values, stderr and counts (= permutations), `(n,)`;
      with truncation its `extra` gives the truncation positions.

    References:
      Ghorbani & Zou, "Data Shapley", ICML 2019 (TMC); Kwon & Zou, "Beta Shapley",
      AISTATS 2022 (weights); Castro et al., "Polynomial calculation of the Shapley value
      based on sampling", 2009 (permutation sampling).
    """
    weights = weights or shapley()
    truncating = truncation_rtol is not None
    if truncating and not truncation_rtol >= 0:
        raise ValuationError(f"truncation_rtol must be >= 0 or None, got {truncation_rtol!r}")
    for what, value in (("truncation_patience", truncation_patience),
                        ("truncation_fits", truncation_fits), ("block", block)):
        if value is not None and not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValuationError(f"{what} must be a positive int, got {value!r}")
    multiple = 2 if antithetic else 1
    if batch < 1 or batch % multiple:
        raise ValuationError(f"batch must be a positive multiple of {multiple}, got {batch}")
    name = _name(weights, truncating)

    def init(n):
        return PermutationState(est.moments(n), np.full(2, np.nan), np.zeros(0, np.int64))

    @functools.cache
    def importance(n):
        """`w(k) / p(k)` for prefix sizes `k = 0 .. n-1` (computed once per n, not per update)."""
        return np.exp(weights.log_weight(n) - log_permutation_probability(n))

    def draws(keys, n):
        """Orders `(b, n)` and training keys `(b, 2)` of the draws of `keys`."""
        b = keys.shape[0]
        if antithetic:
            base = np.asarray(permutations(keys[0::2], n))
            orders = np.stack([base, base[:, ::-1]], axis=1).reshape(b, n)
            train_keys = np.repeat(np.asarray(keys[0::2]), 2, axis=0)
        else:
            orders, train_keys = np.asarray(permutations(keys, n)), np.asarray(keys)
        return orders, np.asarray(training_keys(train_keys))

    def update(state, utility, keys, limit):
        n = state.moments.count.shape[0]
        b = keys.shape[0]
        take = int(min(b, limit.draws))  # the rows past it are padding
        orders, train_keys = draws(keys, n)
        ends = state.ends.copy()
        # U(empty) and the full fits are scored once per run, with the first block.
        head_masks = head_keys = None
        if np.isnan(ends[0]):
            fits = truncation_fits if truncating else 0
            head_masks = np.concatenate([np.zeros((1, n)), np.ones((fits, n))])
            head_keys = np.concatenate([train_keys[:1],
                                        np.asarray(draw_keys(train_keys[0], 0, fits))[:fits]])
        spent = 0 if head_masks is None else len(head_masks)
        if spent > limit.evaluations:
            raise ValuationError(f"a budget of {limit.evaluations} evaluations does not cover "
                                 f"the {spent} {name} spends on U(empty) and U(N) before its "
                                 "first permutation; raise the budget")
        allowance = limit.evaluations - spent
        rank = np.argsort(orders, axis=1)  # rank[p, i]: position of sample i in order p
        scores = np.full((b, n + 1), np.nan)
        cut = np.full(b, n)  # last position whose marginal counts
        cost = np.zeros(b)  # prefixes scored up to the cut (a lower bound while alive)
        run = np.zeros(b, np.int64)  # prefixes in a row within the tolerance
        alive = np.arange(b) < take
        trained_from = _first_trained_prefix(utility, orders)
        t0 = 0
        while t0 < n and alive.any():
            live = np.flatnonzero(alive)
            room = getattr(utility, "chunk", 8 * n) - spent * (head_masks is not None)
            size = int(block or max(1, room // live.size))
            ts = np.arange(t0 + 1, min(t0 + size, n) + 1)
            t0 = ts[-1]
            masks = (rank[live][:, None, :] < ts[None, :, None]).reshape(-1, n)
            keys_ = np.repeat(train_keys[live], len(ts), axis=0)
            if head_masks is not None:
                masks = np.concatenate([head_masks, masks])
                keys_ = np.concatenate([head_keys, keys_])
            s = _score(utility, masks, keys_)
            if head_masks is not None:
                ends = np.array([s[0], s[1:spent].mean() if spent > 1 else np.nan])
                s, head_masks = s[spent:], None
            s = s.reshape(live.size, len(ts))
            scores[live[:, None], ts[None, :]] = s
            cost[live] = t0
            if truncating:
                within = np.abs(s - ends[1]) <= truncation_rtol * abs(ends[1] - ends[0])
                within &= ts[None, :] >= trained_from[live, None]
                found, run[live] = _truncation_points(within, run[live], ts,
                                                      truncation_patience)
                done = live[found > 0]
                cut[done] = cost[done] = found[found > 0]
                alive[done] = False
            # An evaluation budget is spent in draw order: drop the permutations it cannot
            # finish (the first of them is cut short, the others not started).
            over = np.cumsum(cost[:take]) > allowance
            alive[np.argmax(over) if over.any() else b:] = False
        over = np.cumsum(cost[:take]) > allowance
        made = int(np.argmax(over)) if over.any() else take
        used = spent + (allowance if made < take else int(cost[:take].sum()))
        scores, cut, rank = scores[:made], cut[:made], rank[:made]
        scores[:, 0] = ends[0]
        positions = np.arange(n + 1)
        scores = np.where(positions > cut[:, None],
                          scores[np.arange(made), cut][:, None], scores)
        by_position = np.diff(scores, axis=1)  # (made, n): marginal at prefix size k = 0..n-1
        marginals = np.take_along_axis(by_position, rank, axis=1)
        observations = marginals * importance(n)[rank]
        state = PermutationState(est.update(state.moments, observations), ends,
                                 np.concatenate([state.cuts, cut]))
        return state, int(used), made

    def estimate(state):
        return est.estimate(state.moments)

    def extra(state):
        return _truncation_record(state, truncation_rtol) if truncating else {}

    params = {"weights": weights.name, **weights.params, "truncation_rtol": truncation_rtol,
              "antithetic": antithetic}
    if truncating:
        params.update(truncation_patience=int(truncation_patience),
                      truncation_fits=int(truncation_fits))
    return Estimator(init, update, estimate, name, params, batch, multiple, extra)


def _name(weights: Weights, truncating: bool) -> str:
    if weights.name == "shapley":
        return "tmc_shapley" if truncating else "permutation_shapley"
    stem = weights.name.split("(")[0]  # "beta(16, 1)" -> "beta_shapley", "banzhaf" -> ...
    return "beta_shapley" if stem == "beta" else f"{stem}_semivalue"


def tmc_shapley(*, truncation_rtol: float | None = 0.01, truncation_patience: int = 5,
                truncation_fits: int = 3, antithetic: bool = False, block: int | None = None,
                batch: int = 32) -> Estimator:
    """Truncated Monte Carlo Data Shapley (Ghorbani & Zou, ICML 2019).

    `permutation_semivalue` with Shapley weights; `truncation_rtol=None` gives plain
    (unbiased) permutation Shapley.

    Example:
      >>> est = tmc_shapley(truncation_rtol=0.05)
      >>> est.name, est.params["truncation_rtol"]
      ('tmc_shapley', 0.05)
    """
    return permutation_semivalue(shapley(), truncation_rtol=truncation_rtol,
                                 truncation_patience=truncation_patience,
                                 truncation_fits=truncation_fits, antithetic=antithetic,
                                 block=block, batch=batch)


def beta_shapley(alpha: float = 16.0, beta_param: float = 1.0, *,
                 truncation_rtol: float | None = None, truncation_patience: int = 5,
                 truncation_fits: int = 3, antithetic: bool = False,
                 block: int | None = None, batch: int = 32) -> Estimator:
    """Beta(alpha, beta) Shapley (Kwon & Zou, AISTATS 2022) by permutation sampling.

    Each marginal at prefix size k is importance-weighted by
    `w_beta(k) * n * C(n-1, k)`; Beta(16, 1) (the default) emphasises small coalitions.
    """
    return permutation_semivalue(beta(alpha, beta_param), truncation_rtol=truncation_rtol,
                                 truncation_patience=truncation_patience,
                                 truncation_fits=truncation_fits, antithetic=antithetic,
                                 block=block, batch=batch)
