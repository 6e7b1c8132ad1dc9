"""MetaValuator: real teachers on held-out rows and an exact small game, persistence, seeds,
uncertainty far from the pool, and bad input."""

import json

import jax
import numpy as np
import pandas as pd
import pytest

import valuation as va
from metalearner.features import GROUPS
from metalearner.model import fit_ensemble, predict_members
from metalearner.predictor import MetaValuator

# The reference values are leave-one-out on log-loss; these tests read every group.
FAST = {"members": 4, "hidden": (32, 32), "steps": 400, "epochs": 8, "groups": GROUPS}


def spearman(a, b):
    return pd.Series(np.asarray(a)).corr(pd.Series(np.asarray(b)), method="spearman")


def leave_one_out(utility):
    """U(N) - U(N minus i): the reference values these tests learn (exact, deterministic)."""
    n = utility.n
    scores = utility(np.vstack([np.ones((1, n)), 1.0 - np.eye(n)]))
    return va.ValuationResult(
        values=scores[0] - scores[1:],
        stderr=np.zeros(n),
        counts=np.ones(n, int),
        ids=utility.train.ids,
        method="loo",
    )


@pytest.fixture(scope="module")
def task(cancer):
    train, valid = cancer
    train, flipped = train.flip_labels(0.1, seed=0)
    utility = va.make_utility(
        va.logistic_regression(2), train, valid, metric="neg_log_loss"
    )
    return utility, leave_one_out(utility), flipped


@pytest.fixture(scope="module")
def fitted(task):
    utility, values, _ = task
    half = utility.n // 2
    return MetaValuator(**FAST, seed=0).fit(utility, values[:half])


def test_ensemble_recovers_a_known_function():
    """Held-out Spearman >= 0.95 for a smooth nonlinear function of the inputs."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 5)).astype(np.float32)
    f = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] ** 2
    fit = fit_ensemble(
        x[:400],
        (f[:400] - f.mean()) / f.std(),
        key=jax.random.PRNGKey(0),
        members=4,
        steps=800,
    )
    pred = np.asarray(predict_members(fit.params, x[400:])).mean(0)
    assert spearman(pred, f[400:]) >= 0.95


def test_fits_its_pool_and_beats_the_label_only_baseline(task, fitted):
    utility, values, _ = task
    half = utility.n // 2
    pool = fitted.predict(utility.train.subset(np.arange(half)))
    assert spearman(pool.values, values.values[:half]) > 0.7
    rest = np.arange(half, utility.n)
    pred = fitted.predict(utility.train.subset(rest))
    # Baseline: each unseen sample gets the pool's mean value of its label.
    y = utility.train.y
    per_label = pd.Series(values.values[:half]).groupby(y[:half]).mean()
    baseline = per_label.reindex(y[rest]).to_numpy()
    truth = values.values[rest]
    assert spearman(pred.values, truth) > spearman(baseline, truth) + 0.2
    assert pred.method == "meta_loo" and list(pred.ids) == list(utility.train.ids[rest])
    assert np.all(pred.stderr > 0) and np.all(pred.counts == FAST["members"])


def test_save_load_predicts_identically(task, fitted, tmp_path):
    utility, _, _ = task
    path = tmp_path / "meta.npz"
    fitted.save(path)
    loaded = MetaValuator.load(path, va.logistic_regression(2))
    samples = utility.train.subset(np.arange(utility.n // 2, utility.n))
    a, b = fitted.predict(samples), loaded.predict(samples)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.stderr, b.stderr)
    assert (
        loaded.config() == fitted.config()
        and loaded.feature_names == fitted.feature_names
    )


def test_load_refuses_another_target_model_or_feature_set(fitted, tmp_path):
    path = tmp_path / "meta.npz"
    fitted.save(path)
    with pytest.raises(va.ValuationError, match="target model"):
        MetaValuator.load(path, va.mlp(2, hidden=(8,)))
    with pytest.raises(va.ValuationError, match="feature mismatch"):
        MetaValuator.load(
            path, va.logistic_regression(2), feature_names=fitted.feature_names[:-1]
        )
    meta = json.loads((tmp_path / "meta.npz.json").read_text())
    meta["feature_names"][0] = "something_else"
    (tmp_path / "meta.npz.json").write_text(json.dumps(meta))
    with pytest.raises(va.ValuationError, match="feature mismatch"):
        MetaValuator.load(path, va.logistic_regression(2))


def test_same_seed_same_meta_model_other_seed_differs(task, fitted):
    utility, values, _ = task
    half = utility.n // 2
    again = MetaValuator(**FAST, seed=0).fit(utility, values[:half])
    other = MetaValuator(**FAST, seed=1).fit(utility, values[:half])
    same = jax.tree_util.tree_map(
        np.array_equal, again.state.ensemble.params, fitted.state.ensemble.params
    )
    assert all(jax.tree_util.tree_leaves(same))
    w0, w1 = (
        fitted.state.ensemble.params["out"]["w"],
        other.state.ensemble.params["out"]["w"],
    )
    assert not np.array_equal(w0, w1)


def test_spread_is_larger_far_from_the_pool(task, fitted):
    utility, values, _ = task
    near = utility.train.subset(np.arange(utility.n // 2, utility.n))
    far = near.replace(x=near.x * 6.0, ids=np.array([f"far{i}" for i in range(near.n)]))
    far_pred = fitted.predict(far)
    assert np.median(far_pred.stderr) > 3 * np.median(fitted.predict(near).stderr)
    # Extrapolated values are clipped to the range the pool was given (its spread is not).
    pool = values.values[: utility.n // 2]
    assert pool.min() <= far_pred.values.min() and far_pred.values.max() <= pool.max()
    assert (far_pred.values == pool.min()).any() or (far_pred.values == pool.max()).any()


def test_bad_input_raises_clear_errors(task, fitted):
    utility, values, _ = task
    train = utility.train
    with pytest.raises(va.ValuationError, match="feature columns"):
        fitted.predict(
            va.load(train.x[:5, :-1], train.labels[:5], classes=train.classes)
        )
    strange = va.load(
        train.x[:5], np.array(["benign", "zebra", "malignant", "benign", "x"])
    )
    with pytest.raises(va.ValuationError, match="not classes of the task"):
        fitted.predict(strange)
    with pytest.raises(va.ValuationError, match="not fitted"):
        MetaValuator().predict(train)
    with pytest.raises(va.ValuationError, match="too few"):
        MetaValuator(**FAST).fit(utility, values[:5])
    stranger = va.ValuationResult(
        values=np.zeros(12),
        stderr=np.zeros(12),
        counts=np.ones(12, int),
        ids=np.arange(1000, 1012),
        method="x",
    )
    with pytest.raises(va.ValuationError, match="not in the utility's training set"):
        MetaValuator(**FAST).fit(utility, stranger)
    with pytest.raises(va.ValuationError, match="targets"):
        MetaValuator(targets="quantiles")


def test_labels_in_the_users_vocabulary_are_recoded(task, fitted):
    """Samples whose class list is a reordering of the task's get the same predictions."""
    utility, _, _ = task
    part = utility.train.subset(np.arange(20))
    swapped = va.load(part.x, part.labels, classes=tuple(reversed(part.classes)))
    swapped = swapped.replace(ids=part.ids)
    np.testing.assert_array_equal(
        fitted.predict(part).values, fitted.predict(swapped).values
    )
