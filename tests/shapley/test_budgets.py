"""Budgets that mean what they say: the last update is shortened to what is left, so a run
spends exactly its budget, with the same values for any batch size and static shapes."""

import numpy as np
import pytest
from shapley_games import Game, lumpy

import valuation as va
from valuation import ValuationError
from valuation.runner import run
from valuation.shapley import (
    data_oob,
    max_draws,
    max_evaluations,
    msr_banzhaf,
    stderr_below,
    tmc_shapley,
)

BUDGET = 101  # prime: no batch size divides it


@pytest.mark.parametrize("estimator, batches", [
    (tmc_shapley(truncation_rtol=0.05), (7, 16, 64)),
    (tmc_shapley(truncation_rtol=None), (7, 64)),
    (tmc_shapley(truncation_rtol=0.05, antithetic=True), (8, 64)),
    (msr_banzhaf(), (7, 64)),
], ids=["tmc", "permutation", "tmc-antithetic", "msr"])
def test_evaluation_budget_is_spent_exactly_for_any_batch(estimator, batches):
    game = lumpy(7)
    outs = [run(estimator, game, key=3, stop=max_evaluations(BUDGET), batch=b, progress=False)
            for b in batches]
    for o in outs:
        assert o.evaluations == BUDGET and o.reason == f"max_evaluations({BUDGET})"
        assert o.draws == outs[0].draws
        np.testing.assert_array_equal(o.estimate.counts, outs[0].estimate.counts)
        np.testing.assert_allclose(o.estimate.values, outs[0].estimate.values, rtol=1e-12,
                                   atol=1e-14)


def test_permutations_that_fit_the_budget_are_the_first_ones():
    # The budget-limited run equals a run of exactly the permutations that fit: the first
    # `draws` of the same key (the one cut short is dropped, not folded in).
    game = lumpy(7)
    est = tmc_shapley(truncation_rtol=0.05)
    cut_short = run(est, game, key=3, stop=max_evaluations(BUDGET), batch=16, progress=False)
    whole = run(est, game, key=3, stop=max_draws(cut_short.draws), batch=16, progress=False)
    assert whole.evaluations <= BUDGET < whole.evaluations + 7 + 1  # the next one did not fit
    np.testing.assert_array_equal(cut_short.estimate.values, whole.estimate.values)


def test_draw_budget_is_made_exactly():
    out = run(msr_banzhaf(batch=16), lumpy(5), key=0, stop=max_draws(37), progress=False)
    assert out.draws == out.evaluations == 37
    np.testing.assert_array_equal(out.estimate.counts, np.full(5, 37))


def test_either_rule_caps_the_last_update():
    stop = stderr_below(1e-9) | max_evaluations(50)
    out = run(msr_banzhaf(batch=64), lumpy(5), key=0, stop=stop, progress=False)
    assert out.evaluations == 50


class Recording(Game):
    """A game with an engine chunk that records the row counts it is called with."""

    chunk = 16

    def __init__(self, game):
        super().__init__(game.n, game.fn)
        self.rows = []

    def __call__(self, weights, key=None):
        self.rows.append(np.asarray(weights).shape[0])
        return super().__call__(weights, key)


@pytest.mark.parametrize("estimator", [tmc_shapley(truncation_rtol=0.05), msr_banzhaf(batch=32)],
                         ids=["tmc", "msr"])
def test_short_last_update_is_padded_not_a_new_shape(estimator):
    game = Recording(lumpy(6))
    run(estimator, game, key=0, stop=max_evaluations(BUDGET), progress=False)
    # whole chunks only (the engine trains them one chunk at a time: one compiled shape)
    assert game.rows and all(rows % 16 == 0 for rows in game.rows)


def test_budget_below_the_first_evaluations_is_one_clear_error():
    with pytest.raises(ValuationError, match="does not cover"):
        run(tmc_shapley(), lumpy(6), key=0, stop=max_evaluations(3), progress=False)


@pytest.fixture(scope="module")
def utility(blobs):
    """One engine for the module: compiled once, chunks of 8 models."""
    train, valid = blobs
    return va.make_utility(va.logistic_regression(2), train.subset(np.arange(40)), valid,
                           chunk=8)


def test_a_budget_that_completes_no_permutation_warns(utility):
    with pytest.warns(va.ValuationWarning, match="completed no draw"):
        result = va.value(utility, method="tmc", stop=max_evaluations(10), progress=False)
    assert result.extra["evaluations"] == 10 and result.extra["draws"] == 0


def test_data_oob_budget_is_exact_for_any_batch(utility):
    outs = [run(data_oob(batch=b), utility, key=1, stop=max_evaluations(21), progress=False)
            for b in (8, 16)]
    for o in outs:
        assert o.evaluations == o.draws == 21
    np.testing.assert_allclose(outs[0].estimate.values, outs[1].estimate.values, rtol=1e-12)
    np.testing.assert_array_equal(outs[0].estimate.counts, outs[1].estimate.counts)
