"""Influence on the squared loss of ridge regression against actual retraining.

Ridge's objective is quadratic, so its Hessian is exactly `(X^T X + l2 I_w) / n` and
the exact leave-one-out update is known in closed form (Sherman-Morrison):
`theta_{-i} - theta = A^-1 x_i r_i / (1 - h_i)`, `A = X^T X + l2 I_w`, `h_i = x_i^T A^-1 x_i`.
The reference below retrains in float64 numpy, independently of the library's solvers.
"""

import numpy as np
import pytest

import valuation as va

L2 = 1.0
COEF = np.array([1.0, -2.0, 0.5])


def _data(n, m=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + m, 3))
    y = x @ COEF + 0.5 * rng.normal(size=n + m) + 1.0
    data = va.regression_dataset(x, y)
    return data.subset(np.arange(n)), data.subset(np.arange(n, n + m))


def _ridge(x, y):
    """float64 ridge with an unpenalised bias: `(theta (d+1,), A (d+1, d+1))`."""
    x1 = np.c_[x, np.ones(len(x))]
    a = x1.T @ x1 + L2 * np.diag([1.0] * x.shape[1] + [0.0])
    return np.linalg.solve(a, x1.T @ y), a


def _half_mse(theta, x, y):
    return 0.5 * np.mean((np.c_[x, np.ones(len(x))] @ theta - y) ** 2)


def _leave_one_out(train, valid):
    """Actual change of the validation loss (half the MSE) when each sample is removed."""
    x, y = train.x.astype(np.float64), train.y.astype(np.float64)
    xv, yv = valid.x.astype(np.float64), valid.y.astype(np.float64)
    theta, _ = _ridge(x, y)
    base = _half_mse(theta, xv, yv)
    keep = ~np.eye(train.n, dtype=bool)
    return np.array([_half_mse(_ridge(x[k], y[k])[0], xv, yv) - base for k in keep])


@pytest.mark.slow
def test_influence_is_the_derivative_of_retrained_loss_in_the_sample_weight():
    """value_i = -dL_val/dw_i at w = 1, by central differences of retrained ridge fits."""
    train, valid = _data(80)
    result = va.value(train, method="influence", valid=valid, solver="exact",
                      progress=False)
    assert result.method == "influence_exact" and np.all(result.stderr > 0)
    utility = va.make_utility(va.linear_regression(), train, valid, metric="neg_mse", l2=L2)
    eps = 1e-2
    weights = np.ones((2 * train.n, train.n), np.float32)
    weights[0::2][np.arange(train.n), np.arange(train.n)] += eps
    weights[1::2][np.arange(train.n), np.arange(train.n)] -= eps
    scores = utility(weights)  # minus the MSE = -2 x the half-MSE loss
    derivative = (scores[0::2] - scores[1::2]) / (2 * eps) / 2
    scale = np.abs(derivative).max()
    np.testing.assert_allclose(result.values, derivative, atol=1e-2 * scale)


@pytest.mark.slow
def test_influence_predicts_leave_one_out_to_first_order():
    errors = {}
    for n in (250, 1000):
        train, valid = _data(n)
        values = va.value(train, method="influence", valid=valid, solver="exact",
                          progress=False).values
        loo = _leave_one_out(train, valid)
        assert np.corrcoef(values, loo)[0, 1] > 0.99
        errors[n] = np.abs(values - loo).max() / np.abs(loo).max()
        # For a quadratic loss the gap is exactly the leverage factor and the second-order
        # term: value_i = (1 - h_i) (LOO_i - delta_i^T H_val delta_i / 2).
        x1 = np.c_[train.x, np.ones(n)].astype(np.float64)
        theta, a = _ridge(train.x.astype(np.float64), train.y.astype(np.float64))
        solved = np.linalg.solve(a, x1.T).T  # rows A^-1 x_i
        h = np.sum(x1 * solved, axis=1)
        delta = solved * ((x1 @ theta - train.y) / (1 - h))[:, None]  # theta_{-i} - theta
        xv1 = np.c_[valid.x, np.ones(valid.n)].astype(np.float64)
        second = 0.5 * np.sum((delta @ xv1.T) ** 2, axis=1) / valid.n
        np.testing.assert_allclose(values, (1 - h) * (loo - second),
                                   atol=1e-3 * np.abs(loo).max())
    # both gaps shrink like 1/n: four times the rows, well under half the error
    assert errors[1000] < 0.5 * errors[250], errors


def test_trak_refuses_a_regression_target():
    train, valid = _data(60)
    with pytest.raises(va.ValuationError, match="TRAK.*regression target"):
        va.value(train, method="influence", valid=valid, solver="trak", progress=False)
