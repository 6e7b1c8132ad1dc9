"""Feature map: the out-of-bag ("bagging") columns use exactly the refits that did not train
on a sample, a new sample gets the same kind of view from all refits, and the default groups
follow the teacher."""

import jax
import numpy as np
import pytest

import valuation as va
from metalearner.features import (
    DEFAULT_GROUPS,
    GROUPS,
    bootstrap_refits,
    default_groups,
    features_for_utility,
)
from metalearner.predictor import MetaValuator

MODEL_AND_BAGGING = ("model", "bagging")


@pytest.fixture(scope="module")
def utility(blobs):
    train, valid = blobs
    train, _ = train.flip_labels(0.1, seed=0)
    return va.make_utility(va.logistic_regression(2), train, valid)


def _manual(utility, bagged, models, x, y):
    """Mean loss, p(label) and hit rate of the chosen refits, by hand."""
    p = np.asarray(utility.predict_proba(bagged, x))[models]  # (b, m, k)
    p_label = p[:, np.arange(len(y)), y]
    hit = p.argmax(-1) == y
    return np.stack([-np.log(p_label).mean(0), p_label.mean(0), hit.mean(0)], 1)


def test_bootstrap_refits_are_seeded_and_record_membership(utility):
    key = jax.random.PRNGKey(3)
    a, in_a = bootstrap_refits(utility, key=key, bags=8)
    b, in_b = bootstrap_refits(utility, key=key, bags=8)
    assert in_a.shape == (8, utility.n) and np.array_equal(in_a, in_b)
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree_util.tree_leaves(a),
                                                    jax.tree_util.tree_leaves(b)))
    # a bootstrap of n draws misses about n / e samples
    assert 0.25 < 1 - in_a.mean() < 0.45
    with pytest.raises(va.ValuationError, match="at least 2"):
        bootstrap_refits(utility, key=key, bags=1)


def test_bagging_columns_are_out_of_bag_for_pool_samples_and_all_bag_for_new(utility):
    fmap = features_for_utility(utility, key=jax.random.PRNGKey(0), groups=MODEL_AND_BAGGING, bags=16)
    cols = [fmap.names.index(c) for c in ("oob_loss", "oob_p_label", "oob_correct")]
    bag_in = fmap.arrays["bag_in"]
    train = utility.train
    pool = train.subset(np.arange(20))
    got = fmap(pool)[:, cols]
    for i in range(20):
        models = ~bag_in[:, i]
        assert models.any()
        want = _manual(utility, fmap.bagged, models, train.x[i : i + 1], train.y[i : i + 1])
        np.testing.assert_allclose(got[i], want[0], rtol=2e-4, atol=1e-5)
    # the same rows under new ids are scored by every refit
    fresh = pool.replace(ids=np.asarray([f"new{i}" for i in range(20)], dtype=object))
    want = _manual(utility, fmap.bagged, np.ones(16, bool), pool.x, pool.y)
    np.testing.assert_allclose(fmap(fresh)[:, cols], want, rtol=2e-4, atol=1e-5)


def test_default_groups_follow_the_teacher(utility):
    """Out-of-sample teachers get only the shift-free groups, the others every group."""
    assert default_groups("tmc_shapley") == GROUPS
    assert default_groups("data_oob") == DEFAULT_GROUPS
    assert "model" not in DEFAULT_GROUPS and "dynamics" not in DEFAULT_GROUPS
    v = utility.train.x[:, 0]
    values = va.ValuationResult(values=v, stderr=0 * v, counts=np.ones(len(v), int),
                                ids=utility.train.ids, method="data_oob")
    fitted = MetaValuator(members=2, steps=20, bags=4).fit(utility, values[:60])
    assert fitted.groups == DEFAULT_GROUPS
    assert "loss" not in fitted.feature_names and "oob_p_label" in fitted.feature_names
