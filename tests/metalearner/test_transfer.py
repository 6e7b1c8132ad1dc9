"""Transfer across tasks: a shared rule on model-agnostic features carries to a new task."""

import jax
import numpy as np
import pandas as pd
import pytest

import valuation as va
from metalearner.transfer import fine_tune, fit_tasks, make_task, predict_ranks

GROUPS = ("model", "gradient", "neighbours")


def spearman(a, b):
    return pd.Series(np.asarray(a)).corr(pd.Series(np.asarray(b)), method="spearman")


@pytest.fixture(scope="module")
def tasks():
    out = []
    # Equal shapes (one compilation of the features); tasks differ in data and separation.
    for i, sep in enumerate([2.0, 1.5, 2.5]):
        data = va.make_classification(160, 4, separation=sep, seed=10 + i)
        train, valid = data.split(0.7, 0.3, seed=i)
        train, _ = train.flip_labels(0.1, seed=i)
        utility = va.make_utility(va.logistic_regression(2), train, valid)
        task = make_task(
            utility, name=f"synthetic{i}", key=jax.random.PRNGKey(i), groups=GROUPS
        )
        f = pd.DataFrame(task.features, columns=task.feature_map.names)
        # One rule for every task, stated on the within-task standardised features.
        truth = np.tanh(f["margin"]) + 0.5 * f["knn_same_label_input"]
        values = va.ValuationResult(
            values=truth.to_numpy(),
            stderr=np.zeros(train.n),
            counts=np.ones(train.n, int),
            ids=train.ids,
            method="rule",
        )
        out.append((task, values))
    return out


def test_zero_shot_transfers_a_shared_rule_and_few_shot_keeps_it(tasks):
    ensemble = fit_tasks(
        tasks[:2], key=jax.random.PRNGKey(0), members=4, hidden=(32, 32), steps=600
    )
    new, truth = tasks[2]
    mean, spread = predict_ranks(ensemble, new)
    assert spearman(mean, truth.values) >= 0.9
    assert mean.shape == spread.shape == (len(truth),) and np.all(spread > 0)
    few = truth[np.arange(20)]
    tuned = fine_tune(ensemble, new, few, key=jax.random.PRNGKey(1), steps=200)
    rest = np.arange(20, len(truth))
    assert spearman(predict_ranks(tuned, new, rest)[0], truth.values[rest]) >= 0.9


def test_label_features_are_refused():
    utility = va.make_utility(
        va.logistic_regression(2),
        *va.make_classification(60, 3, seed=0).split(0.7, 0.3, seed=0),
    )
    with pytest.raises(va.ValuationError, match="model-agnostic"):
        make_task(
            utility, name="x", key=jax.random.PRNGKey(0), groups=("model", "label")
        )
