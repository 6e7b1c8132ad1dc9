"""Learning dynamics of a regression target: statistics of the squared loss and its
residual, loss signals, and one clear error for the class-only signals."""

import jax
import numpy as np
import pytest

import valuation as va
from valuation.dynamics import signal_values, trajectory


def _data(n=100, seed=0):
    """Linear targets; the first 10 rows' targets pushed 6 units (20 noise sd) off."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=n)
    y[:10] += np.where(np.arange(10) % 2, 6.0, -6.0)
    return va.regression_dataset(x, y)


def test_trace_statistics_are_the_squared_loss_and_its_residual():
    data = _data(30)
    valid = _data(12, seed=1)
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=(2, 3, 1)), rng.normal(size=(2, 1))
    checkpoints = {"linear": {"w": w[None], "b": b[None]}}  # (seeds=1, epochs=2)
    trace = trajectory(va.linear_regression(), checkpoints, data.x, data.y, n_classes=0,
                       valid=valid)
    for t in range(2):
        r = data.x @ w[t][:, 0] + b[t][0] - data.y
        rv = valid.x @ w[t][:, 0] + b[t][0] - valid.y
        x1, xv1 = np.c_[data.x, np.ones(30)], np.c_[valid.x, np.ones(12)]
        np.testing.assert_allclose(trace.loss[0, t], 0.5 * r**2, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(trace.error_norm[0, t], np.abs(r), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(trace.grad_norm[0, t],
                                   np.abs(r) * np.linalg.norm(x1, axis=1), rtol=1e-4)
        g_valid = xv1.T @ rv / 12  # mean validation gradient of r^2 / 2 in (w, b)
        np.testing.assert_allclose(trace.alignment[0, t], r * (x1 @ g_valid), rtol=1e-3,
                                   atol=1e-4)
    assert np.isnan(trace.prob).all() and np.isnan(trace.margin).all()
    assert not trace.correct.any()


@pytest.mark.parametrize("signal", ["loss", "el2n", "grand"])
def test_loss_signals_put_outlying_targets_last(signal):
    data = _data()
    result = va.value(data, method="dynamics", signal=signal, progress=False)
    assert result.method == f"dynamics_{signal}"
    lowest = set(data.ids[np.argsort(result.values)[:10]])
    # GraNd scales |r| by the feature norm, so a low-norm outlier may rank among the clean
    hits = len(lowest & set(range(10)))
    assert hits == 10 if signal != "grand" else hits >= 8, hits


def test_regression_defaults_to_the_loss_and_refuses_class_signals():
    data = _data(40)
    result = va.value(data, method="dynamics", epochs=4, progress=False)
    assert result.method == "dynamics_loss"
    for signal in ("aum", "confidence", "forgetting", "aum_threshold"):
        with pytest.raises(va.ValuationError,
                           match=f"'{signal}' reads class.*'el2n', 'grand', 'alignment', "
                                 "'loss', 'loss_variability'"):
            va.value(data, method="dynamics", signal=signal, progress=False)
    _, trace = va.dynamics.record(va.linear_regression(), data, key=jax.random.PRNGKey(0),
                                  epochs=3)
    with pytest.raises(va.ValuationError, match="'variability' reads class"):
        signal_values(trace, data.ids, "variability")
    assert signal_values(trace, data.ids, "loss_variability").values.shape == (40,)
