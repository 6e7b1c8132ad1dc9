"""Transfer: one meta-model over several tasks, used on a task with few or no computed values.

Where it sits: beside `MetaValuator`, reusing its parts (`features_for_utility`,
`fit_ensemble`). A *task* is a (data set, target model) pair with a `Utility`. To make tasks
comparable the meta-model reads only model-agnostic features (`features.MODEL_AGNOSTIC`: no
one-hot label, whose width depends on the class list), each standardised within its own task
(statistics from the task's whole training set, which needs no values), and regresses the
values' standardised ranks within the task (a value's scale depends on the task's metric, size
and teacher; its rank does not).

Zero-shot: `predict_ranks(fit_tasks(tasks), features)` on a new task. Few-shot: `fine_tune`
continues training every member from the transferred parameters on a few valued samples of the
new task (with its own early-stopping split).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import pandas as pd

from valuation import Utility, ValuationError, ValuationResult

from .features import MODEL_AGNOSTIC, FeatureMap, column_scale, features_for_utility
from .model import EnsembleFit, fit_ensemble, predict_members

__all__ = [
    "Task",
    "fine_tune",
    "fit_tasks",
    "make_task",
    "predict_ranks",
    "rank_targets",
]


class Task(NamedTuple):
    """A task's standardised model-agnostic features and (optionally) rank targets.

    Attributes:
      name: e.g. "breast_cancer/logistic_regression".
      features: `(n, f)` features of the task's training samples, standardised within the
        task (columns `feature_map.names`).
      ids: `(n,)` their sample ids.
      feature_map: the task's `FeatureMap` (for samples beyond the training set).
      mean, std: `(f,)` the within-task standardisation.
    """

    name: str
    features: np.ndarray
    ids: np.ndarray
    feature_map: FeatureMap
    mean: np.ndarray
    std: np.ndarray


def make_task(
    utility: Utility,
    *,
    name: str,
    key: jax.Array,
    k: int = 10,
    groups: Sequence[str] = MODEL_AGNOSTIC,
    epochs: int = 30,
) -> Task:
    """Features of every training sample of a task, standardised within the task.

    Args:
      utility: the task's target model, training and validation sets.
      name: a label for reports.
      key: seeds the recorded run behind the "dynamics" features.
      k, groups, epochs: see `features.features_for_utility`; `groups` must not contain
        "label" (its width differs between tasks).
    """
    if "label" in groups:
        raise ValuationError(
            "transfer needs model-agnostic features; drop 'label' from "
            "groups (use features.MODEL_AGNOSTIC)"
        )
    fmap = features_for_utility(utility, key=key, k=k, groups=groups, epochs=epochs)
    raw = fmap(utility.train)
    mean, std = column_scale(raw)
    return Task(
        name, (raw - mean) / std, np.asarray(utility.train.ids), fmap, mean, std
    )


def rank_targets(task: Task, values: ValuationResult) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `values`' ids in the task and their standardised ranks `(m,)`.

    Ranks are mid-ranks scaled to `(0, 1)` and standardised (mean 0, std 1 for distinct
    values), so that every task weighs the same per sample.
    """
    position = pd.Index(task.ids).get_indexer(np.asarray(values.ids))
    if (position < 0).any():
        raise ValuationError(
            f"values hold ids that are not training samples of task "
            f"{task.name!r}; value that task's training set"
        )
    q = (pd.Series(values.values).rank(method="average").to_numpy() - 0.5) / len(values)
    return position, (q - 0.5) * np.sqrt(12.0)


def fit_tasks(
    tasks: Sequence[tuple[Task, ValuationResult]],
    *,
    key: jax.Array,
    **ensemble_options: Any,
) -> EnsembleFit:
    """One ensemble over the valued samples of several tasks (pooled, each task's ranks).

    Args:
      tasks: `(task, values)` pairs; the tasks must share their feature names.
      key: the ensemble's key.
      **ensemble_options: see `model.fit_ensemble` (members, hidden, steps, ...).
    """
    names = {t.feature_map.names for t, _ in tasks}
    if len(names) != 1:
        raise ValuationError(
            "the tasks have different feature sets; build them with the "
            "same groups and k"
        )
    xs, ts = [], []
    for task, values in tasks:
        position, t = rank_targets(task, values)
        xs.append(task.features[position])
        ts.append(t)
    return fit_ensemble(
        np.concatenate(xs), np.concatenate(ts), key=key, **ensemble_options
    )


def fine_tune(
    ensemble: EnsembleFit,
    task: Task,
    values: ValuationResult,
    *,
    key: jax.Array,
    **ensemble_options: Any,
) -> EnsembleFit:
    """Continue training a transferred ensemble on a few valued samples of a new task.

    The ensemble's `members` and `hidden` widths are kept; `ensemble_options` set the rest
    (`steps` is the fine-tuning budget, early-stopped on a held-out share of these samples).
    """
    params = ensemble.params
    members = params["out"]["w"].shape[0]
    hidden = tuple(params[f"dense_{i}"]["w"].shape[-1] for i in range(len(params) - 1))
    position, t = rank_targets(task, values)
    return fit_ensemble(
        task.features[position],
        t,
        key=key,
        init_params=params,
        members=members,
        hidden=hidden,
        **ensemble_options,
    )


def predict_ranks(
    ensemble: EnsembleFit, task: Task, positions: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted standardised ranks and the members' spread for a task's training samples.

    Args:
      positions: rows of `task.features` to predict (default all).

    Returns:
      `(mean, spread)`, each `(m,)`, in standardised-rank units.
    """
    x = task.features if positions is None else task.features[np.asarray(positions)]
    z = np.asarray(predict_members(ensemble.params, x), np.float64)
    return z.mean(0), z.std(0, ddof=1)
