"""Training on less data: the smallest subset of the training rows that keeps the score.

Where it sits: after valuation. `select(train, valid, values)` turns a `ValuationResult` over
the training set into candidate subsets at a grid of kept fractions, trains every candidate
as one batch through the utility engine (subsets are weight vectors, as in the removal curves
of `evaluate.point_removal`) and keeps the smallest subset whose score on a selection split
stays within `keep` of the full set's, as do all larger subsets of its strategy. Two
strategies build the candidates:

* "top": the highest-valued rows; rows reliably harmful (their whole error bar below the
  method's reference point, `results.categorize` against `results.reference_point`) are
  dropped before any other row, whatever their value.
* "coverage": coverage-centric selection (Zheng et al., "Coverage-centric Coreset Selection
  for High Pruning Rates", ICLR 2023, Algorithm 1), with strata by class as well as by value:
  the rows valued below the reference point go first (the paper's hard cut-off; the reliably
  harmful ones before the others), the rest are split into strata by class and equal-width
  value band, and the budget is shared out over the strata, smallest stratum first, each
  taking at most an equal share of what is left, its highest-valued rows first (the paper
  draws at random within a stratum; the values order the rows of a band, and a harmful row
  that the error bars do not flag sits at the bottom of its band). At high prune rates
  every class and every band of values keeps rows, where "top" keeps only the easiest ones.

The choice is confirmed on rows that took no part in it: the validation data is split
(stratified, seeded) into a selection part and a confirmation part, or a separate `confirm`
data set is the confirmation part. Every candidate that holds each training class (plus the
full set) is trained in one batch (`Utility.fit`, in chunks of the utility's size) and each
model is scored on both parts; only the selection scores choose. The chosen subset's
confirmation score gets a bootstrap standard error, and its gap to the full set's a paired one.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .data import Dataset, align_classes
from .errors import ValuationError
from .evaluate.point_removal import order_masks
from .models import Model, linear_regression, logistic_regression
from .results import ValuationResult, Z, categorize, reference_point
from .utility import Utility, make_utility, padded_batches, per_model_keys

__all__ = ["FRACTIONS", "STRATEGIES", "Selection", "candidate_masks", "coverage_masks",
           "keep_order", "select"]

FRACTIONS = tuple(round(0.05 * i, 2) for i in range(2, 20))  # kept shares 0.10 ... 0.95
STRATEGIES = ("top", "coverage")


def keep_order(values: np.ndarray, stderr: np.ndarray, *, reference: float,
               z: float = Z) -> np.ndarray:
    """Training positions in keeping order, shape `(n,)`: the rows not reliably harmful by
    descending value, then the reliably harmful ones by descending value (ties by position).

    Keeping the first `m` of this order drops the harmful rows before any other.
    """
    values = np.asarray(values, float)
    harmful = categorize(values, stderr, z=z, reference=reference) == "harmful"
    return np.lexsort((np.arange(values.size), -values, harmful))


def coverage_masks(values: np.ndarray, stderr: np.ndarray, y: np.ndarray,
                   fractions: Sequence[float], *, reference: float, z: float = Z,
                   bands: int = 10) -> np.ndarray:
    """Coverage-centric subsets (Zheng et al. 2023, Algorithm 1; strata by class x value band).

    The paper's hard cut-off is the reference point: rows valued below it (harmful-looking)
    are pruned before the others. For a budget of `m = round(f * n)` rows: with `m` at least
    the rows at or above the reference, keep them all and fill up in `keep_order` (the
    reliably harmful rows last); otherwise split those rows into strata by class and by
    `bands` equal-width bands of their values, visit the strata from the smallest up (ties by
    class, then band) and give each `min(size, remaining // strata left)` rows, its
    highest-valued first (the paper draws them at random), so the budget is spent exactly.

    Args:
      values, stderr: `(n,)` values and their standard errors.
      y: `(n,)` integer class codes of the rows.
      fractions: kept shares of the rows.
      reference: the value separating harmful from useful rows (`results.reference_point`).
      z: standard errors on each side of a value for "reliably harmful".
      bands: equal-width value bands per class.

    Returns:
      0/1 weights `(len(fractions), n)`, float32.
    """
    values, y = np.asarray(values, float), np.asarray(y)
    n = values.size
    order = keep_order(values, stderr, reference=reference, z=z)
    pool = np.flatnonzero(values >= reference)  # the cut-off: every row valued below it
    masks = order_masks(order, fractions, remove=False)  # budgets at or above the pool
    if pool.size == 0:
        return masks
    low, high = values[pool].min(), values[pool].max()
    band = np.zeros(pool.size, np.int64)
    if high > low:
        band = np.minimum(((values[pool] - low) / (high - low) * bands).astype(np.int64),
                          bands - 1)
    stratum = y[pool].astype(np.int64) * bands + band
    labels, sizes = np.unique(stratum, return_counts=True)
    visit = labels[np.lexsort((labels, sizes))]
    members = [pool[stratum == s] for s in visit]
    members = [rows[np.argsort(-values[rows], kind="stable")] for rows in members]
    for j, f in enumerate(fractions):
        budget = round(f * n)
        if budget >= pool.size:
            continue
        masks[j] = 0.0
        for left, rows in zip(range(len(members), 0, -1), members):
            take = min(rows.size, budget // left)
            masks[j, rows[:take]] = 1.0
            budget -= take
    return masks


def candidate_masks(values: ValuationResult, train: Dataset, fractions: Sequence[float], *,
                    strategy: str, z: float = Z, bands: int = 10) -> np.ndarray:
    """The candidate subsets of one strategy, 0/1 weights `(len(fractions), train.n)`.

    `values` must already be aligned with `train`'s rows (`ValuationResult.align`).
    """
    reference = reference_point(values.method, max(train.n_classes, 1))
    if strategy == "top":
        order = keep_order(values.values, values.stderr, reference=reference, z=z)
        return order_masks(order, fractions, remove=False)
    if strategy == "coverage":
        y = train.y if train.classes else np.zeros(train.n, np.int64)
        return coverage_masks(values.values, values.stderr, y, fractions,
                              reference=reference, z=z, bands=bands)
    raise ValuationError(f"unknown strategy {strategy!r}; choose from {list(STRATEGIES)}")


@dataclasses.dataclass(frozen=True, eq=False)
class Selection:
    """The chosen subset, the curve it was chosen from and its confirmation.

    Attributes:
      kept: ids of the kept training rows, in the training set's order.
      fraction: the kept share of the training rows (1.0: no smaller subset qualified).
      strategy: the strategy of the chosen subset ("full" when none qualified).
      curve: one row per candidate: strategy, fraction, n_kept, eligible (every training
        class present), selection (score on the selection split), confirmation (score on the
        confirmation split, never used to choose); the full set is the row "full", 1.0.
      selection_score, confirmation: the chosen subset's scores on each split.
      confirmation_stderr: bootstrap standard error of `confirmation` (resampled
        confirmation rows).
      full_selection, full_confirmation: the full training set's scores.
      gap_stderr: paired bootstrap standard error of `confirmation - full_confirmation`.
      keep: the tolerance, in metric units (0.005 = half a point of accuracy).
      metric: the utility's metric.
      method: the values' method.
      selection_ids, confirmation_ids: ids of the rows of each split (disjoint when the
        confirmation split comes from `valid`).
      seed: seed of the split and the bootstrap.
    """

    kept: np.ndarray
    fraction: float
    strategy: str
    curve: pd.DataFrame
    selection_score: float
    confirmation: float
    confirmation_stderr: float
    full_selection: float
    full_confirmation: float
    gap_stderr: float
    keep: float
    metric: str
    method: str
    selection_ids: np.ndarray
    confirmation_ids: np.ndarray
    seed: int

    def __repr__(self) -> str:
        return (f"Selection(kept {self.kept.size} rows ({100 * self.fraction:.0f} %, "
                f"{self.strategy}), confirmation {self.metric} {self.confirmation:.4f} "
                f"+/- {self.confirmation_stderr:.4f} vs full {self.full_confirmation:.4f})")

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (everything but the ids and the curve)."""
        return {"n_kept": int(self.kept.size), "fraction": self.fraction,
                "strategy": self.strategy, "selection_score": self.selection_score,
                "confirmation": self.confirmation,
                "confirmation_stderr": self.confirmation_stderr,
                "full_selection": self.full_selection,
                "full_confirmation": self.full_confirmation,
                "confirmation_gap": self.confirmation - self.full_confirmation,
                "gap_stderr": self.gap_stderr, "keep": self.keep, "metric": self.metric,
                "method": self.method, "n_selection": int(self.selection_ids.size),
                "n_confirmation": int(self.confirmation_ids.size), "seed": self.seed}


def _aligned(values: ValuationResult, train: Dataset) -> ValuationResult:
    """`values` in `train`'s row order; ids on one side only -> one error naming a few."""
    if not isinstance(values, ValuationResult):
        raise ValuationError(f"values must be a ValuationResult, got {type(values).__name__}")
    have, want = pd.Index(values.ids), pd.Index(train.ids)
    for extra, where in ((have.difference(want), "are not training rows"),
                         (want.difference(have), "have no value")):
        if extra.size:
            raise ValuationError(f"{extra.size} ids {where} (e.g. {list(extra[:3])}); pass "
                                 "the values computed for these training rows")
    if not np.all(np.isfinite(values.values)):
        raise ValuationError("some values are NaN or infinite; value every training row")
    return values.align(train.ids)


def _predictions(utility: Utility, masks: np.ndarray, xs: Sequence[np.ndarray], *,
                 key: jax.Array) -> list[jax.Array]:
    """Train one model per mask with the utility's solver (in chunks of `utility.chunk`, the
    last one padded, so one compile) and predict each of `xs`: per entry `(B, m, k)` class
    probabilities, or `(B, m)` predictions for a regression target."""
    keys = per_model_keys(key, masks.shape[0])
    parts: list[list[jax.Array]] = [[] for _ in xs]
    for w, k, rows in padded_batches(masks, keys, min(utility.chunk, masks.shape[0])):
        params = utility.fit(w, key=k)
        for part, x in zip(parts, xs):
            part.append(utility.predict_proba(params, x)[:rows])
    return [jnp.concatenate(part) for part in parts]


def _eligible(masks: np.ndarray, train: Dataset) -> np.ndarray:
    """`(B,)` whether each subset keeps every class of the training set (for a regression
    target: any row at all); the others are neither trained nor chosen."""
    if not train.classes:
        return masks.sum(axis=1) > 0
    onehot = np.eye(train.n_classes, dtype=np.float32)[train.y]
    return ((masks @ onehot > 0) | (onehot.sum(axis=0) == 0)).all(axis=1)


def _score(utility: Utility, masks: np.ndarray, eligible: np.ndarray, confirm: Dataset, *,
           key: jax.Array) -> tuple[np.ndarray, np.ndarray, jax.Array]:
    """Train the eligible subsets as one batch; score each model on the utility's validation
    rows and on `confirm`. Returns both `(B,)` score vectors (NaN where not eligible) and the
    confirmation predictions of the trained models."""
    probs = _predictions(utility, masks[eligible], [utility.valid.x, confirm.x], key=key)
    scores = np.full((2, masks.shape[0]), np.nan)
    for row, (p, data) in enumerate(zip(probs, (utility.valid, confirm))):
        scores[row, eligible] = np.asarray(
            jax.vmap(utility.metric, in_axes=(0, None))(p, jnp.asarray(data.y)))
    return scores[0], scores[1], probs[1]


@functools.partial(jax.jit, static_argnames=("metric", "draws"))
def _bootstrap(probs: jax.Array, y: jax.Array, key: jax.Array, *, metric,
               draws: int) -> jax.Array:
    """Scores of two models on `draws` bootstrap resamples of the rows, `(draws, 2)`.

    probs: `(2, m, k)` class probabilities (or `(2, m)` predictions) of the two models; both
    are scored on the same resampled rows, so their difference is paired.
    """
    m = y.shape[0]

    def score(i):  # one resample of the m rows, drawn inside the loop: memory O(m)
        idx = jax.random.randint(jax.random.fold_in(key, i), (m,), 0, m)
        return jax.vmap(metric, in_axes=(0, None))(probs[:, idx], y[idx])

    return jax.lax.map(score, jnp.arange(draws))


def select(
    train: Dataset,
    valid: Dataset,
    values: ValuationResult,
    *,
    model: Model | None = None,
    keep: float = 0.005,
    confirm: Dataset | None = None,
    selection_share: float = 0.5,
    fractions: Sequence[float] = FRACTIONS,
    strategies: Sequence[str] = STRATEGIES,
    bands: int = 10,
    z: float = Z,
    seed: int = 0,
    draws: int = 1000,
    utility_options: dict | None = None,
) -> Selection:
    """The smallest subset of `train` whose target model keeps its held-out score.

    Args:
      train: the valued training set.
      valid: validation data: all of it selects when `confirm` is given, otherwise a
        stratified `selection_share` of it selects and the rest confirms.
      values: values of the training rows (matched by id, any order).
      model: the target model (default logistic regression over the data's classes).
      keep: tolerance in metric units: the chosen subset scores at least the full set's
        selection score minus `keep` (0.005 = half a point of accuracy).
      confirm: a separate confirmation data set (then `valid` only selects).
      selection_share: share of `valid` used to select when `confirm` is None.
      fractions: kept shares of the training rows tried, each in (0, 1).
      strategies: candidate builders, names in `STRATEGIES`.
      bands: value bands per class of the "coverage" strategy.
      z: standard errors on each side of a value for "reliably harmful".
      seed: seed of the split and the bootstrap.
      draws: bootstrap resamples of the confirmation rows.
      utility_options: keyword arguments of `make_utility` (metric, l2, solver, ...).

    Returns:
      A `Selection`. A candidate is within tolerance when it holds every training class and
      its selection score is at least the full set's minus `keep`; it qualifies when every
      larger candidate of its strategy is within tolerance too (a lone lucky point on a
      small selection split does not count). The smallest qualifying fraction wins (its
      best-scoring strategy); none qualifying keeps the full set.

    Example:
      >>> import valuation as va
      >>> data = va.make_classification(120, 3, separation=3.0, seed=0)
      >>> train, valid = data.split(0.5, 0.5, seed=0)
      >>> values = va.value(train, method="knn", valid=valid, progress=False)
      >>> chosen = va.select(train, valid, values, keep=0.05, draws=50)
      >>> chosen.fraction <= 1.0, set(chosen.kept) <= set(train.ids)
      (True, True)
    """
    for name, data in (("train", train), ("valid", valid), ("confirm", confirm)):
        if data is not None and not isinstance(data, Dataset):
            raise ValuationError(f"{name} must be a Dataset, got {type(data).__name__}")
    if not (isinstance(keep, (int, float)) and keep >= 0):
        raise ValuationError(f"keep must be a non-negative tolerance, got {keep!r}")
    fr = np.asarray(fractions, float)
    if fr.size == 0 or np.any((fr <= 0) | (fr >= 1)):
        raise ValuationError(f"fractions {tuple(fractions)} must lie strictly between 0 and 1")
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown or not strategies:
        raise ValuationError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    values = _aligned(values, train)
    if confirm is None:
        if not 0.0 < selection_share < 1.0:
            raise ValuationError(f"selection_share {selection_share} must lie strictly "
                                 "between 0 and 1")
        chooser, confirm = valid.split(selection_share, 1.0 - selection_share, seed=seed)
    else:
        chooser = valid
    confirm = confirm.select_features(train.feature_names, what="the confirmation set")
    chooser = chooser.select_features(train.feature_names, what="the validation set")
    if model is None:
        model = (linear_regression() if train.task == "regression"
                 else logistic_regression(train.n_classes))
    utility = make_utility(model, train, chooser, **(utility_options or {}))
    confirm = align_classes(train, confirm)[1]

    fractions = sorted({float(f) for f in fr})
    blocks = [candidate_masks(values, train, fractions, strategy=s, z=z,
                              bands=bands) for s in strategies]
    masks = np.concatenate([*blocks, np.ones((1, train.n), np.float32)])
    labels = [(s, f) for s in strategies for f in fractions] + [("full", 1.0)]
    eligible = _eligible(masks, train)
    key_fit, key_boot = jax.random.split(jax.random.PRNGKey(seed))
    chosen_scores, confirm_scores, confirm_probs = _score(utility, masks, eligible, confirm,
                                                          key=key_fit)
    curve = pd.DataFrame({"strategy": [s for s, _ in labels],
                          "fraction": [f for _, f in labels],
                          "n_kept": masks.sum(axis=1).astype(np.int64), "eligible": eligible,
                          "selection": chosen_scores, "confirmation": confirm_scores})
    full = len(labels) - 1
    ok = eligible & (chosen_scores >= chosen_scores[full] - keep)
    # A candidate qualifies when it and every larger one of its strategy are within `keep`:
    # on a small selection split a lone lucky point would otherwise win.
    per_strategy = ok[:full].reshape(len(strategies), len(fractions))
    ok[:full] = np.flip(np.logical_and.accumulate(np.flip(per_strategy, 1), 1), 1).ravel()
    # The smallest qualifying subset; among equal sizes the best selection score.
    best = int(np.lexsort((np.arange(len(labels)), -np.nan_to_num(chosen_scores, nan=-np.inf),
                           masks.sum(axis=1), ~ok))[0])
    at = np.cumsum(eligible) - 1  # row of each eligible candidate among the trained ones
    boot = np.asarray(_bootstrap(confirm_probs[at[[best, full]]], jnp.asarray(confirm.y),
                                 key_boot, metric=utility.metric, draws=draws), float)
    return Selection(
        kept=train.ids[masks[best] > 0], fraction=labels[best][1], strategy=labels[best][0],
        curve=curve, selection_score=float(chosen_scores[best]),
        confirmation=float(confirm_scores[best]),
        confirmation_stderr=float(boot[:, 0].std(ddof=1)),
        full_selection=float(chosen_scores[full]),
        full_confirmation=float(confirm_scores[full]),
        gap_stderr=float((boot[:, 0] - boot[:, 1]).std(ddof=1)),
        keep=float(keep), metric=utility.metric_name, method=values.method,
        selection_ids=chooser.ids, confirmation_ids=confirm.ids, seed=seed)
