"""Data-OOB: matches an independent bagging of scikit-learn models; finds flipped labels."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import valuation as va
from valuation.evaluate.noisy_labels import detection_auroc
from valuation.runner import draw_keys, run
from valuation.shapley import data_oob, max_draws
from valuation.shapley.samplers import bootstrap_counts


def test_bootstrap_counts_are_resamples():
    counts = np.asarray(bootstrap_counts(draw_keys(va.runner.as_key(0), 0, 200), 50))
    assert counts.shape == (200, 50) and np.all(counts.sum(axis=1) == 50)
    assert np.all(counts == np.round(counts))
    assert abs((counts == 0).mean() - (1 - 1 / 50) ** 50) < 0.02  # P(out-of-bag) ~ 0.364


def test_matches_independent_bagging_with_sklearn(blobs):
    train, valid = blobs
    u = va.make_utility(va.logistic_regression(2), train, valid, l2=1.0)
    b = 16
    out = run(data_oob(), u, key=7, stop=max_draws(b), batch=b, progress=False).estimate
    # the same bootstrap resamples, fitted by scikit-learn (C = 1 / l2)
    counts = np.asarray(bootstrap_counts(draw_keys(va.runner.as_key(7), 0, b), train.n))
    correct = np.empty((b, train.n))
    for j in range(b):
        clf = LogisticRegression(C=1.0, tol=1e-10, max_iter=1000)
        clf.fit(train.x, train.y, sample_weight=counts[j])
        correct[j] = clf.predict(train.x) == train.y
    oob = counts == 0
    want = np.where(oob, correct, 0).sum(0) / np.maximum(oob.sum(0), 1)
    np.testing.assert_array_equal(out.counts, oob.sum(0))
    assert np.mean(np.abs(out.values - want)) < 0.005
    assert np.all(out.values >= 0) and np.all(out.values <= 1)


@pytest.mark.parametrize("score", ["accuracy",
                                   pytest.param("probability", marks=pytest.mark.slow)])
def test_flipped_labels_get_low_values(cancer, score):
    train, _ = cancer
    noisy, flipped = train.flip_labels(0.1, seed=0)
    result = va.value(noisy, method="oob", score=score, stop=va.shapley.max_draws(128),
                      progress=False)
    assert result.method == "data_oob" and result.params["score"] == score
    assert detection_auroc(result.values, flipped) > 0.9
    assert np.all(result.counts > 20)  # ~0.37 * 128 out-of-bag models each


def test_scores_the_engines_device_copy_of_the_training_rows(blobs, monkeypatch):
    train, valid = blobs
    u = va.make_utility(va.logistic_regression(2), train, valid)
    x, y = u.train_on_device  # the arrays the compiled programs train on, put there once
    assert x is u.train_on_device[0] and y is u.train_on_device[1]
    np.testing.assert_array_equal(np.asarray(x), train.x)
    np.testing.assert_array_equal(np.asarray(y), train.y)
    alone = run(data_oob(), u, key=3, stop=max_draws(8), batch=4, progress=False)
    copies = []
    real = jnp.asarray

    def counting(a, *args, **kw):
        if isinstance(a, np.ndarray) and a.shape == train.x.shape:
            copies.append(a.shape)
        return real(a, *args, **kw)

    monkeypatch.setattr(jnp, "asarray", counting)
    again = run(data_oob(), u, key=3, stop=max_draws(8), batch=4, progress=False)
    assert copies == []  # no update copies the features to the device again
    np.testing.assert_array_equal(again.estimate.values, alone.estimate.values)
