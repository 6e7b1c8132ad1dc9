"""The meta-model against real teachers on rows it never saw.

No test here defines values as a function of the meta-model's own features: the teachers are
Data-OOB, TMC-Shapley at a small budget and exact Shapley, and every bound is checked on rows
outside the valued pool, beside a label-only baseline (each row gets the pool's mean value of
its label)."""

import numpy as np
import pandas as pd
import pytest

import valuation as va
from metalearner.predictor import MetaValuator
from valuation.data import from_arrays
from valuation.shapley.exact import exact_shapley

SMALL = {"members": 4, "hidden": (32, 32), "steps": 400, "seed": 0}


def spearman(a, b):
    return pd.Series(np.asarray(a)).corr(pd.Series(np.asarray(b)), method="spearman")


@pytest.fixture(scope="module")
def noisy_cancer(cancer):
    train, valid = cancer
    train, _ = train.flip_labels(0.1, seed=0)
    model = va.logistic_regression(2)
    return va.make_utility(model, train, valid), model


@pytest.mark.parametrize("method, draws, bound, margin", [
    ("oob", 200, 0.7, 0.3),   # measured: rho 0.81, label-only 0.24
    ("tmc", 60, 0.2, 0.15),   # measured: rho 0.33, label-only 0.04 (64 permutations)
])
def test_predictions_on_held_out_rows_track_the_full_set_teacher(noisy_cancer, method, draws,
                                                                  bound, margin):
    """The teacher values the whole training set; the meta-model sees the values of the
    first half and predicts the second: Spearman to the teacher's values of those rows."""
    utility, model = noisy_cancer
    train = utility.train
    full = va.value(train, model, method=method, valid=utility.valid, seed=0,
                    stop=va.shapley.max_draws(draws), progress=False)
    half = train.n // 2
    meta = MetaValuator(**SMALL).fit(utility, full[:half])
    rest = np.arange(half, train.n)
    pred = meta.predict(train.subset(rest))
    y = train.y
    label_only = pd.Series(full.values[:half]).groupby(y[:half]).mean().reindex(y[rest])
    rho, rho_label = (spearman(v, full.values[rest]) for v in (pred.values, label_only))
    assert rho > bound and rho > rho_label + margin, (rho, rho_label)


@pytest.mark.slow
def test_a_new_rows_prediction_is_its_value_in_the_pool_game_plus_that_row():
    """Exact Shapley on a small game: the pool (11 rows, 2 flipped) is valued exactly; a new
    row's direct value is its exact Shapley value in the game of the pool plus that row
    (12 players). The meta-model's predictions of 8 new rows (4 flipped) rank like them."""
    data = va.make_classification(200, 4, separation=2.0, seed=3)
    train, valid = data.split(0.5, 0.5, seed=0)
    pool, new = train.subset(np.arange(11)), train.subset(np.arange(11, 19))
    pool, _ = pool.flip_labels(2 / 11, seed=1)
    new, flipped = new.flip_labels(0.5, seed=2)
    model = va.logistic_regression(2)
    utility = va.make_utility(model, pool, valid)
    teacher = exact_shapley(utility)
    values = va.ValuationResult(values=teacher.values, stderr=teacher.stderr,
                                counts=teacher.counts, ids=pool.ids, method="exact_shapley")
    meta = MetaValuator(members=4, hidden=(16,), steps=300, k=4, folds=3, bags=16,
                        seed=0).fit(utility, values)
    pred = meta.predict(new).values
    direct = []
    for i in range(new.n):
        row = new.subset([i])
        game = from_arrays(np.r_[pool.x, row.x], np.r_[pool.y, row.y],
                           ids=np.r_[pool.ids, row.ids], classes=tuple(range(2)))
        direct.append(exact_shapley(va.make_utility(model, game, valid)).values[-1])
    direct = np.asarray(direct)
    assert direct[flipped].max() < direct[~flipped].min()  # the game itself separates them
    assert spearman(pred, direct) > 0.6
    assert pred[flipped].mean() < pred[~flipped].mean()
