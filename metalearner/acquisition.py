"""Value-driven active learning: which rows of an unlabelled pool to label next.

Where it sits: on top of a fitted `MetaValuator` (its `predict_unlabelled`: each row's value
once labelled, in expectation over the target model's label distribution) and
`valuation.acquire` (the ranking: value mixed with the target's uncertainty, rows predicted
harmful last, a diversity guard for the batch). The harmful / useful reference is the
teacher's (`valuation.results.reference_point`: chance for Data-OOB, 0 otherwise).

Example:
  >>> import valuation as va, numpy as np
  >>> train, valid = va.make_classification(120, 3, seed=0).split(0.7, 0.3, seed=0)
  >>> utility = va.make_utility(va.logistic_regression(2), train, valid)
  >>> values = va.ValuationResult(values=train.x[:, 0], stderr=np.zeros(train.n),
  ...                             counts=np.ones(train.n, int), ids=train.ids, method="toy")
  >>> meta = MetaValuator(members=2, steps=100, k=5).fit(utility, values[:60])
  >>> plan = acquire_batch(meta, train.subset(np.arange(60, 84)), batch=5)
  >>> int(plan.acquisition.chosen.sum()), len(plan.predicted)
  (5, 24)
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from valuation import Dataset, ValuationResult
from valuation.acquisition import DEFAULT_WEIGHT, Acquisition, acquire
from valuation.results import Z, reference_point

from .predictor import MetaValuator

__all__ = ["Labelling", "acquire_batch"]


class Labelling(NamedTuple):
    """What `acquire_batch` returns.

    Attributes:
      predicted: the rows' predicted values once labelled, in the pool's order
        (`MetaValuator.predict_unlabelled`).
      acquisition: the ranking and the batch, positions into the pool (`valuation.acquire`).
      reference: the value separating harmful from useful rows for the teacher.
    """

    predicted: ValuationResult
    acquisition: Acquisition
    reference: float


def acquire_batch(
    meta: MetaValuator,
    pool: Dataset | pd.DataFrame,
    *,
    batch: int,
    weight: float = DEFAULT_WEIGHT,
    kind: str = "entropy",
    z: float = Z,
    radius: float | None = None,
    id_conflict: str = "error",
) -> Labelling:
    """Rank the rows of an unlabelled `pool` for labelling and pick a batch of `batch`.

    Args:
      meta: a fitted `MetaValuator` of the target model.
      pool: the unlabelled rows: a `Dataset` (labels ignored) or a DataFrame of the training
        set's feature columns indexed by id (`MetaValuator.predict_unlabelled`).
      batch, weight, kind, z, radius: as for `valuation.acquire`.
      id_conflict: as for `MetaValuator.predict_unlabelled`.

    Returns:
      A `Labelling`; `pool` row `acquisition.order[0]` is the first to label.
    """
    predicted = meta.predict_unlabelled(pool, id_conflict=id_conflict)
    data = meta.as_unlabelled(pool)
    reference = reference_point(meta.teacher, len(meta.classes))
    ranking = acquire(predicted.values, predicted.stderr, meta.label_probabilities(data),
                      data.x, batch=batch, weight=weight, kind=kind, reference=reference,
                      z=z, radius=radius)
    return Labelling(predicted, ranking, reference)
