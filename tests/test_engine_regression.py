"""Regression targets through the engine: ridge in closed form, the MLP regressor, metrics."""

import jax
import numpy as np
import optax
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from split_helpers import standardized_split

import valuation as va


@pytest.fixture(scope="module")
def diabetes():
    """scikit-learn's diabetes (442 x 10, real target) split 70/30, features standardised."""
    return standardized_split(va.load_bundled("diabetes"))


def test_regression_dataset_is_a_dataset_without_classes(diabetes):
    train, valid = diabetes
    assert train.task == "regression" and train.n_classes == 0 and train.classes == ()
    assert train.y.dtype == np.float32
    assert "regression" in repr(train)
    np.testing.assert_array_equal(train.labels, train.y)
    assert va.align_classes(train, valid)[1] is valid
    with pytest.raises(va.ValuationError, match="same task"):
        va.align_classes(train, va.make_classification(20, train.d, seed=0))
    with pytest.raises(va.ValuationError, match="no labels to flip"):
        train.flip_labels(0.1, seed=0)
    with pytest.raises(va.ValuationError, match="NaN or infinite"):
        va.regression_dataset(np.zeros((3, 2)), [1.0, np.nan, 2.0])


@pytest.mark.parametrize("metric", ["r2", "neg_mse"])
def test_ridge_matches_sklearn_on_subsets(diabetes, rng, metric):
    train, valid = diabetes
    utility = va.make_utility(va.linear_regression(), train, valid, metric=metric)
    assert utility.solver == "closed_form"
    masks = (rng.random((10, train.n)) < rng.uniform(0.05, 1.0, (10, 1))).astype(np.float32)
    masks[0] = 1.0
    ours, params = utility(masks), utility.fit(masks)
    for i, mask in enumerate(masks):
        keep = mask > 0
        ridge = Ridge(alpha=utility.l2).fit(train.x[keep], train.y[keep])
        pred = ridge.predict(valid.x)
        theirs = (r2_score(valid.y, pred) if metric == "r2"
                  else -mean_squared_error(valid.y, pred))
        assert ours[i] == pytest.approx(theirs, rel=1e-4, abs=1e-4)
        scale = np.abs(ridge.coef_).max()
        np.testing.assert_allclose(params["linear"]["w"][i][:, 0], ridge.coef_, atol=1e-4 * scale)


def test_empty_subset_predicts_the_training_mean(diabetes):
    train, valid = diabetes
    utility = va.make_utility(va.linear_regression(), train, valid)
    assert utility(np.zeros(train.n)) == pytest.approx(
        r2_score(valid.y, np.full(valid.n, train.y.mean())), abs=1e-5)


def test_zero_weight_equals_deleting_the_sample(diabetes):
    train, valid = diabetes
    drop = np.arange(train.n) % 4 == 0
    full = va.make_utility(va.linear_regression(), train, valid)
    smaller = va.make_utility(va.linear_regression(), train.subset(~drop), valid)
    assert full((~drop).astype(np.float32)) == pytest.approx(smaller(np.ones((~drop).sum())),
                                                             rel=1e-5)


def test_gradient_descent_reaches_the_ridge_solution(diabetes):
    train, valid = diabetes
    masks = np.ones((2, train.n), np.float32)
    masks[1, ::3] = 0
    closed = va.make_utility(va.linear_regression(), train, valid)
    gd = va.make_utility(va.linear_regression(), train, valid, solver="gd", steps=3000,
                         optimizer=optax.adam(0.5))
    np.testing.assert_allclose(gd(masks), closed(masks), atol=2e-3)


def test_mlp_regressor_learns(diabetes):
    train, valid = diabetes
    mean, std = train.y.mean(), train.y.std()  # targets on the scale of the initialisation
    train, valid = (d.replace(y=((d.y - mean) / std).astype(np.float32)) for d in diabetes)
    utility = va.make_utility(va.mlp(1, (16,)), train, valid, steps=300,
                              optimizer=optax.adam(0.01))
    assert utility.solver == "warm" and utility.metric_name == "r2"
    assert utility(np.ones(train.n)) > 0.3


def test_metric_must_fit_the_task(diabetes, cancer):
    with pytest.raises(va.ValuationError, match="regression target"):
        va.make_utility(va.linear_regression(), *diabetes, metric="accuracy")
    with pytest.raises(va.ValuationError, match="classification target"):
        va.make_utility(va.logistic_regression(2), *cancer, metric="r2")
    with pytest.raises(va.ValuationError, match="needs class labels"):
        va.make_utility(va.logistic_regression(2), *diabetes)


@pytest.mark.parametrize("method", ["tmc", "banzhaf", "loo", "oob"])
def test_value_families_accept_a_regression_target(diabetes, method):
    train, valid = diabetes
    train = train.subset(np.arange(60))
    stop = {"tmc": va.shapley.max_draws(4), "banzhaf": va.shapley.max_draws(256),
            "oob": va.shapley.max_draws(64)}.get(method)
    result = va.value(train, method=method, valid=valid, stop=stop, progress=False)
    assert result.values.shape == (train.n,) and np.all(np.isfinite(result.values))
    if method == "tmc":  # efficiency: the values share out U(N) - U(empty)
        utility = va.make_utility(va.linear_regression(), train, valid)
        total = utility(np.ones(train.n)) - utility(np.zeros(train.n))
        assert result.values.sum() == pytest.approx(total, abs=0.05 * abs(total) + 1e-3)


def test_predictions_are_jittable_through_the_engine(diabetes):
    train, valid = diabetes
    utility = va.make_utility(va.linear_regression(), train, valid)
    params = utility.fit(np.ones((1, train.n), np.float32))
    pred = jax.jit(utility.predict_proba)(params, valid.x)
    assert pred.shape == (1, valid.n)


@pytest.mark.slow
def test_mlp_regressor_fits_a_curve_that_ridge_cannot(rng):
    """y = x^2 on [-2, 2]: a line explains none of it (R^2 about 0), one hidden layer of 16
    nearly all; the warm solver retrains subsets from the full-data fit."""
    x = rng.uniform(-2, 2, (80, 1))
    y = (x[:, 0] ** 2 - 4 / 3) + 0.05 * rng.normal(size=80)
    train, valid = va.regression_dataset(x[:60], y[:60]), va.regression_dataset(x[60:], y[60:])
    ridge = va.make_utility(va.linear_regression(), train, valid, l2=1e-3)
    net = va.make_utility(va.mlp(1, (16,)), train, valid, l2=1e-3)
    assert net.solver == "warm"
    half = np.ones((2, train.n), np.float32)
    half[1, ::2] = 0.0  # the full set and every other row
    assert np.all(ridge(half) < 0.1)
    assert np.all(net(half) > 0.9), net(half)


def test_reference_points_of_a_regression_target_are_the_mean_predictors_scores(diabetes):
    from valuation.results import reference_point

    y = diabetes[0].y.astype(np.float64)
    sq = (y - y.mean()) ** 2  # squared errors of predicting the training mean
    var = float(np.var(y))
    assert reference_point("data_oob", 0, target_variance=var) == pytest.approx(-sq.mean())
    assert reference_point("dynamics_loss", 0, target_variance=var) == pytest.approx(
        -0.5 * sq.mean())
    assert reference_point("dynamics_el2n", 0, target_variance=var) == pytest.approx(
        -np.sqrt(sq.mean()))
    assert reference_point("tmc_shapley", 0) == 0.0
    assert reference_point("data_oob", 2) == 0.5  # classes: chance accuracy, as before
    with pytest.raises(va.ValuationError, match="pass target_variance"):
        reference_point("data_oob", 0)
