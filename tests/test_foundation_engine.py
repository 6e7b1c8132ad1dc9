"""Models, training and the utility engine against scikit-learn and against themselves."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.linear_model import LogisticRegression
from split_helpers import standardized_split

import valuation as va
from valuation.training import fit, fit_logistic_newton, weighted_objective
from valuation.utility import accuracy, neg_log_loss


def _sklearn_accuracy(train, valid, mask=None):
    keep = slice(None) if mask is None else mask > 0
    clf = LogisticRegression(C=1.0, max_iter=5000, tol=1e-8).fit(train.x[keep], train.y[keep])
    return clf.score(valid.x, valid.y), clf


def test_default_solver_matches_sklearn_on_breast_cancer(cancer):
    train, valid = cancer
    utility = va.make_utility(va.logistic_regression(2), train, valid)
    assert utility.solver == "pcg"
    ours = utility(np.ones(train.n))
    theirs, clf = _sklearn_accuracy(train, valid)
    assert abs(ours - theirs) <= 0.01
    params = utility.fit_full()
    # Same objective (C = 1/l2): same minimiser, up to sklearn's solver tolerance.
    np.testing.assert_allclose(params["linear"]["w"][:, 0], clf.coef_[0], atol=2e-3)
    np.testing.assert_allclose(params["linear"]["b"], clf.intercept_, atol=2e-3)


def test_gd_matches_sklearn_on_digits():
    train, valid = standardized_split(va.load_bundled("digits"), fractions=(0.6, 0.4))
    utility = va.make_utility(va.logistic_regression(10), train, valid, solver="gd", steps=200)
    ours = utility(np.ones(train.n))
    theirs, _ = _sklearn_accuracy(train, valid)
    assert abs(ours - theirs) <= 0.01


def test_subset_accuracy_matches_sklearn_on_random_subsets(cancer, rng):
    train, valid = cancer
    utility = va.make_utility(va.logistic_regression(2), train, valid)
    masks = (rng.random((12, train.n)) < 0.5).astype(np.float32)
    ours = utility(masks)
    theirs = [_sklearn_accuracy(train, valid, m)[0] for m in masks]
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.01


def test_newton_reaches_the_minimum_of_the_objective(cancer, rng):
    train, _ = cancer
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    masks = jnp.asarray((rng.random((6, train.n)) < 0.3).astype(np.float32))
    params = fit_logistic_newton(x, y, masks, n_classes=2, l2=1.0, steps=12)
    model = va.logistic_regression(2)
    grad = jax.vmap(jax.grad(lambda p, w: weighted_objective(model, p, x, y, w, 1.0)))(params, masks)
    assert float(jnp.abs(grad["linear"]["w"]).max()) < 1e-4


def test_newton_and_gd_agree_multiclass():
    train, valid = standardized_split(va.load_bundled("wine"))
    newton = va.make_utility(va.logistic_regression(3), train, valid, solver="newton",
                             metric="neg_log_loss")
    gd = va.make_utility(va.logistic_regression(3), train, valid, solver="gd", steps=2000,
                         optimizer=optax.adam(0.02), metric="neg_log_loss")
    masks = np.ones((2, train.n), np.float32)
    masks[1, ::3] = 0
    np.testing.assert_allclose(newton(masks), gd(masks), atol=2e-3)


@pytest.mark.parametrize("solver", ["newton", "gd"])
def test_batched_equals_separate_fits_and_chunking(cancer, rng, solver):
    train, valid = cancer
    utility = va.make_utility(va.logistic_regression(2), train, valid, solver=solver,
                              steps=None if solver == "newton" else 100, metric="neg_log_loss")
    masks = (rng.random((7, train.n)) < 0.6).astype(np.float32)
    batched = utility(masks)
    separate = np.array([utility(m) for m in masks])
    np.testing.assert_allclose(batched, separate, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(utility(masks, chunk=2), utility(masks, chunk=3))
    np.testing.assert_allclose(utility(masks, chunk=2), batched, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", ["newton", "gd"])
def test_zero_weight_equals_deleting_the_sample(cancer, solver):
    train, valid = cancer
    kw = {"solver": solver, "metric": "neg_log_loss",
          "steps": None if solver == "newton" else 100}
    drop = np.arange(train.n) % 5 == 0
    full = va.make_utility(va.logistic_regression(2), train, valid, **kw)
    smaller = va.make_utility(va.logistic_regression(2), train.subset(~drop), valid, **kw)
    np.testing.assert_allclose(full((~drop).astype(np.float32)), smaller(np.ones((~drop).sum())),
                               rtol=1e-5)


def test_mini_batch_order_follows_the_key(blobs):
    train, _ = blobs
    model = va.mlp(2, (8,))
    x, y, w = jnp.asarray(train.x), jnp.asarray(train.y), jnp.ones(train.n)
    run = jax.jit(lambda k: fit(model, x, y, w, key=k, steps=20, batch_size=16,
                                optimizer=optax.sgd(0.1)))
    a, b = run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(1))
    c = run(jax.random.PRNGKey(2))
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert not np.allclose(a["out"]["w"], c["out"]["w"])
    # Same initialisation, different batch order: the orders alone change the result.
    p0 = model.init(jax.random.PRNGKey(0), x)
    d1 = fit(model, x, y, w, key=jax.random.PRNGKey(1), steps=20, batch_size=16,
             optimizer=optax.sgd(0.1), init_params=p0)
    d2 = fit(model, x, y, w, key=jax.random.PRNGKey(2), steps=20, batch_size=16,
             optimizer=optax.sgd(0.1), init_params=p0)
    assert not np.allclose(d1["out"]["w"], d2["out"]["w"])


def test_checkpoints_are_the_trajectory(blobs):
    train, _ = blobs
    model = va.mlp(2, (4,))
    x, y, w = jnp.asarray(train.x), jnp.asarray(train.y), jnp.ones(train.n)
    key = jax.random.PRNGKey(0)
    final, saved = fit(model, x, y, w, key=key, steps=10, save_every=3)
    assert saved["out"]["w"].shape[0] == 3
    at6 = fit(model, x, y, w, key=key, steps=6)
    np.testing.assert_allclose(saved["out"]["w"][1], at6["out"]["w"], rtol=1e-6)
    np.testing.assert_allclose(final["out"]["w"], fit(model, x, y, w, key=key, steps=10)["out"]["w"],
                               rtol=1e-6)


def test_degenerate_subsets_follow_the_documented_rule(cancer):
    train, valid = cancer
    for metric in ("accuracy", "neg_log_loss"):
        utility = va.make_utility(va.logistic_regression(2), train, valid, metric=metric)
        empty = utility(np.zeros(train.n))
        one = utility((train.y == 1).astype(np.float32))
        share = np.mean(valid.y == 1)
        if metric == "accuracy":
            assert empty == pytest.approx(0.5)
            assert one == pytest.approx(share)
        else:
            assert empty == pytest.approx(np.log(0.5), rel=1e-5)
            m = (train.y == 1).sum()
            p1 = (m + 1) / (m + 2)
            expected = share * np.log(p1) + (1 - share) * np.log(1 - p1)
            assert one == pytest.approx(expected, rel=1e-4)


def test_metrics_by_hand():
    probs = jnp.array([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8]])
    y = jnp.array([0, 0, 0])
    assert float(accuracy(probs, y)) == pytest.approx((1 + 0.5 + 0) / 3)
    assert float(neg_log_loss(probs, y)) == pytest.approx(np.mean(np.log([0.7, 0.5, 0.2])))


def test_custom_metric_and_bad_arguments(cancer):
    train, valid = cancer
    utility = va.make_utility(va.logistic_regression(2), train, valid,
                              metric=lambda p, y: jnp.mean(p[:, 1]))
    assert 0 < utility(np.ones(train.n)) < 1
    with pytest.raises(va.ValuationError, match="unknown metric"):
        va.make_utility(va.logistic_regression(2), train, valid, metric="auc")
    with pytest.raises(va.ValuationError, match="Newton solver"):
        va.make_utility(va.mlp(2), train, valid, solver="newton")
    with pytest.raises(va.ValuationError, match="one weight per training sample"):
        utility(np.ones(train.n + 1))


def test_one_compile_for_many_batches(cancer, rng):
    train, valid = cancer
    utility = va.make_utility(va.logistic_regression(2), train, valid, chunk=8)
    utility(np.ones((8, train.n)))
    before = utility._score._cache_size()
    for b in (3, 8, 13):
        utility((rng.random((b, train.n)) < 0.5).astype(np.float32))
    assert utility._score._cache_size() - before <= 2  # sizes 4 and 8 at most


@pytest.mark.parametrize(("solver", "classes", "rows"), [
    ("pcg", 3, 61), ("pcg", 2, 59), ("newton", 2, 57), ("warm", 2, 55), ("gd", 2, 53)])
def test_a_fit_compiled_ahead_from_shapes_is_the_one_the_fit_runs(solver, classes, rows,
                                                                   caplog):
    # `rows` training rows: shapes no other test uses, so the batched fit is new here; the
    # warm start's shapes come from eval_shape, so a drifted shape or dtype would compile
    # the fit a second time when it runs.
    train, valid = va.make_classification(rows + 40, 4, n_classes=classes, seed=3).split(
        rows / (rows + 40), 40 / (rows + 40), seed=0)
    model = va.mlp(classes, (3,)) if solver == "warm" else va.logistic_regression(classes)
    utility = va.make_utility(model, train, valid, solver=solver, steps=20)
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level("WARNING", logger="jax"):
            utility.compile_fit_ahead(5)
            ahead = len(caplog.records)
            utility.fit(np.ones((5, train.n), np.float32))
    finally:
        jax.config.update("jax_log_compiles", False)
    def fit_compiles(records):
        return sum("Finished XLA compilation of jit(fit_weighted)" in r.getMessage()
                   for r in records)

    assert fit_compiles(caplog.records) == 1
    assert fit_compiles(caplog.records[:ahead]) == 1  # ahead, not when the fit ran


def test_the_warm_start_compiled_fast_or_optimised_reaches_the_same_optimum(monkeypatch):
    # Above `FAST_COMPILE_SIZE` the warm start compiles with XLA's optimisations (no CI
    # data set is that large): both programs must give the same full-data fit and
    # preconditioner, to the solver's tolerance.
    from valuation import utility as engine

    train, valid = va.make_classification(140, 6, n_classes=3, seed=5).split(
        100 / 140, 40 / 140, seed=0)
    fast = va.make_utility(va.logistic_regression(3), train, valid)
    monkeypatch.setattr(engine, "FAST_COMPILE_SIZE", 0)
    optimised = va.make_utility(va.logistic_regression(3), train, valid)
    assert engine._pick(engine._FULL_LOGISTIC, optimised._data["xt"], 3) is (
        engine._FULL_LOGISTIC[0])
    for name in ("w", "b"):
        np.testing.assert_allclose(optimised.fit_full()["linear"][name],
                                   fast.fit_full()["linear"][name], atol=1e-5)
    np.testing.assert_allclose(optimised._data["shared"][1], fast._data["shared"][1],
                               rtol=1e-3, atol=1e-4)


def test_equinox_adapter(blobs):
    eqx = pytest.importorskip("equinox")
    train, valid = blobs
    net = eqx.nn.MLP(train.d, 2, width_size=8, depth=1, key=jax.random.PRNGKey(0))
    model = va.from_equinox(net)
    utility = va.make_utility(model, train, valid, steps=200)
    assert utility(np.ones(train.n)) > 0.9
