"""Influence functions predict actual leave-one-out retraining (Koh & Liang 2017, Fig. 2)."""

import jax
import numpy as np
from influence_setup import L2, mean_valid_loss, newton, unbatch

from valuation.influence import influence

N_LOO = 40


def test_influence_predicts_leave_one_out(logreg):
    model, params, train, valid = logreg
    # Retrain without each of the first 40 samples: one batched Newton call, weights 1 - e_i.
    weights = np.ones((N_LOO, train.n), np.float32)
    weights[np.arange(N_LOO), np.arange(N_LOO)] = 0.0
    loo = newton(train, weights, init=params, steps=10)
    base = mean_valid_loss(model, params, valid)
    change = np.asarray(jax.vmap(lambda p: mean_valid_loss(model, p, valid))(loo) - base)
    for method in ("exact", "cg"):
        values = influence(model, params, train, valid, method=method, l2=L2).values[
            :N_LOO
        ]
        # Positive value = removing the sample raises the validation loss.
        assert np.corrcoef(values, change)[0, 1] >= 0.95, method
        # Same units: a first-order prediction of the loss change, not just its ranking.
        slope = np.dot(values, change) / np.dot(values, values)
        assert 0.7 < slope < 1.3, (method, slope)
        assert np.mean(np.sign(values) == np.sign(change)) >= 0.8


def test_helpful_and_harmful_have_opposite_signs(logreg):
    """Flipping a label makes that sample harmful: its value drops below zero."""
    model, _, train, valid = logreg
    noisy, flipped = train.flip_labels(0.1, seed=0)
    fitted = unbatch(newton(noisy, np.ones((1, noisy.n))))
    values = influence(model, fitted, noisy, valid, method="exact", l2=L2).values
    assert np.mean(values[flipped]) < 0 < np.mean(values[~flipped])
