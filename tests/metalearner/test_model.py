"""The ensemble regressor: weighted and multi-output losses by hand."""

import jax
import numpy as np

from metalearner.model import fit_ensemble, predict_members


def test_missing_targets_and_zero_weights_are_ignored():
    """A column with NaN entries fits only its observed rows; a zero weight drops a row:
    both fits equal the fit without those rows' influence (same split, same steps)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    t = x[:, 0] - x[:, 1]
    noisy = t.copy()
    noisy[:10] = 50.0  # wild values in rows 0-9
    key = jax.random.PRNGKey(0)
    weighted = fit_ensemble(x, noisy, key=key, members=2, steps=150,
                            sample_weight=np.r_[np.zeros(10), np.ones(50)])
    missing = fit_ensemble(x, np.where(np.arange(60) < 10, np.nan, noisy), key=key,
                           members=2, steps=150)
    for a, b in zip(jax.tree_util.tree_leaves(weighted.params),
                    jax.tree_util.tree_leaves(missing.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    pred = np.asarray(predict_members(weighted.params, x)).mean(0)
    assert np.abs(pred).max() < 10  # the wild values had no pull


def test_two_columns_give_two_outputs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 2)).astype(np.float32)
    t = np.stack([x[:, 0], -x[:, 1]], 1)
    fit = fit_ensemble(x, t, key=jax.random.PRNGKey(0), members=2, steps=400)
    pred = np.asarray(predict_members(fit.params, x)).mean(0)
    assert pred.shape == (80, 2)
    assert np.corrcoef(pred[:, 0], t[:, 0])[0, 1] > 0.9
    assert np.corrcoef(pred[:, 1], t[:, 1])[0, 1] > 0.9
