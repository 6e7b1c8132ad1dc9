"""Which unlabelled rows to label next: value ranks mixed with uncertainty, harmful rows last,
and a diversity guard for batches.

Where it sits: after a value predictor for rows without labels (e.g.
`metalearner.MetaValuator.predict_unlabelled`) and the target model's label distribution for
those rows. `acquire` only ranks; it trains nothing, so the same inputs give the same order.

The ranking (one score per row, higher = label sooner):

* score = (1 - weight) * q(value) + weight * q(uncertainty), where q is a row's rank quantile
  in the pool (average ranks for ties, in (0, 1]): a rank mix, so neither signal's units
  matter. `weight=0` ranks by predicted value alone, `weight=1` is uncertainty sampling
  (Lewis & Gale, SIGIR 1994; entropy or margin, Settles, "Active Learning Literature
  Survey", 2009).
* Rows predicted harmful (`value + z * stderr < reference`, as `results.categorize`) come
  after every other row, whatever their score: value-aware acquisition asks for them last
  (pre-filtering the pool by predicted value: Ghorbani, Zou & Esteva, "Data Shapley
  Valuation for Efficient Batch Active Learning", 2021).
* Diversity guard (batches): the batch is filled greedily in score order, skipping a row
  within `radius` of a row already in the batch (Euclidean, in the pool's standardized
  feature space); when no row is left outside every radius the guard gives way and the best
  remaining row is taken. The default radius is the median distance of a pool row to its
  nearest neighbour in that space.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ValuationError
from .results import Z, categorize

__all__ = ["DEFAULT_WEIGHT", "UNCERTAINTIES", "Acquisition", "acquire", "diversity_radius",
           "uncertainty"]

UNCERTAINTIES = ("entropy", "margin")
# Share of the uncertainty rank in the score. Measured (experiments/bench_acquire.py, README
# "Labelling less data", one seed): against 0.5, 0.8 had the higher mean test accuracy over
# the rounds on 6 of 8 task/pool pairs (not on synthetic_1k's clean pool, which
# synthetic_1k_cyclic's clean pool repeats); a large value share prefers rows the target is
# already sure of.
DEFAULT_WEIGHT = 0.8
_ROWS = 512  # query rows per block of the nearest-neighbour search


class Acquisition(NamedTuple):
    """What `acquire` returns; every array is indexed by pool position.

    Attributes:
      order: `(n,)` positions in acquisition order: the batch in the order it was picked,
        then the other rows by score, rows predicted harmful last.
      chosen: `(n,)` whether the row is in the batch.
      score: `(n,)` the rank mix in (0, 1], higher = label sooner.
      uncertainty: `(n,)` the target model's uncertainty (`uncertainty`).
      harmful: `(n,)` whether the row is predicted harmful.
      radius: the diversity guard's radius in standardized feature units (0: no guard).
    """

    order: np.ndarray
    chosen: np.ndarray
    score: np.ndarray
    uncertainty: np.ndarray
    harmful: np.ndarray
    radius: float


def uncertainty(probs: np.ndarray, *, kind: str = "entropy") -> np.ndarray:
    """The target model's uncertainty about each row's label, higher = less sure.

    Args:
      probs: `(n, k)` label distributions (rows sum to 1).
      kind: "entropy" (`-sum_c p_c log p_c`, nats) or "margin" (`1 - (p_(1) - p_(2))`, one
        minus the gap between the two likeliest labels).

    Returns:
      `(n,)` float64.
    """
    if kind not in UNCERTAINTIES:
        raise ValuationError(f"uncertainty {kind!r} is unknown; choose one of {UNCERTAINTIES}")
    p = np.asarray(probs, np.float64)
    if kind == "entropy":
        return -(p * np.log(np.clip(p, 1e-300, None))).sum(1)
    top = np.sort(p, axis=1)[:, ::-1]
    return 1.0 - (top[:, 0] - top[:, 1])


def diversity_radius(x: np.ndarray) -> float:
    """The median distance of a row to its nearest other row, in `x`'s standardized space
    (each column scaled to zero mean and unit variance over the rows)."""
    xs = _standardized(x).astype(np.float64)  # float64: near-duplicate rows stay apart
    n = xs.shape[0]
    if n < 2:
        return 0.0
    sq = (xs * xs).sum(1)
    nearest = []
    for start in range(0, n, _ROWS):  # (_ROWS, n) distances at a time: bounded memory
        q = xs[start : start + _ROWS]
        d2 = sq[start : start + _ROWS, None] + sq[None, :] - 2.0 * q @ xs.T
        d2[np.arange(len(q)), np.arange(start, start + len(q))] = np.inf
        nearest.append(np.sqrt(np.maximum(d2.min(1), 0.0)))
    return float(np.median(np.concatenate(nearest)))


def acquire(
    values: np.ndarray,
    stderr: np.ndarray,
    probs: np.ndarray,
    x: np.ndarray,
    *,
    batch: int,
    weight: float = DEFAULT_WEIGHT,
    kind: str = "entropy",
    reference: float = 0.0,
    z: float = Z,
    radius: float | None = None,
) -> Acquisition:
    """Rank an unlabelled pool for labelling and pick a batch (module docstring).

    Args:
      values, stderr: `(n,)` each row's predicted value once labelled and its standard
        error (e.g. `MetaValuator.predict_unlabelled`).
      probs: `(n, k)` the target model's label distribution of each row.
      x: `(n, d)` the rows' features (the diversity guard's space, standardized here).
      batch: rows to pick (at most n).
      weight: share of the uncertainty rank in the score, in [0, 1].
      kind: the uncertainty, "entropy" or "margin".
      reference: the value separating harmful from useful rows (`results.reference_point`).
      z: standard errors on each side of a value for the harmful call.
      radius: the diversity guard's radius in standardized units; default
        `diversity_radius(x)`; 0 turns the guard off.

    Returns:
      An `Acquisition`.

    Example:
      >>> import numpy as np
      >>> v = np.array([1.0, -1.0, 0.5, 0.2]); se = np.full(4, 0.1)
      >>> p = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.99, 0.01]])
      >>> x = np.arange(8.0).reshape(4, 2)
      >>> a = acquire(v, se, p, x, batch=2, weight=0.5, radius=0)
      >>> a.order.tolist(), a.chosen.tolist()
      ([0, 2, 3, 1], [True, False, True, False])
    """
    values = np.asarray(values, np.float64)
    stderr = np.asarray(stderr, np.float64)
    probs = np.asarray(probs, np.float64)
    x = np.asarray(x, np.float32)
    n = values.shape[0]
    if stderr.shape != (n,) or probs.ndim != 2 or probs.shape[0] != n or x.ndim != 2 \
            or x.shape[0] != n:
        raise ValuationError(
            f"values {values.shape}, stderr {stderr.shape}, probs {probs.shape} and x "
            f"{x.shape} must describe the same rows: (n,), (n,), (n, k), (n, d)"
        )
    if not 0 < batch <= n:
        raise ValuationError(f"batch={batch} must lie between 1 and the pool's {n} rows")
    if not 0.0 <= weight <= 1.0:
        raise ValuationError(f"weight={weight} must lie in [0, 1]")
    if not (np.isfinite(values).all() and np.isfinite(stderr).all()
            and np.isfinite(probs).all() and np.isfinite(x).all()):
        raise ValuationError("values, stderr, probs or features hold NaN or infinite "
                             "entries; drop those rows")
    unsure = uncertainty(probs, kind=kind)
    score = (1.0 - weight) * _quantile(values) + weight * _quantile(unsure)
    harmful = categorize(values, stderr, z=z, reference=reference) == "harmful"
    ranked = np.lexsort((np.arange(n), -score, harmful))  # harmful last, then by score
    radius = diversity_radius(x) if radius is None else float(radius)
    picked = np.asarray(_greedy(jnp.asarray(_standardized(x)), jnp.asarray(ranked),
                                jnp.asarray(harmful), radius, batch=int(batch)))
    chosen = np.zeros(n, bool)
    chosen[picked] = True
    order = np.concatenate([picked, ranked[~chosen[ranked]]])
    return Acquisition(order, chosen, score, unsure, harmful, radius)


def _quantile(a: np.ndarray) -> np.ndarray:
    """Average rank of each entry divided by n, in (0, 1]."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse] / len(a)


def _standardized(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    std = x.std(0)
    return (x - x.mean(0)) / np.where(std > 1e-8, std, 1.0)


@functools.partial(jax.jit, static_argnames=("batch",))
def _greedy(xs, ranked, harmful, radius, *, batch):
    """Positions of the batch, in pick order: each step takes the first row of `ranked`
    that is not chosen, preferring (in this order) useful-or-neutral rows outside every
    chosen row's radius, such rows inside one, harmful rows outside, harmful rows inside."""
    n = xs.shape[0]
    position = jnp.zeros(n, jnp.int32).at[ranked].set(jnp.arange(n, dtype=jnp.int32))

    def step(i, carry):
        chosen, nearest, picks = carry
        tier = 2 * harmful.astype(jnp.int32) + (nearest < radius).astype(jnp.int32)
        priority = jnp.where(chosen, jnp.iinfo(jnp.int32).max, tier * n + position)
        pick = jnp.argmin(priority)
        dist = jnp.sqrt(jnp.maximum(((xs - xs[pick]) ** 2).sum(1), 0.0))
        return chosen.at[pick].set(True), jnp.minimum(nearest, dist), picks.at[i].set(pick)

    carry = (jnp.zeros(n, bool), jnp.full(n, jnp.inf, xs.dtype), jnp.zeros(batch, jnp.int32))
    return jax.lax.fori_loop(0, batch, step, carry)[2]
