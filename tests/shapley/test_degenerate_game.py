"""The two games of the utility engine: degenerate subsets (fewer than two classes) scored as
their class-frequency predictor (default) or as 0 (pyDVL's convention)."""

import numpy as np
import pytest
from shapley_games import Game

import valuation as va
from valuation import ValuationError
from valuation.shapley import exact_shapley


@pytest.fixture(scope="module")
def tiny(blobs):
    """Eight training rows (both classes), the blobs' validation set."""
    train, valid = blobs
    rows = np.concatenate([np.flatnonzero(train.y == c)[:4] for c in (0, 1)])
    return train.subset(rows), valid


@pytest.fixture(scope="module")
def games(tiny):
    """The utilities of the two games on `tiny`, compiled once for the module."""
    return tuple(va.make_utility(va.logistic_regression(2), *tiny, degenerate=game)
                 for game in ("frequency", "zero"))


def test_zero_game_scores_degenerate_subsets_exactly_zero(tiny, games):
    train, valid = tiny
    freq, zero = games
    one_class = (train.y == 1).astype(np.float32)
    both = np.zeros(train.n, np.float32)
    both[[0, train.n - 1]] = 1.0
    masks = np.stack([np.zeros(train.n, np.float32), one_class, both, np.ones(train.n)])
    ours, theirs = zero(masks), freq(masks)
    assert ours[0] == 0.0 and ours[1] == 0.0
    assert theirs[0] == pytest.approx(0.5) and theirs[1] == pytest.approx(np.mean(valid.y == 1))
    np.testing.assert_array_equal(ours[2:], theirs[2:])  # trained subsets: the same game
    assert zero.describe()["degenerate"] == "zero"
    assert freq.describe()["degenerate"] == "frequency"


def test_exact_shapley_of_the_two_games_differs_as_predicted(tiny, games):
    # The games differ by G(S) = U_frequency(S) [S has < 2 classes], and Shapley values are
    # linear in the game: phi_zero = phi_frequency - phi(G). By efficiency the totals differ
    # by U_frequency(empty) = 1/2 (a uniform guess's accuracy).
    train, _ = tiny
    freq, zero = games
    y, n = np.asarray(train.y), train.n
    masks = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # every coalition, as exact does
    scores = freq(masks.astype(np.float32))

    def degenerate_part(mask):
        if len(np.unique(y[mask])) >= 2:
            return 0.0
        return scores[int(np.sum(mask << np.arange(n)))]

    phi_freq, phi_zero = exact_shapley(freq).values, exact_shapley(zero).values
    phi_g = exact_shapley(Game(train.n, degenerate_part)).values
    np.testing.assert_allclose(phi_zero, phi_freq - phi_g, atol=1e-9)
    assert phi_zero.sum() - phi_freq.sum() == pytest.approx(0.5, abs=1e-9)
    assert np.abs(phi_g).max() > 0.01  # the games do differ on this data


def test_value_records_the_game_and_refuses_an_unknown_one(tiny):
    train, valid = tiny
    result = va.value(train, method="loo", valid=valid, progress=False,
                      utility_options={"degenerate": "zero"})
    assert result.params["utility"]["degenerate"] == "zero"
    with pytest.raises(ValuationError, match="unknown degenerate"):
        va.make_utility(va.logistic_regression(2), train, valid, degenerate="none")
