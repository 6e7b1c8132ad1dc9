"""KNN-Shapley: the closed form equals generic exact enumeration on the KNN utility."""

import numpy as np
import pytest
from shapley_games import Game

import valuation as va
from valuation import ValuationError
from valuation.shapley import exact_shapley, knn_shapley


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
