"""The batched solvers of `valuation.glm` against scikit-learn and against themselves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from split_helpers import standardized_split

import valuation as va
from valuation import glm
from valuation.training import fit_warm, fit_warm_batch, weighted_objective

# Stated tolerances of the multinomial comparison (max absolute difference of coefficients whose
# scale is about 1): the solver at tol=1e-6 against scikit-learn at tol=1e-10. Float32
# arithmetic bounds the agreement, the biases (least curvature) most.
COEF_ATOL = {3: 1e-3, 10: 3e-3}
BIAS_ATOL = {3: 2e-3, 10: 2e-2}


def _multiclass(name):
    data = va.load_bundled(name)
    if name == "digits":  # 500 rows, 10 classes, d = 64
        data = data.split(500 / data.n, seed=0)[0]
    return standardized_split(data, fractions=(0.6, 0.4))


@pytest.fixture(scope="module", params=["wine", "digits"])
def multiclass(request):
    return _multiclass(request.param)


def test_multinomial_coefficients_match_sklearn(multiclass, rng):
    train, valid = multiclass
    k = train.n_classes
    utility = va.make_utility(va.logistic_regression(k), train, valid, tol=1e-6)
    assert utility.solver == "pcg"
    masks = (rng.random((3, train.n)) < 0.6).astype(np.float32)
    masks[0] = 1.0
    params = utility.fit(masks)
    assert params["linear"]["w"].shape == (3, train.d, k)  # symmetric: k weight vectors
    for i, mask in enumerate(masks):
        keep = mask > 0
        clf = LogisticRegression(C=1.0, max_iter=10_000, tol=1e-10).fit(train.x[keep],
                                                                         train.y[keep])
        np.testing.assert_allclose(params["linear"]["w"][i], clf.coef_.T, atol=COEF_ATOL[k])
        np.testing.assert_allclose(params["linear"]["b"][i], clf.intercept_, atol=BIAS_ATOL[k])
    # The fitted full-data model is the one every subset starts from.
    np.testing.assert_allclose(utility.fit_full()["linear"]["w"], params["linear"]["w"][0],
                               atol=1e-4)


def test_converged_to_the_stated_tolerance(multiclass, rng):
    train, _ = multiclass
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    k = train.n_classes
    full = va.make_utility(va.logistic_regression(k), train, train).fit_full()
    masks = (rng.random((16, train.n)) < rng.random((16, 1))).astype(np.float32)
    _, info = glm.fit_logistic(x, y, masks, n_classes=k, init=full, tol=1e-4,
                               return_info=True)
    trained = (masks @ np.eye(k)[train.y] > 0).sum(axis=1) >= 2
    assert np.all(np.asarray(info["grad_max"])[trained] <= 1e-4)
    assert int(info["steps"]) < 100


def _renumbered(data, order):
    """The same rows with the class codes permuted (class c becomes order[c])."""
    classes = tuple(data.classes[i] for i in np.argsort(order))
    return data.replace(y=np.asarray(order)[data.y].astype(np.int32), classes=classes)


@pytest.mark.parametrize("metric", ["accuracy", "neg_log_loss"])
def test_renumbering_classes_leaves_scores_unchanged(metric, rng):
    train, valid = _multiclass("wine")
    order = [2, 0, 1]
    masks = (rng.random((24, train.n)) < rng.uniform(0.05, 1.0, (24, 1))).astype(np.float32)
    a = va.make_utility(va.logistic_regression(3), train, valid, metric=metric)
    b = va.make_utility(va.logistic_regression(3), _renumbered(train, order),
                        _renumbered(valid, order), metric=metric)
    np.testing.assert_allclose(a(masks), b(masks), rtol=2e-5, atol=2e-6)


def test_renumbering_classes_leaves_values_unchanged():
    train, valid = _multiclass("wine")
    train = train.subset(np.arange(40))
    order = [1, 2, 0]
    stop = va.shapley.max_draws(8)
    a = va.value(train, method="tmc", valid=valid, stop=stop, progress=False)
    b = va.value(_renumbered(train, order), method="tmc", valid=_renumbered(valid, order),
                 stop=stop, progress=False)
    np.testing.assert_allclose(a.values, b.values, atol=1e-5)


def test_binary_renumbering_negates_the_model(cancer, rng):
    train, valid = cancer
    flipped = _renumbered(train, [1, 0])
    masks = (rng.random((6, train.n)) < 0.5).astype(np.float32)
    a = va.make_utility(va.logistic_regression(2), train, valid).fit(masks)
    b = va.make_utility(va.logistic_regression(2), flipped, _renumbered(valid, [1, 0])).fit(masks)
    np.testing.assert_allclose(a["linear"]["w"], -b["linear"]["w"], atol=1e-4)


def test_absent_class_gets_probability_zero_and_sklearns_model(rng):
    train, valid = _multiclass("digits")
    keep = train.y != 7
    mask = keep.astype(np.float32)
    utility = va.make_utility(va.logistic_regression(10), train, valid, tol=1e-6)
    params = utility.fit(mask[None])
    probs = np.asarray(utility.predict_proba(params, valid.x))[0]
    assert np.all(probs[:, 7] == 0.0)
    clf = LogisticRegression(C=1.0, max_iter=10_000, tol=1e-10).fit(train.x[keep],
                                                                     train.y[keep])
    present = [c for c in range(10) if c != 7]
    np.testing.assert_allclose(np.asarray(params["linear"]["w"][0])[:, present], clf.coef_.T,
                               atol=COEF_ATOL[10])
    np.testing.assert_allclose(probs[:, present], clf.predict_proba(valid.x), atol=5e-3)


def test_results_do_not_depend_on_the_chunk(rng):
    train, valid = _multiclass("wine")
    utility = va.make_utility(va.logistic_regression(3), train, valid, metric="neg_log_loss")
    masks = (rng.random((9, train.n)) < rng.uniform(0.05, 1.0, (9, 1))).astype(np.float32)
    np.testing.assert_allclose(utility(masks, chunk=2), utility(masks, chunk=9), rtol=1e-5,
                               atol=1e-6)


def test_spd_inverse(rng):
    for size in (3, 31, 65, 130):
        a = rng.normal(size=(4, 2 * size, size)).astype(np.float32)
        gram = np.einsum("bnd,bne->bde", a, a) + np.eye(size, dtype=np.float32)
        inv = np.asarray(glm.spd_inverse(jnp.asarray(gram)))
        np.testing.assert_allclose(inv @ gram, np.broadcast_to(np.eye(size), gram.shape),
                                   atol=2e-4)


def test_warm_solver_descends_from_the_full_data_fit_and_stops(blobs, rng):
    train, valid = blobs
    model = va.mlp(2, (16,))
    utility = va.make_utility(model, train, valid, metric="neg_log_loss")
    assert utility.solver == "warm"
    full = utility.fit_full()
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    masks = (rng.random((6, train.n)) < 0.5).astype(np.float32)
    for mask in masks:
        w = jnp.asarray(mask)
        params, steps = fit_warm(model, x, y, w, init_params=full, return_steps=True)
        before = weighted_objective(model, full, x, y, w, 1.0)
        after = weighted_objective(model, params, x, y, w, 1.0)
        assert float(after) < float(before) and 0 < int(steps) < 200
    # Frozen once stopped: results do not depend on the chunk.
    np.testing.assert_allclose(utility(masks, chunk=2), utility(masks, chunk=6), rtol=1e-5,
                               atol=1e-6)


def test_warm_solver_reaches_the_convex_optimum(cancer):
    train, _ = cancer
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    model = va.logistic_regression(2)
    w = jnp.ones(train.n)
    params = fit_warm(model, x, y, w, init_params=model.init(None, x),
                                  max_steps=500, tol=0.0)
    exact = va.fit_logistic_newton(x, y, w[None], n_classes=2, steps=12)
    np.testing.assert_allclose(params["linear"]["w"], exact["linear"]["w"][0], atol=2e-3)


@pytest.mark.parametrize("shared", [False, True])
def test_gram_matrices_without_the_outer_products_give_the_same_fit(multiclass, rng,
                                                                    monkeypatch, shared):
    """Past `OUTER_BYTES` each Gram matrix is formed directly (no `(n, D*D)` products):
    the same models, up to the solver's tolerance (compared by their probabilities: the
    10-class biases are loosely determined, see BIAS_ATOL)."""
    train, _ = multiclass
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    k = train.n_classes
    full = va.make_utility(va.logistic_regression(k), train, train).fit_full()
    masks = (rng.random((6, train.n)) < rng.random((6, 1))).astype(np.float32)
    options = {"n_classes": k, "init": full, "tol": 1e-5, "shared": shared,
               "refresh_every": 3}
    x1 = np.concatenate([train.x, np.ones((train.n, 1), np.float32)], axis=1)
    products = jnp.asarray((x1[:, :, None] * x1[:, None, :]).reshape(train.n, -1))
    with_products = glm.fit_logistic(x, y, masks, outer=products, **options)
    monkeypatch.setattr(glm, "OUTER_BYTES", 0)
    direct = glm.fit_logistic(x, y, masks, **options)
    model = va.logistic_regression(k)
    probs = [jax.nn.softmax(jax.vmap(model.apply, in_axes=(0, None))(p, x), axis=-1)
             for p in (with_products, direct)]
    np.testing.assert_allclose(np.asarray(probs[0]), np.asarray(probs[1]), atol=2e-3)


def test_shared_preconditioner_is_the_full_data_curvature(cancer):
    train, _ = cancer
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    full = va.make_utility(va.logistic_regression(2), train, train).fit_full()
    c, inverse = glm.shared_preconditioner(x, y, full, n_classes=2, l2=1.0)
    x1 = np.concatenate([train.x, np.ones((train.n, 1))], axis=1)
    p = 1.0 / (1.0 + np.exp(-(x1 @ np.concatenate([full["linear"]["w"][:, 0],
                                                      full["linear"]["b"]]))))
    np.testing.assert_allclose(c, p * (1 - p), rtol=1e-4, atol=1e-7)  # binary: exact
    gram = x1.T @ (p * (1 - p) * x1.T).T + np.diag([1.0] * train.d + [0.0])
    np.testing.assert_allclose(np.asarray(inverse) @ gram, np.eye(train.d + 1), atol=2e-3)


def test_shared_path_does_not_depend_on_the_chunk(rng):
    # n >= 20 (d + 1): every subset preconditioned by the full data's curvature, computed
    # once per utility; a first subset missing a class must not change the others' fits. Not
    # bitwise: the chunk changes the float32 products' summation order, and each fit stops
    # once max |grad J| <= 1e-4, so the values agree to the solver's tolerance (measured
    # 1.5e-5 relative on one of six subsets; a wrong preconditioner or a poisoned chunk
    # moves them by far more).
    data = va.make_classification(900, 5, n_classes=3, seed=2)
    train, valid = standardized_split(data, fractions=(0.7, 0.3))
    utility = va.make_utility(va.logistic_regression(3), train, valid, metric="neg_log_loss")
    assert train.n >= 20 * (train.d + 1)
    masks = (rng.random((6, train.n)) < rng.uniform(0.05, 1.0, (6, 1))).astype(np.float32)
    masks[0] = (train.y != 1) & (rng.random(train.n) < 0.1)  # class 1 absent
    np.testing.assert_allclose(utility(masks, chunk=1), utility(masks, chunk=6), rtol=1e-4,
                               atol=1e-6)


def test_shared_preconditioner_inverts_the_multinomial_hessian():
    # k >= 3: the inverse of the full data's exact Hessian (class couplings included); the
    # objective is flat along equal biases (direction e), so inverse @ H = I - e e^T.
    train, _ = _multiclass("wine")
    x, y, k = jnp.asarray(train.x), jnp.asarray(train.y), train.n_classes
    full = va.make_utility(va.logistic_regression(k), train, train).fit_full()
    _, inverse = glm.shared_preconditioner(x, y, full, n_classes=k, l2=1.0)
    x1 = jnp.concatenate([x, jnp.ones((train.n, 1))], axis=1)
    pen = jnp.ones((train.d + 1, k)).at[-1].set(0.0)

    def objective(flat):  # unnormalised: sum of cross-entropies + l2/2 ||W||^2
        theta = flat.reshape(train.d + 1, k)
        logp = jax.nn.log_softmax(x1 @ theta, axis=-1)
        return -jnp.sum(jnp.take_along_axis(logp, y[:, None], 1)) + 0.5 * jnp.sum((theta * pen) ** 2)

    hessian = jax.hessian(objective)(glm._pack(full).reshape(-1))
    e = np.zeros((train.d + 1, k))
    e[-1] = k ** -0.5
    e = e.reshape(-1)
    np.testing.assert_allclose(np.asarray(inverse @ hessian), np.eye(e.size) - np.outer(e, e),
                               atol=2e-3)


def test_shared_kronecker_fallback_reaches_the_same_fits(monkeypatch, rng):
    # Past HESSIAN_FLOPS the shared preconditioner is the (D, D) Kronecker factor: another
    # metric for the first steps, the same minimisers (the stopping test is unchanged).
    train, _ = _multiclass("wine")
    x, y, k = jnp.asarray(train.x), jnp.asarray(train.y), train.n_classes
    full = va.make_utility(va.logistic_regression(k), train, train).fit_full()
    masks = jnp.asarray((rng.random((5, train.n)) < 0.7).astype(np.float32))
    fits = []
    for flops, side in ((glm.HESSIAN_FLOPS, (train.d + 1) * k), (0.0, train.d + 1)):
        monkeypatch.setattr(glm, "HESSIAN_FLOPS", flops)
        shared = glm.shared_preconditioner(x, y, full, n_classes=k, l2=1.0)
        assert shared[1].shape == (side, side)
        fits.append(glm.fit_logistic(x, y, masks, n_classes=k, init=full, tol=1e-6,
                                     shared=shared)["linear"]["w"])
    np.testing.assert_allclose(np.asarray(fits[0]), np.asarray(fits[1]), atol=2e-3)


@pytest.mark.parametrize("slots", [1, 3, 7])
def test_warm_batch_trains_each_model_as_fit_warm_alone(blobs, rng, slots):
    """`fit_warm_batch` hands a stopped model's slot to the next one: every model still takes
    `fit_warm`'s steps to `fit_warm`'s result, whatever the slots; a cap of 0 is not trained."""
    train, valid = blobs
    model = va.mlp(2, (16,))
    full = va.make_utility(model, train, valid).fit_full()
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    weights = jnp.asarray((rng.random((7, train.n)) < rng.uniform(0.2, 0.9, (7, 1))), jnp.float32)
    caps = jnp.array([200, 0, 200, 3, 200, 200, 0])
    alone, alone_steps = jax.vmap(lambda w, c: fit_warm(
        model, x, y, w, init_params=full, max_steps=c, return_steps=True))(weights, caps)
    batch, steps = fit_warm_batch(model, x, y, weights, init_params=full, slots=slots,
                                  max_steps=caps, return_steps=True)
    np.testing.assert_array_equal(steps, alone_steps)
    assert list(np.asarray(steps)[[1, 3, 6]]) == [0, 3, 0] and np.asarray(steps).max() > 3
    for a, b, start in zip(jax.tree_util.tree_leaves(alone), jax.tree_util.tree_leaves(batch),
                           jax.tree_util.tree_leaves(full)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(b[1], start)
