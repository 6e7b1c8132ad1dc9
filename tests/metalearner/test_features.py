"""Feature map: every model-reading feature is out of sample (cross-fitted fold models,
out-of-bag refits), checked by hand; rows are training rows by content, not id; columns are
read by name."""

import jax
import numpy as np
import pytest

import valuation as va
from metalearner.features import (
    DEFAULT_GROUPS,
    GROUPS,
    bootstrap_refits,
    features_for_utility,
    row_hash,
)

MODEL_AND_BAGGING = ("model", "bagging")


@pytest.fixture(scope="module")
def utility(blobs):
    train, valid = blobs
    train, _ = train.flip_labels(0.1, seed=0)
    return va.make_utility(va.logistic_regression(2), train, valid)


@pytest.fixture(scope="module")
def fmap(utility):
    return features_for_utility(utility, key=jax.random.PRNGKey(0), groups=MODEL_AND_BAGGING,
                                bags=16, folds=4)


def _manual(utility, bagged, models, x, y):
    """Mean loss, p(label) and hit rate of the chosen refits, by hand."""
    p = np.asarray(utility.predict_proba(bagged, x))[models]  # (b, m, k)
    p_label = p[:, np.arange(len(y)), y]
    hit = p.argmax(-1) == y
    return np.stack([-np.log(p_label).mean(0), p_label.mean(0), hit.mean(0)], 1)


def _fresh(data, prefix="new"):
    return data.replace(ids=np.asarray([f"{prefix}{i}" for i in range(data.n)], dtype=object))


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


def test_folds_are_stratified_and_fold_models_never_saw_their_fold(utility, fmap):
    fold = fmap.arrays["ref_fold"]
    y = utility.train.y
    for c in range(2):
        sizes = np.bincount(fold[y == c], minlength=4)
        assert sizes.max() - sizes.min() <= 1  # round-robin within each class
    # Fold model j is the target trained without fold j: refit it by hand.
    for j in range(4):
        by_hand = utility.fit((fold != j).astype(np.float32)[None])
        got = jax.tree_util.tree_map(lambda a, j=j: a[j : j + 1], fmap.folds)
        for u, v in zip(jax.tree_util.tree_leaves(by_hand), jax.tree_util.tree_leaves(got)):
            np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


def test_model_columns_read_the_own_fold_for_training_rows_and_all_folds_for_new(utility,
                                                                                fmap):
    loss = fmap.names.index("loss")
    train = utility.train
    p = np.asarray(utility.predict_proba(fmap.folds, train.x))  # (K, n, k)
    nll = -np.log(p[:, np.arange(train.n), train.y])  # (K, n)
    own = nll[fmap.arrays["ref_fold"], np.arange(train.n)]
    np.testing.assert_allclose(fmap(train)[:, loss], own, rtol=2e-4, atol=1e-5)
    valid = utility.valid
    pv = np.asarray(utility.predict_proba(fmap.folds, valid.x))
    mean_nll = -np.log(pv[:, np.arange(valid.n), valid.y]).mean(0)
    np.testing.assert_allclose(fmap(_fresh(valid))[:, loss], mean_nll, rtol=2e-4, atol=1e-5)


def test_bagging_columns_are_out_of_bag_for_training_rows_and_all_bag_for_new(utility, fmap):
    cols = [fmap.names.index(c) for c in ("oob_loss", "oob_p_label", "oob_correct")]
    bag_in = fmap.arrays["bag_in"]
    train = utility.train
    got = fmap(train.subset(np.arange(20)))[:, cols]
    for i in range(20):
        models = ~bag_in[:, i]
        assert models.any()
        want = _manual(utility, fmap.bagged, models, train.x[i : i + 1], train.y[i : i + 1])
        np.testing.assert_allclose(got[i], want[0], rtol=2e-4, atol=1e-5)
    valid = utility.valid
    want = _manual(utility, fmap.bagged, np.ones(16, bool), valid.x, valid.y)
    np.testing.assert_allclose(fmap(_fresh(valid))[:, cols], want, rtol=2e-4, atol=1e-5)


def test_a_training_row_is_recognised_by_content_whatever_its_id(utility, fmap):
    """A cross-fitted feature of a row is the same whether the row comes as a training row
    or as a new row with a fresh id; a changed row is new."""
    part = utility.train.subset(np.arange(30))
    np.testing.assert_array_equal(fmap(part), fmap(_fresh(part)))
    assert (fmap.membership(_fresh(part)) == np.arange(30)).all()
    moved = _fresh(part.replace(x=part.x + np.float32(1e-3)))
    assert (fmap.membership(moved) == -1).all()


def test_an_id_naming_another_rows_content_is_an_error_or_a_new_row(utility, fmap):
    valid = utility.valid.subset(np.arange(12))
    clash = valid.replace(ids=utility.train.ids[:12])  # training ids, other content
    with pytest.raises(va.ValuationError, match=r"12 rows carry the id of a training row"):
        fmap(clash)
    np.testing.assert_array_equal(fmap(clash, id_conflict="new"), fmap(_fresh(valid)))
    with pytest.raises(va.ValuationError, match="id_conflict"):
        fmap(clash, id_conflict="ignore")


def test_columns_are_read_by_name(utility, fmap):
    part = utility.train.subset(np.arange(10))
    names = part.feature_names
    order = [3, 0, 4, 1, 2]
    shuffled = part.replace(x=part.x[:, order], feature_names=tuple(names[j] for j in order))
    np.testing.assert_array_equal(fmap(shuffled), fmap(part))
    renamed = part.replace(feature_names=names[:-1] + ("other",))
    with pytest.raises(va.ValuationError, match=rf"missing columns \['{names[-1]}'\]"):
        fmap(renamed)
    wider = va.load(np.c_[part.x, part.x[:, :1]], part.labels, classes=part.classes)
    with pytest.raises(va.ValuationError, match="6 unnamed feature columns"):
        fmap(wider)


def test_row_hash_sees_every_bit_and_the_label():
    x = np.zeros((3, 2), np.float32)
    x[1, 1] = np.nextafter(np.float32(0), np.float32(1))
    h = row_hash(x, [0, 0, 1])
    assert len(set(h.tolist())) == 3
    assert row_hash(-x[:1], [0])[0] == h[0]  # -0.0 is 0.0


@pytest.mark.slow
def test_dynamics_columns_are_cross_fitted(utility):
    fmap = features_for_utility(utility, key=jax.random.PRNGKey(1), groups=("dynamics",),
                                folds=3, epochs=4)
    part = utility.train.subset(np.arange(15))
    np.testing.assert_array_equal(fmap(part), fmap(_fresh(part)))
    assert fmap(_fresh(utility.valid)).shape == (utility.valid.n, 9)


def test_default_groups_leave_out_only_dynamics():
    assert set(GROUPS) - set(DEFAULT_GROUPS) == {"dynamics"}


def test_fold_models_and_bootstrap_refits_come_from_one_batched_fit(utility, monkeypatch):
    """One `Utility.fit` call (one compiled program) trains both; what each model is
    trained on is checked by the two tests above."""
    calls = []
    fit = va.Utility.fit
    monkeypatch.setattr(va.Utility, "fit", lambda self, w, **kw: calls.append(
        np.shape(w)) or fit(self, w, **kw))
    fm = features_for_utility(utility, key=jax.random.PRNGKey(3), groups=MODEL_AND_BAGGING,
                              bags=6, folds=3)
    assert calls == [(3 + 6, utility.n)]
    assert jax.tree_util.tree_leaves(fm.folds)[0].shape[0] == 3
    assert jax.tree_util.tree_leaves(fm.bagged)[0].shape[0] == 6
    assert fm.arrays["bag_in"].shape == (6, utility.n)


def test_a_linear_targets_centroids_without_the_gradient_group_match_the_compiled_summary(
        utility):
    """Without "gradient", a linear target's class centroids are computed on the host (no
    program); the compiled summary (run when "gradient" is asked for) is the reference."""
    groups = ("neighbours", "label")
    key = jax.random.PRNGKey(5)
    host = features_for_utility(utility, key=key, groups=groups, folds=3)
    compiled = features_for_utility(utility, key=key, groups=("gradient", *groups), folds=3)
    assert "valid_grad" not in host.arrays and "valid_grad" in compiled.arrays
    assert "ref_h" not in host.arrays and "ref_h" not in compiled.arrays
    np.testing.assert_allclose(host.arrays["centroids"], compiled.arrays["centroids"],
                               rtol=1e-6, atol=1e-6)
    rows = _fresh(utility.valid)
    np.testing.assert_allclose(host(utility.train), compiled(utility.train)[:, 2:],
                               rtol=1e-5, atol=1e-5)  # the 2 gradient columns come first
    np.testing.assert_allclose(host(rows), compiled(rows)[:, 2:], rtol=1e-5, atol=1e-5)
