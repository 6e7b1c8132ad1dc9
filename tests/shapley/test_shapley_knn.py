"""KNN-Shapley: the closed form equals generic exact enumeration on the KNN utility."""

import sys

import jax
import numpy as np
import pytest
from shapley_games import Game

import valuation as va
from valuation import ValuationError
from valuation.shapley import exact_shapley, knn_shapley
from valuation.shapley.knn import unseen_variance


def knn_game(xt, yt, xv, yv, k):
    """U(S) = mean over validation points of (1/K) * #label matches among the
    min(K, |S|) nearest members of S (Jia et al. 2019, eq. 5)."""
    d = ((xv[:, None, :] - xt[None, :, :]) ** 2).sum(-1)  # (M, N)

    def utility(mask):
        members = np.flatnonzero(mask)
        if members.size == 0:
            return 0.0
        total = 0.0
        for v in range(len(xv)):
            nearest = members[np.argsort(d[v, members], kind="stable")[:k]]
            total += np.sum(yt[nearest] == yv[v]) / k
        return total / len(xv)

    return Game(len(xt), utility)


@pytest.mark.parametrize("k", [1, 3, 12])
def test_closed_form_equals_exact_enumeration(k):
    rng = np.random.default_rng(k)
    xt, yt = rng.normal(size=(10, 2)), rng.integers(0, 3, 10)
    xv, yv = rng.normal(size=(4, 2)), rng.integers(0, 3, 4)
    got = knn_shapley(xt, yt, xv, yv, k=k)
    want = exact_shapley(knn_game(xt, yt, xv, yv, k)).values
    np.testing.assert_allclose(got.values, want, atol=1e-6)
    assert np.all(got.stderr == 0) and np.all(got.counts == 4)


def knn_regression_game(xt, yt, xv, yv, k):
    """U(S) = mean over validation points of -(f(S) - y)^2, f(S) the sum of the targets of the
    min(K, |S|) nearest members of S divided by K (Jia et al. 2019, K-NN regression)."""
    d = ((xv[:, None, :] - xt[None, :, :]) ** 2).sum(-1)

    def utility(mask):
        members = np.flatnonzero(mask)
        total = 0.0
        for v in range(len(xv)):
            nearest = members[np.argsort(d[v, members], kind="stable")[:k]]
            total -= (np.sum(yt[nearest]) / k - yv[v]) ** 2
        return total / len(xv)

    return Game(len(xt), utility)


@pytest.mark.parametrize("k", [1, 3, 12])
def test_regression_closed_form_equals_exact_enumeration(k):
    rng = np.random.default_rng(10 + k)
    xt, yt = rng.normal(size=(10, 2)), rng.normal(2.0, 1.0, 10)
    xv, yv = rng.normal(size=(4, 2)), rng.normal(2.0, 1.0, 4)
    got = knn_shapley(xt, yt, xv, yv, k=k, regression=True)
    game = knn_regression_game(xt, yt, xv, yv, k)
    want = exact_shapley(game).values
    np.testing.assert_allclose(got.values, want, atol=2e-5 * np.abs(want).max())
    # efficiency: the values share out U(N) - U(empty)
    total = game(np.ones((1, 10)))[0] - game(np.zeros((1, 10)))[0]
    assert got.values.sum() == pytest.approx(total, abs=1e-5 * np.abs(want).sum())


def test_regression_values_through_value_and_their_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    data = va.regression_dataset(x, x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=120))
    train, valid = data.split(0.7, 0.3, seed=0)
    result = va.value(train, method="knn", valid=valid, k=5, progress=False)
    direct = knn_shapley(train.x, train.y, valid.x, valid.y, k=5, regression=True)
    np.testing.assert_allclose(result.values, direct.values)
    with pytest.raises(ValuationError, match="regression form is exact only"):
        va.value(train, method="knn", valid=valid, epsilon=1e-3, progress=False)
    with pytest.raises(ValuationError, match="exact only"):
        knn_shapley(train.x, train.y, valid.x, valid.y, epsilon=0.01, regression=True)


def test_chunking_and_row_order_do_not_change_values():
    rng = np.random.default_rng(0)
    xt, yt = rng.normal(size=(300, 5)), rng.integers(0, 2, 300)
    xv, yv = rng.normal(size=(37, 5)), rng.integers(0, 2, 37)
    ref = knn_shapley(xt, yt, xv, yv, k=5).values
    np.testing.assert_allclose(knn_shapley(xt, yt, xv, yv, k=5, chunk=8).values, ref,
                               atol=1e-6)
    perm = rng.permutation(300)
    np.testing.assert_allclose(knn_shapley(xt[perm], yt[perm], xv, yv, k=5).values,
                               ref[perm], atol=1e-6)


@pytest.mark.slow  # trains an MLP
def test_model_embedding_makes_values_model_specific(blobs):
    train, valid = blobs
    u = va.make_utility(va.mlp(2, hidden=(8,)), train, valid, steps=50)
    raw = va.value(u, method="knn", progress=False)
    model = va.value(u, method="knn", embedding="model", progress=False)
    assert raw.method == "knn_shapley" and model.params["embedding"] == "model"
    assert not np.allclose(raw.values, model.values)  # the target model's own geometry


def test_user_embeddings_and_errors(blobs):
    train, valid = blobs
    u = va.make_utility(va.logistic_regression(2), train, valid)
    user = va.value(u, method="knn", embedding=(train.x[:, :2], valid.x[:, :2]), k=3,
                    progress=False)
    np.testing.assert_allclose(
        user.values, knn_shapley(train.x[:, :2], train.y, valid.x[:, :2], valid.y, k=3).values)
    with pytest.raises(ValuationError, match="rows"):
        va.value(u, method="knn", embedding=(train.x[:5], valid.x), progress=False)
    with pytest.raises(ValuationError, match="unknown embedding"):
        va.value(u, method="knn", embedding="pixels", progress=False)


def _problem(n, m, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)), rng.integers(0, 2, n), rng.normal(size=(m, 3)),
            rng.integers(0, 2, m))


@pytest.mark.parametrize("epsilon", [0.05, 0.01])
def test_truncation_stays_within_epsilon_of_exact(epsilon):
    # Jia et al. 2019, Theorem 4: keeping K* = max(K, ceil(1/eps)) neighbours moves every
    # value by at most eps
    xt, yt, xv, yv = _problem(400, 30)
    exact = knn_shapley(xt, yt, xv, yv, k=5).values
    approx = knn_shapley(xt, yt, xv, yv, k=5, epsilon=epsilon)
    err = np.abs(approx.values - exact)
    assert err.max() <= epsilon
    assert err.max() > 0  # a truncation that changes nothing was not applied
    assert np.all(approx.stderr == 0)
    # K* >= N: no truncation at all
    full = knn_shapley(xt, yt, xv, yv, k=5, epsilon=1 / 400)
    np.testing.assert_allclose(full.values, exact, atol=1e-7)


def test_validation_sample_stderr_covers_sparse_values():
    # N >> m K*: most training points are among no sampled validation point's K* nearest.
    # Their sample variance is 0; without the unseen_variance floor the 1.96-stderr
    # intervals covered about half of the full-population values (0.45-0.48 measured).
    rng = np.random.default_rng(0)
    n, m_all, m, k = 2000, 2000, 200, 5
    xt, xv = rng.normal(size=(n, 5)), rng.normal(size=(m_all, 5))
    yt = (xt[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    yv = (xv[:, 0] + 0.5 * rng.normal(size=m_all) > 0).astype(int)
    full = knn_shapley(xt, yt, xv, yv, k=k, epsilon=0.1)
    for seed in range(3):
        est = knn_shapley(xt, yt, xv, yv, k=k, epsilon=0.1, valid_sample=m,
                          key=jax.random.PRNGKey(seed))
        assert np.all(est.stderr > 0)
        assert np.mean(np.abs(est.values - full.values) <= 1.96 * est.stderr) >= 0.9
        assert est.stderr.min() == pytest.approx(
            np.sqrt((1 - m / m_all) * unseen_variance(k, m) / m), rel=1e-6)


def test_validation_sample_stderr_matches_spread_over_draws():
    xt, yt, xv, yv = _problem(40, 200, seed=1)
    everything = knn_shapley(xt, yt, xv, yv, k=3, valid_sample=200, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(everything.values, knn_shapley(xt, yt, xv, yv, k=3).values)
    assert np.all(everything.stderr == 0)  # finite-population correction: whole population
    draws = [knn_shapley(xt, yt, xv, yv, k=3, valid_sample=50, key=jax.random.PRNGKey(s))
             for s in range(120)]
    values = np.stack([d.values for d in draws])
    assert np.all(draws[0].counts == 50)
    # the reported variance of a draw's mean (with its fpc) equals the spread over draws;
    # pooled over 40 training points the ratio's own spread is a few percent
    ratio = values.var(axis=0, ddof=1).sum() / np.mean([d.stderr**2 for d in draws], 0).sum()
    assert 0.85 < ratio < 1.15
    np.testing.assert_allclose(values.mean(axis=0), everything.values,
                               atol=4 * values.std(axis=0).max() / np.sqrt(120))


def test_scale_settings_errors():
    xt, yt, xv, yv = _problem(20, 5)
    with pytest.raises(ValuationError, match="epsilon"):
        knn_shapley(xt, yt, xv, yv, epsilon=2.0)
    with pytest.raises(ValuationError, match="key"):
        knn_shapley(xt, yt, xv, yv, valid_sample=3)


def test_hnsw_index_finds_the_exact_neighbours_on_a_small_set():
    pytest.importorskip("faiss")
    from valuation.shapley.neighbours import hnsw_search

    xt, yt, xv, yv = _problem(3000, 40, seed=2)
    exact = knn_shapley(xt, yt, xv, yv, k=5, epsilon=0.01)
    approx = knn_shapley(xt, yt, xv, yv, k=5, epsilon=0.01, search=hnsw_search(xt, threads=1))
    # recall ~1 on 3000 points in 3-D: the same values but for rare misses
    assert np.mean(np.abs(approx.values - exact.values) < 1e-9) > 0.98
    assert np.abs(approx.values - exact.values).max() <= 0.01


def test_index_errors(monkeypatch):
    xt, yt, xv, yv = _problem(20, 5)
    with pytest.raises(ValuationError, match="epsilon"):
        knn_shapley(xt, yt, xv, yv, search=lambda x, k: None)
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if not installed
    from valuation.shapley.neighbours import hnsw_search

    with pytest.raises(ValuationError, match="valuate\\[ann\\]"):
        hnsw_search(xt)


def test_auto_settings_sort_at_most_the_exact_budget():
    from valuation.shapley.knn import EXACT_PAIRS, auto_settings

    assert auto_settings(100_000, 1_000) == (None, None)  # exact, every validation row
    assert auto_settings(10_000, 30_000) == (None, 25_000)  # sampled down to the budget
    assert auto_settings(800_000, 200_000) == (1e-3, 10_000)  # sampled and truncated
    for n, m in [(5_000, 10**6), (300_000, 5_000), (10**7, 10**5)]:
        epsilon, sample = auto_settings(n, m)
        assert epsilon is not None or n * (sample or m) <= EXACT_PAIRS
