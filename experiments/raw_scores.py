"""Raw single-feature baselines for training rows and new rows: what learning must beat.

Where it sits: the cheap columns of the meta-learner benchmark (`bench_metalearner.py`). Each
score reads one signal a user can compute without any valuation, the same way for a training
row (held out from what scores it) and for a new row:

* 10-NN label agreement (`noisy_labels.knn_label_agreement`): share of the 10 nearest
  training rows that carry the row's label (a training row is left out of its own
  neighbourhood).
* 32-bag out-of-bag correctness: share of bootstrap refits of the target whose prediction is
  the row's label, over the refits that did not train on it (all of them for a new row); the
  signal of Data-OOB (Kwon & Zou, ICML 2023) at a small fixed budget.
* cross-validated p(label): the target refitted without each of 5 stratified folds; a
  training row reads the refit that did not see its fold, a new row the mean over refits.

Low = suspicious, like a value. All refits run as one batched `Utility.fit` call each.
"""

from __future__ import annotations

import jax
import numpy as np

from valuation import Dataset, Utility

from .noisy_labels import knn_label_agreement

__all__ = ["RAW_SCORES", "raw_scores"]

RAW_SCORES = ("knn10_agreement", "oob32_correct", "cv_p_label")


def _bootstrap_weights(key: jax.Array, n: int, bags: int) -> np.ndarray:
    """`(bags, n)` bootstrap counts: row i drawn `w[b, i]` times in bag b."""
    draws = np.asarray(jax.random.randint(key, (bags, n), 0, n))
    return np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float32)


def _stratified_folds(key: jax.Array, y: np.ndarray, folds: int) -> np.ndarray:
    """`(n,)` fold of each row: rows of each class dealt round-robin after a keyed shuffle."""
    order = np.asarray(jax.random.permutation(key, len(y)))
    by_class = order[np.argsort(y[order], kind="stable")]
    fold = np.empty(len(y), np.int64)
    fold[by_class] = np.arange(len(y)) % folds
    return fold


def raw_scores(utility: Utility, new: Dataset, *, key: jax.Array, bags: int = 32,
               folds: int = 5, k: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The `RAW_SCORES` of every training row and every new row.

    Args:
      utility: the target model and its training set (`utility.train`, `(n, d)`).
      new: rows the target never trained on, `(m, d)`, labels on the training class list.
      key: seeds the bootstrap draws, the folds and the refits.
      bags, folds, k: refits for the out-of-bag score, folds for p(label), neighbours.

    Returns:
      `{name: (scores of training rows (n,), scores of new rows (m,))}`.
    """
    train = utility.train
    k_bags, k_folds, k_fit = jax.random.split(key, 3)
    out = {"knn10_agreement": (knn_label_agreement(train.x, train.y, k),
                               knn_label_agreement(new.x, new.y, k,
                                                   reference=(train.x, train.y)))}
    weights = _bootstrap_weights(k_bags, train.n, bags)
    (p_train, hit_train), (_, hit_new) = _refit_probs(utility, weights, k_fit, train, new)
    out_of_bag = weights == 0
    out["oob32_correct"] = ((hit_train * out_of_bag).sum(0) / np.maximum(out_of_bag.sum(0), 1),
                            hit_new.mean(0))
    fold = _stratified_folds(k_folds, train.y, folds)
    held = (fold[None, :] != np.arange(folds)[:, None]).astype(np.float32)
    (p_train, _), (p_new, _) = _refit_probs(utility, held, k_fit, train, new)
    out["cv_p_label"] = (p_train[fold, np.arange(train.n)], p_new.mean(0))
    return out


def _refit_probs(utility: Utility, weights: np.ndarray, key: jax.Array,
                 *datasets: Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """Refit the target on each row of `weights` `(B, n)` (one batched call); per dataset,
    `(p(label), prediction == label)`, each `(B, rows)`."""
    params = utility.fit(weights, key=key)
    out = []
    for data in datasets:
        probs = np.asarray(utility.predict_proba(params, data.x), np.float64)
        p_label = np.take_along_axis(probs, data.y[None, :, None], axis=-1)[..., 0]
        out.append((p_label, (probs.argmax(-1) == data.y[None, :]).astype(np.float64)))
    return out
