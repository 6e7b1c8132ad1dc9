"""Meta-gradients against central finite differences in float64, and against influence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import valuation as va
from metalearner.metagrad import (
    implicit_metagrad,
    train_steps,
    unrolled_metagrad,
    validation_loss,
)
from valuation.influence import dense, influence_function

L2 = 2.0


def _tiny(n=8, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 6, d))
    y = (x[:, 0] + 0.5 * rng.normal(size=n + 6) > 0).astype(np.int32)
    w = rng.uniform(0.5, 1.5, size=n)
    return (jnp.asarray(x[:n]), jnp.asarray(y[:n]), jnp.asarray(w),
            jnp.asarray(x[n:]), jnp.asarray(y[n:]))


def _central_differences(loss, w, eps=1e-5):
    """(loss(w + eps e_i) - loss(w - eps e_i)) / (2 eps) for every i, in one vmap."""
    eye = eps * jnp.eye(w.shape[0], dtype=w.dtype)
    up, down = jnp.split(jax.jit(jax.vmap(loss))(jnp.concatenate([w + eye, w - eye])), 2)
    return (up - down) / (2 * eps)


def _optimum(x, y, w):
    p = va.fit_logistic_newton(x, y, w[None], n_classes=2, l2=L2, steps=40, jitter=0.0)
    return jax.tree_util.tree_map(lambda a: a[0], p)


def test_implicit_metagrad_equals_finite_differences_at_the_optimum():
    with jax.enable_x64(True):
        x, y, w, xv, yv = _tiny()
        model = va.logistic_regression(2)
        ws = jnp.stack([w, jnp.ones_like(w)])  # a batch of two target models, one vmap
        got = jax.jit(jax.vmap(lambda w: implicit_metagrad(
            model, _optimum(x, y, w), x, y, w, xv, yv, l2=L2)))(ws)
        assert got.dtype == jnp.float64
        for b in range(2):
            want = _central_differences(
                lambda w: validation_loss(model, _optimum(x, y, w), xv, yv), ws[b])
            np.testing.assert_allclose(got[b], want, rtol=1e-6, atol=1e-9)


def test_unrolled_metagrad_equals_finite_differences_through_training():
    with jax.enable_x64(True):
        x, y, w, xv, yv = _tiny()
        model = va.mlp(2, hidden=(4,), activation=jnp.tanh)
        p0 = model.init(jax.random.PRNGKey(0), x)
        opt = optax.adam(0.05)

        def loss(w):
            p = train_steps(model, p0, x, y, w, steps=12, optimizer=opt, l2=0.1)
            return validation_loss(model, p, xv, yv)

        want = _central_differences(loss, w)
        for remat_every in (None, 1, 12):  # segments of 4 (the default), 1, one plain scan
            got = jax.jit(lambda w, r=remat_every: unrolled_metagrad(
                model, p0, x, y, w, xv, yv, steps=12, optimizer=opt, l2=0.1,
                remat_every=r))(w)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_implicit_metagrad_is_minus_the_influence_function_on_logistic_regression():
    # float32: the influence code runs in the data's precision (two independent paths:
    # dense HVP Hessian + eigendecomposition there, jacfwd + solve here).
    x, y, _, xv, yv = (jnp.asarray(a, a.dtype if a.dtype == jnp.int32 else jnp.float32)
                       for a in _tiny(n=20, d=4, seed=1))
    ones = jnp.ones(20, jnp.float32)
    model = va.logistic_regression(2)
    params = _optimum(x, y, ones)
    train = va.load(np.asarray(x), np.asarray(y))
    valid = va.load(np.asarray(xv), np.asarray(yv))
    scores = influence_function(model, params, train, valid, solver=dense(damping=0.0),
                                l2=L2)
    got = -np.asarray(implicit_metagrad(model, params, x, y, ones, xv, yv, l2=L2))
    np.testing.assert_allclose(got, scores.values, rtol=1e-3,
                               atol=1e-4 * np.abs(scores.values).max())
