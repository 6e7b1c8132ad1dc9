"""learn_values: teacher on a pool, meta-model on the rest, one call."""

import numpy as np
import pandas as pd
import pytest

import valuation as va
from metalearner.features import DEFAULT_GROUPS
from metalearner.pipeline import learn_values
from metalearner.predictor import MetaValuator


@pytest.mark.slow
def test_learn_values_values_the_pool_and_predicts_the_rest(cancer):
    train, valid = cancer
    train, flipped = train.flip_labels(0.1, seed=0)
    meta = MetaValuator(members=4, hidden=(32, 32), steps=400, epochs=8)
    out = learn_values(
        train,
        valid,
        teacher="loo",
        fraction=0.5,
        meta=meta,
        progress=False,
        utility_options={"metric": "neg_log_loss"},
    )
    assert len(out.teacher) + len(out.predicted) == train.n
    assert not set(out.teacher.ids.tolist()) & set(out.predicted.ids.tolist())
    assert list(out.combined.ids) == list(train.ids)
    assert out.combined.extra["valued_by_teacher"] == len(out.teacher)
    # every default group is cross-fitted or out-of-bag, whatever the teacher
    assert out.meta.groups == DEFAULT_GROUPS and "loss" in out.meta.feature_names
    # The teacher's own leave-one-out on the full set is the reference the unseen half is
    # compared with: the predictions must rank it (positively) and flag flipped labels.
    utility = va.make_utility(
        va.logistic_regression(2), train, valid, metric="neg_log_loss"
    )
    scores = utility(np.vstack([np.ones((1, train.n)), 1.0 - np.eye(train.n)]))
    full = pd.Series(scores[0] - scores[1:], index=train.ids)
    rest = out.predicted.ids
    rho = pd.Series(out.predicted.values).corr(
        pd.Series(full[rest].to_numpy()), method="spearman"
    )
    assert rho > 0.5
    noisy = pd.Series(flipped, index=train.ids)[rest].to_numpy()
    lowest = np.argsort(out.predicted.values)[: noisy.sum()]
    assert noisy[lowest].mean() > 3 * noisy.mean()  # far better than flagging at random


def test_fraction_one_needs_amortized_mode(blobs):
    with pytest.raises(va.ValuationError, match="amortized=True"):
        learn_values(*blobs, teacher="loo", fraction=1.0, progress=False)


@pytest.mark.slow
def test_amortized_mode_predicts_every_sample_from_cheap_values_of_all(blobs):
    train, valid = blobs
    meta = MetaValuator(members=2, hidden=(8,), steps=50, folds=2, bags=4, epochs=2)
    out = learn_values(train, valid, teacher="loo", amortized=True, meta=meta,
                       progress=False)
    assert len(out.teacher) == len(out.predicted) == train.n  # fraction defaults to 1
    np.testing.assert_array_equal(out.combined.ids, train.ids)
    np.testing.assert_array_equal(out.combined.values,
                                  out.predicted.align(train.ids).values)
    assert out.combined.extra["amortized"] and out.combined.method == "meta_leave_one_out"
    # the predictions are the meta-model's, not the teacher's values passed through
    assert not np.allclose(out.combined.values, out.teacher.align(train.ids).values)
