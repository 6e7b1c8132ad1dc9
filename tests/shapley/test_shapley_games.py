"""Toy games with closed-form values: exact enumeration matches them, Monte Carlo estimators
fall within 4 standard errors of exact, truncation's bias stays within its stated bound."""

import numpy as np
import pytest
from shapley_games import additive, glove, lumpy, majority, majority_banzhaf, with_null

from valuation.runner import run
from valuation.shapley import (
    banzhaf,
    beta,
    beta_shapley,
    exact_banzhaf,
    exact_semivalue,
    exact_shapley,
    leave_one_out,
    loo,
    max_draws,
    msr_banzhaf,
    permutation_semivalue,
    shapley,
    tmc_shapley,
)

A = [0.3, -0.2, 1.0, 0.0, 0.7]


@pytest.mark.parametrize("exact", [exact_shapley, exact_banzhaf])
def test_exact_additive_game_values_are_the_coefficients(exact):
    np.testing.assert_allclose(exact(additive(A)).values, A, atol=1e-12)


def test_exact_majority_game():
    n, q = 7, 4
    np.testing.assert_allclose(exact_shapley(majority(n, q)).values, 1 / n, atol=1e-12)
    np.testing.assert_allclose(exact_banzhaf(majority(n, q)).values,
                               majority_banzhaf(n, q), atol=1e-12)


def test_exact_glove_game():
    np.testing.assert_allclose(exact_shapley(glove()).values, [2 / 3, 1 / 6, 1 / 6],
                               atol=1e-12)
    np.testing.assert_allclose(exact_banzhaf(glove()).values, [3 / 4, 1 / 4, 1 / 4],
                               atol=1e-12)


def test_null_player_gets_zero_and_others_unchanged():
    game = with_null(glove())
    values = exact_shapley(game).values
    assert values[-1] == 0.0
    np.testing.assert_allclose(values[:-1], [2 / 3, 1 / 6, 1 / 6], atol=1e-12)


def test_leave_one_out_closed_forms():
    np.testing.assert_allclose(leave_one_out(additive(A)).values, A, atol=1e-12)
    # glove: removing the only left glove loses the pair; a right glove is replaceable
    np.testing.assert_allclose(leave_one_out(glove()).values, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(
        exact_semivalue(glove(), loo()).values, [1, 0, 0], atol=1e-12)


def test_exact_refuses_large_games():
    from valuation import ValuationError

    with pytest.raises(ValuationError, match="Monte Carlo"):
        exact_shapley(additive(np.ones(17)))


def _within_4_stderr(estimate, exact):
    err = np.abs(estimate.values - exact)
    assert np.all(np.isfinite(estimate.stderr))  # an infinite stderr would pass anything
    assert np.all(err <= 4 * estimate.stderr + 1e-12), (err, estimate.stderr)
    assert np.all((estimate.stderr > 0) | (exact == 0))


@pytest.mark.parametrize("estimator", [
    tmc_shapley(truncation_rtol=None),
    tmc_shapley(truncation_rtol=None, antithetic=True),
], ids=["permutation", "antithetic"])
@pytest.mark.parametrize("game", [glove(), majority(6, 3), lumpy(6)],
                         ids=["glove", "majority", "lumpy"])
def test_permutation_shapley_within_4_stderr_of_exact(estimator, game):
    out = run(estimator, game, key=0, stop=max_draws(400), progress=False)
    _within_4_stderr(out.estimate, exact_shapley(game).values)
    assert np.all(out.estimate.counts == out.draws)


@pytest.mark.parametrize("game", [glove(), majority(6, 3), lumpy(6)],
                         ids=["glove", "majority", "lumpy"])
def test_msr_banzhaf_within_4_stderr_of_exact(game):
    out = run(msr_banzhaf(batch=128), game, key=1, stop=max_draws(2048), progress=False)
    _within_4_stderr(out.estimate, exact_banzhaf(game).values)


@pytest.mark.parametrize("weights", [shapley(), beta(16, 1), beta(4, 2), banzhaf(),
                                     loo()],
                         ids=lambda w: w.name)
def test_importance_weights_make_permutation_sampling_unbiased(weights):
    # For every semivalue, permutation draws weighted by w(k) / p(k) estimate exactly the
    # enumerated semivalue: the weights are the inverse of the sampler's probability.
    game = lumpy(6, seed=3)
    out = run(permutation_semivalue(weights, batch=50), game, key=2, stop=max_draws(1000),
              progress=False)
    _within_4_stderr(out.estimate, exact_semivalue(game, weights).values)


def test_beta_shapley_on_additive_game_gives_coefficients():
    out = run(beta_shapley(16, 1), additive(A), key=0, stop=max_draws(200), progress=False)
    # additive game: each marginal is a_i, but importance weights vary with the position
    _within_4_stderr(out.estimate, np.asarray(A))


def test_truncation_bias_is_within_the_stated_bound():
    # Sum of truncated marginals per permutation = U(prefix at cut) - U(empty), and the cut
    # prefix is within rtol * |U(N)| of U(N); the mean over permutations inherits the bound.
    game = majority(10, 3)  # reaches U(N) = 1 after 3 players: truncation bites early
    rtol = 0.2
    out = run(tmc_shapley(truncation_rtol=rtol, block=1), game, key=0, stop=max_draws(64),
              progress=False)
    total = out.estimate.values.sum()
    full, empty = game(np.ones((1, 10)))[0], game(np.zeros((1, 10)))[0]
    assert abs(total - (full - empty)) <= rtol * abs(full) + 1e-9
    # ... and it spends fewer evaluations than scoring every prefix would
    assert out.evaluations < 64 * 10


def test_truncation_does_not_depend_on_block_size():
    game = lumpy(9, seed=5)
    outs = [run(tmc_shapley(truncation_rtol=0.05, block=b), game, key=4,
                stop=max_draws(40), progress=False) for b in (1, 3, None)]
    for o in outs[1:]:
        np.testing.assert_allclose(o.estimate.values, outs[0].estimate.values, rtol=1e-12,
                                   atol=1e-15)
    assert outs[0].evaluations <= outs[1].evaluations
