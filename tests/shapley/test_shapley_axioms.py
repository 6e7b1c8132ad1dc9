"""Shapley axioms on a real utility (logistic regression, n = 10 training samples):
efficiency, symmetry of duplicated samples, null player; Monte Carlo vs exact."""

import numpy as np
import pytest

import valuation as va
from valuation.runner import run
from valuation.shapley import (
    exact_banzhaf,
    exact_shapley,
    max_draws,
    msr_banzhaf,
    tmc_shapley,
)


@pytest.fixture(scope="module")
def small(blobs):
    """Nine training samples plus a duplicate of the first (same features and label)."""
    train, valid = blobs
    base = train.subset(np.arange(9))
    x = np.concatenate([base.x, base.x[:1]])
    y = np.concatenate([base.y, base.y[:1]])
    dup = base.replace(x=x, y=y, ids=np.concatenate([base.ids, ["duplicate"]]))
    return va.make_utility(va.logistic_regression(2), dup, valid, metric="neg_log_loss",
                           chunk=64)


@pytest.fixture(scope="module")
def exact(small):
    return {"shapley": exact_shapley(small).values, "banzhaf": exact_banzhaf(small).values}


# The engine computes in float32: the same subset scored at different positions of a batch
# agrees to rounding, so identities hold to this tolerance rather than bit for bit.
FLOAT32 = 1e-6


class IgnoreSample:
    """The utility with sample j's weight forced to 0: j is a null player."""

    def __init__(self, utility, j):
        self.utility, self.j, self.n = utility, j, utility.n

    def __call__(self, weights, key=None):
        weights = np.array(weights, np.float32)
        weights[:, self.j] = 0.0
        return self.utility(weights, key=key)


def _ends(u):
    return u(np.ones((1, u.n)))[0], u(np.zeros((1, u.n)))[0]


def test_efficiency(small, exact):
    full, empty = _ends(small)
    assert exact["shapley"].sum() == pytest.approx(full - empty, abs=FLOAT32)


def test_permutation_estimates_are_efficient_draw_by_draw(small):
    # Each permutation's marginals telescope to U(N) - U(empty), so the mean does too.
    out = run(tmc_shapley(truncation_rtol=None), small, key=0, stop=max_draws(16),
              progress=False)
    full, empty = _ends(small)
    assert out.estimate.values.sum() == pytest.approx(full - empty, abs=FLOAT32)


def test_symmetry_of_duplicated_samples(exact):
    for values in exact.values():
        assert values[0] == pytest.approx(values[-1], abs=FLOAT32)
        assert abs(values[0] - values[1]) > 100 * FLOAT32  # not trivially equal


def test_null_player(small):
    game = IgnoreSample(small, 4)
    assert exact_shapley(game).values[4] == pytest.approx(0.0, abs=FLOAT32)
    out = run(tmc_shapley(truncation_rtol=None), game, key=0, stop=max_draws(16),
              progress=False)
    assert out.estimate.values[4] == pytest.approx(0.0, abs=FLOAT32)
    out = run(msr_banzhaf(batch=256), game, key=0, stop=max_draws(1024), progress=False)
    assert abs(out.estimate.values[4]) <= 4 * out.estimate.stderr[4]


def test_monte_carlo_within_4_stderr_of_exact_on_real_utility(small, exact):
    shap = run(tmc_shapley(truncation_rtol=None), small, key=3, stop=max_draws(200),
               progress=False).estimate
    assert np.all(np.abs(shap.values - exact["shapley"]) <= 4 * shap.stderr)
    banz = run(msr_banzhaf(batch=512), small, key=3, stop=max_draws(4096),
               progress=False).estimate
    assert np.all(np.abs(banz.values - exact["banzhaf"]) <= 4 * banz.stderr)
