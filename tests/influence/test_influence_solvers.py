"""Inverse-HVP solvers: agreement with each other, closed forms, and clear failures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from influence_setup import L2

from valuation import ValuationError
from valuation.influence import (
    Curvature,
    cg,
    dense,
    hvp,
    influence,
    lanczos,
    lissa,
    lowrank,
)

KEY = jax.random.PRNGKey(0)


def quadratic(eigenvalues, seed=0):
    """Curvature of 0.5 theta^T A theta with A = Q diag(eigenvalues) Q^T (float32)."""
    q, _ = np.linalg.qr(
        np.random.default_rng(seed).normal(size=(len(eigenvalues),) * 2)
    )
    a = (q * np.asarray(eigenvalues)) @ q.T
    a = jnp.asarray(0.5 * (a + a.T), jnp.float32)
    return a, Curvature(
        hvp(lambda t: 0.5 * t @ a @ t, jnp.zeros(len(eigenvalues))), len(eigenvalues)
    )


def test_solvers_invert_a_known_matrix():
    """Each solver returns (A + damping)^-1 v for a positive definite A, to its tolerance."""
    eig = np.geomspace(0.1, 10.0, 20)
    a, curv = quadratic(eig)
    v = jnp.asarray(np.random.default_rng(1).normal(size=(20, 3)), jnp.float32)
    truth = np.linalg.solve(
        np.asarray(a, np.float64) + 0.05 * np.eye(20), np.asarray(v)
    )
    for solver, rtol in (
        (dense(damping=0.05), 1e-4),
        (cg(damping=0.05, tol=1e-6), 1e-4),
        (lissa(damping=0.05, depth=2000, tol=1e-5), 1e-4),
        (lowrank(rank=20, damping=0.05), 1e-3),
    ):
        x = np.asarray(solver(curv, key=KEY).apply(v))
        np.testing.assert_allclose(x, truth, rtol=rtol, atol=rtol * np.abs(truth).max())


def test_lanczos_finds_the_spectrum():
    eig = np.linspace(-2.0, 5.0, 12)
    a, curv = quadratic(eig)
    found, vecs = lanczos(curv.hvp, 12, 12, key=KEY)
    np.testing.assert_allclose(np.asarray(found), eig, atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(a @ vecs), np.asarray(vecs * found), atol=1e-3
    )


def test_auto_damping_reports_smallest_eigenvalue():
    """PD and well conditioned: no damping; indefinite: shifted to PD (cond <= 1/rcond)."""
    _, pd = quadratic(np.geomspace(0.1, 10.0, 8))
    info = dense()(pd, key=KEY).info
    assert info["damping"] == 0.0 and info["lambda_min"] == pytest.approx(0.1, rel=1e-4)
    _, indefinite = quadratic(np.linspace(-1.0, 4.0, 8))
    for solver in (dense(), cg(), lowrank(rank=8)):
        info = solver(indefinite, key=KEY).info
        assert info["lambda_min"] == pytest.approx(-1.0, abs=1e-3)
        assert info["damping"] == pytest.approx(1.0 + 1e-4 * 4.0, abs=1e-3)


def test_indefinite_hessian_without_damping_fails_clearly():
    _, curv = quadratic(np.linspace(-1.0, 4.0, 8))
    v = jnp.ones((8, 2), jnp.float32)
    with pytest.raises(ValuationError, match="not positive definite"):
        dense(damping=0.0)(curv, key=KEY)
    with pytest.raises(ValuationError, match="negative curvature"):
        cg(damping=0.0)(curv, key=KEY).apply(v)
    with pytest.raises(ValuationError, match="LiSSA did not converge"):
        lissa(damping=0.0, depth=200)(curv, key=KEY).apply(v)
    with pytest.raises(ValuationError, match="did not converge"):  # too few iterations
        cg(damping=0.0, maxiter=2)(
            quadratic(np.geomspace(0.1, 10, 8))[1], key=KEY
        ).apply(v)


def test_least_squares_influence_equals_closed_form():
    """Ridge least squares: (1/n) g_val^T H^-1 g_i with H = X^T X / n + lam, in float64."""
    rng = np.random.default_rng(0)
    n, d, lam = 50, 4, 0.1
    x, xv = rng.normal(size=(n, d)), rng.normal(size=(20, d))
    w_true = rng.normal(size=d)
    y, yv = x @ w_true + rng.normal(size=n), xv @ w_true + rng.normal(size=20)
    theta = np.linalg.solve(x.T @ x / n + lam * np.eye(d), x.T @ y / n)
    h = x.T @ x / n + lam * np.eye(d)
    g_train = x * (x @ theta - y)[:, None]  # grad of 0.5 (x.theta - y)^2
    g_val = np.mean(xv * (xv @ theta - yv)[:, None], axis=0)
    closed = g_train @ np.linalg.solve(h, g_val) / n
    # The same from the library's pieces: HVPs of the objective, dense and CG solvers.
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

    def objective(t):
        return 0.5 * jnp.mean((xj @ t - yj) ** 2) + 0.5 * lam * t @ t

    curv = Curvature(hvp(objective, jnp.asarray(theta, jnp.float32)), d)
    for solver in (dense(), cg(tol=1e-6)):
        s = solver(curv, key=KEY).apply(jnp.asarray(g_val, jnp.float32)[:, None])[:, 0]
        np.testing.assert_allclose(
            g_train @ np.asarray(s) / n,
            closed,
            rtol=1e-4,
            atol=1e-6 * np.abs(closed).max(),
        )
    # Leave-one-out exactly (Sherman-Morrison): the influence direction, divided by 1 - h_ii.
    big_h = n * h
    leverage = np.einsum("id,de,ie->i", x, np.linalg.inv(big_h), x)
    for i in range(0, n, 10):
        keep = np.arange(n) != i
        t_i = np.linalg.solve(
            x[keep].T @ x[keep] + n * lam * np.eye(d), x[keep].T @ y[keep]
        )
        np.testing.assert_allclose(
            t_i - theta,
            np.linalg.solve(big_h, g_train[i]) / (1 - leverage[i]),
            rtol=1e-8,
            atol=1e-12,
        )


@pytest.mark.slow
def test_methods_agree_on_logistic_regression(logreg):
    """Exact, CG, LiSSA and low-rank (full rank) give the same values at a shared damping."""
    model, params, train, valid = logreg
    opts = {"damping": 0.01, "valid_blocks": 8}
    ref = influence(model, params, train, valid, method="exact", l2=L2, **opts)
    for method, extra, rtol in (
        ("cg", {"tol": 1e-6}, 1e-3),
        ("lissa", {"depth": 1500}, 2e-2),
        ("lowrank", {"rank": 31}, 1e-3),
    ):
        r = influence(
            model, params, train, valid, method=method, l2=L2, **opts, **extra
        )
        scale = np.abs(ref.values).max()
        np.testing.assert_allclose(
            r.values, ref.values, atol=rtol * scale, err_msg=method
        )
        np.testing.assert_allclose(
            r.stderr, ref.stderr, atol=rtol * scale, err_msg=method
        )
    # A low rank keeps the dominant directions: still strongly correlated.
    r = influence(model, params, train, valid, method="lowrank", l2=L2, rank=10, **opts)
    assert np.corrcoef(r.values, ref.values)[0, 1] > 0.9


def test_entry_point_rejects_bad_input(logreg):
    model, params, train, valid = logreg
    for kwargs, message in (
        ({"method": "nope"}, "unknown influence method"),
        ({"method": "exact", "valid_blocks": 1}, "valid_blocks"),
        ({"method": "cg", "rank": 3}, "bad option"),
        ({"method": "tracin"}, "checkpoints"),
        ({"method": "exact", "layers": ("nope",)}, "not in the params"),
        ({"method": "exact", "damping": -1.0}, "damping"),
    ):
        with pytest.raises(ValuationError, match=message):
            influence(model, params, train, valid, **kwargs)


def test_stochastic_lissa_tracks_exact(logreg):
    """Mini-batch LiSSA (the original stochastic series) still ranks like the exact solve."""
    model, params, train, valid = logreg
    opts = {"damping": 0.01, "valid_blocks": 8, "l2": L2}
    ref = influence(model, params, train, valid, method="exact", **opts)
    r = influence(
        model,
        params,
        train,
        valid,
        method="lissa",
        depth=1500,
        batch_size=128,
        tol=0.3,
        **opts,
    )
    assert np.corrcoef(r.values, ref.values)[0, 1] > 0.95
