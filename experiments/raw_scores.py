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

Low = suspicious, like a value. Each set of refits is one batched `Utility.fit` call.
"""

from __future__ import annotations

import jax
import numpy as np

from metalearner import bootstrap_refits, fold_refits
from valuation import Dataset, Utility
from valuation.evaluate.noisy_labels import knn_label_agreement

__all__ = ["RAW_SCORES", "raw_scores"]

RAW_SCORES = ("knn10_agreement", "oob32_correct", "cv_p_label")


def raw_scores(utility: Utility, new: Dataset, *, key: jax.Array, bags: int = 32,
               folds: int = 5, k: int = 10) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The `RAW_SCORES` of every training row and every new row.

    The refits are the meta-model's own (`metalearner.bootstrap_refits`, `fold_refits`),
    read here as single scores instead of features.

    Args:
      utility: the target model and its training set (`utility.train`, `(n, d)`).
      new: rows the target never trained on, `(m, d)`, labels on the training class list.
      key: seeds the bootstrap draws, the folds and the refits.
      bags, folds, k: refits for the out-of-bag score, folds for p(label), neighbours.

    Returns:
      `{name: (scores of training rows (n,), scores of new rows (m,))}`.
    """
    train = utility.train
    k_bags, k_folds = jax.random.split(key)
    out = {"knn10_agreement": (knn_label_agreement(train.x, train.y, k),
                               knn_label_agreement(new.x, new.y, k,
                                                   reference=(train.x, train.y)))}
    params, bag_in = bootstrap_refits(utility, key=k_bags, bags=bags)
    (_, hit_train), (_, hit_new) = _label_scores(utility, params, train, new)
    out_of_bag = ~bag_in
    out["oob32_correct"] = ((hit_train * out_of_bag).sum(0) / np.maximum(out_of_bag.sum(0), 1),
                            hit_new.mean(0))
    params, fold = fold_refits(utility, key=k_folds, folds=folds)
    (p_train, _), (p_new, _) = _label_scores(utility, params, train, new)
    out["cv_p_label"] = (p_train[fold, np.arange(train.n)], p_new.mean(0))
    return out


def _label_scores(utility: Utility, params, *datasets: Dataset) -> list[tuple[np.ndarray,
                                                                             np.ndarray]]:
    """Per dataset, `(p(label), prediction == label)` under each of the B batched models
    in `params`, each `(B, rows)`."""
    out = []
    for data in datasets:
        probs = np.asarray(utility.predict_proba(params, data.x), np.float64)
        p_label = np.take_along_axis(probs, data.y[None, :, None], axis=-1)[..., 0]
        out.append((p_label, (probs.argmax(-1) == data.y[None, :]).astype(np.float64)))
    return out
