"""TMC truncation (Ghorbani & Zou 2019): only after several consecutive prefixes within the
tolerance, positions recorded and consistent with the values, a warning for zeroed tables."""

import numpy as np
import pytest
from shapley_games import lumpy, majority
from split_helpers import standardized_split

import valuation as va
from valuation.api import _warn_if_mostly_zero
from valuation.runner import as_key, draw_keys, run
from valuation.shapley import max_draws, tmc_shapley
from valuation.shapley.samplers import permutations


def test_truncation_waits_for_five_consecutive_prefixes():
    # majority(12, 3): U = 1 from the third player on, so prefixes 3..7 are the first five in
    # a row at U(N); the single-prefix rule would have cut at 3.
    out = run(tmc_shapley(), majority(12, 3), key=0, stop=max_draws(20), progress=False)
    np.testing.assert_array_equal(out.state.cuts, np.full(20, 7))
    assert out.evaluations == 1 + 3 + 20 * 7  # U(empty), three full fits, prefixes 1..7


@pytest.mark.parametrize("patience, rtol", [(1, 0.05), (5, 0.25)])
def test_recorded_positions_follow_the_rule_and_match_the_values(patience, rtol):
    # Ground truth: replay every permutation on the game, find where `patience` prefixes in
    # a row first lie within rtol |U(N) - U(empty)| of U(N), and rebuild the values with
    # every marginal after that position set to 0.
    n, draws = 9, 24
    game = lumpy(n, seed=5)
    out = run(tmc_shapley(truncation_rtol=rtol, truncation_patience=patience), game, key=4,
              stop=max_draws(draws), batch=8, progress=False)
    orders = np.asarray(permutations(draw_keys(as_key(4), 0, draws), n))
    full, empty = game(np.ones((1, n)))[0], game(np.zeros((1, n)))[0]
    values = np.zeros(n)
    for order, recorded in zip(orders, out.state.cuts):
        prefixes = [game((np.isin(np.arange(n), order[:t]))[None])[0] for t in range(n + 1)]
        within = np.abs(np.array(prefixes[1:]) - full) <= rtol * abs(full - empty)
        runs = np.convolve(within, np.ones(patience), "full")[:n] >= patience
        cut = int(np.argmax(runs)) + 1 if runs.any() else n
        assert recorded == cut
        kept = np.array(prefixes[:cut + 1] + [prefixes[cut]] * (n - cut))
        values[order] += np.diff(kept) / draws
    assert 0 < (out.state.cuts < n).sum()  # the rule did truncate some permutations
    np.testing.assert_allclose(out.estimate.values, values, rtol=1e-10, atol=1e-12)
    record = tmc_shapley(truncation_rtol=rtol).extra(out.state)["truncation"]
    assert record["positions"] == out.state.cuts.tolist() and record["permutations"] == draws


def test_mostly_zero_values_warn():
    extra = {"draws": 10, "truncation": {"share_of_marginals_zeroed": 0.9,
                                         "median_position": 3.0}}
    with pytest.warns(va.ValuationWarning, match="60 % of the tmc_shapley values"):
        _warn_if_mostly_zero(np.array([0, 0, 0, 1.0, 2.0]), "tmc_shapley", extra)


@pytest.mark.slow  # 100 permutations of ~500 rows
def test_default_tmc_does_not_zero_an_imbalanced_table():
    # 6 % positives, a model barely better than always predicting the majority: a one-class
    # prefix (a constant predictor) scores like U(N). The single-prefix rule truncated every
    # permutation within a few positions: 59 % of the values exactly 0 (measured with the
    # previous code on this very table).
    data = va.make_classification(4 * 1900, 10, separation=0.7, seed=0)
    y = np.asarray(data.y)
    rows = np.concatenate([np.flatnonzero(y == 0)[:1900], np.flatnonzero(y == 1)[:121]])
    train, valid = standardized_split(data.subset(np.sort(rows)), fractions=(0.25, 0.75))
    assert 0.05 < np.mean(train.y) < 0.07 and 400 < train.n < 600
    result = va.value(train, method="tmc", valid=valid, progress=False)
    assert np.mean(result.values == 0) < 0.5
    record = result.extra["truncation"]
    assert len(record["positions"]) == result.extra["draws"] == 100
    assert record["min_position"] >= 5
