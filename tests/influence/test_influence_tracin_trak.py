"""TracIn against gradient dot products by hand; TRAK projection determinism and accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from influence_setup import L2

import valuation as va
from valuation.influence import influence, per_sample_grads, tracin, trak


def hand_grads(params, x, y):
    """Binary logistic regression, logits [0, x.w + b]: d CE / d(w, b) = (sigmoid - y)(x, 1)."""
    z = x @ np.asarray(params["linear"]["w"])[:, 0] + float(params["linear"]["b"][0])
    r = 1.0 / (1.0 + np.exp(-z)) - y
    return np.concatenate([x * r[:, None], r[:, None]], axis=1)


@pytest.fixture(scope="module")
def small(blobs):
    train, valid = blobs
    return train.subset(np.arange(60)), valid.subset(np.arange(30))


def test_tracin_one_checkpoint_is_a_dot_product(small):
    train, valid = small
    model = va.logistic_regression(2)
    params = {
        "linear": {
            "w": jnp.array([[0.3], [-0.2], [0.1], [0.5], [-0.4]]),
            "b": jnp.array([0.1]),
        }
    }
    gt = hand_grads(params, train.x.astype(np.float64), train.y)
    gv = hand_grads(params, valid.x.astype(np.float64), valid.y)
    result, matrix = tracin(
        model, [params], train, valid, learning_rates=0.5, return_matrix=True
    )
    expected = 0.5 / train.n * gt @ gv.T  # (n_train, n_valid)
    np.testing.assert_allclose(matrix, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        result.values, expected.mean(axis=1), rtol=1e-4, atol=1e-7
    )
    np.testing.assert_allclose(
        result.stderr, expected.std(axis=1, ddof=1) / np.sqrt(30), rtol=1e-3, atol=1e-8
    )
    # Checkpoints add up, each with its own learning rate.
    twice = tracin(model, [params, params], train, valid, learning_rates=[0.5, 1.0])
    np.testing.assert_allclose(twice.values, 3 * result.values, rtol=1e-4, atol=1e-7)


def test_per_sample_grads_and_layer_selection(small):
    train, _ = small
    model = va.mlp(2, hidden=(4,))
    params = model.init(jax.random.PRNGKey(1), jnp.asarray(train.x))
    full = per_sample_grads(
        model, params, train.x, train.y, chunk=7
    )  # 60 = 8 chunks, padded
    assert full.shape == (60, 5 * 4 + 4 + 4 * 2 + 2)
    one = jax.grad(
        lambda p: va.training.weighted_objective(
            model,
            p,
            jnp.asarray(train.x[3:4]),
            jnp.asarray(train.y[3:4]),
            jnp.ones(1),
            0.0,
        )
    )(params)
    np.testing.assert_allclose(
        full[3], jax.flatten_util.ravel_pytree(one)[0], rtol=1e-5, atol=1e-6
    )
    last = per_sample_grads(model, params, train.x, train.y, layers=("out",))
    np.testing.assert_allclose(
        last, full[:, -10:], rtol=1e-5, atol=1e-6
    )  # "out" leaves last
    with pytest.raises(va.ValuationError, match="not in the params"):
        per_sample_grads(model, params, train.x, train.y, layers=("nope",))


@pytest.mark.slow
def test_trak_seed_and_projection_dimension(blobs, tmp_path):
    train, valid = blobs
    model = va.mlp(2, hidden=(16,))
    xt, yt = jnp.asarray(train.x), jnp.asarray(train.y)
    params = va.fit(
        model, xt, yt, jnp.ones(train.n), key=jax.random.PRNGKey(0), steps=200, l2=0.1
    )
    key = jax.random.PRNGKey(3)
    exact = trak(model, params, train, valid, key=key, dim=None, l2=0.1).values
    a = trak(model, params, train, valid, key=key, l2=0.1, dim=16)
    b, matrix = trak(
        model,
        params,
        train,
        valid,
        key=key,
        l2=0.1,
        dim=16,
        return_matrix=True,
        matrix_path=tmp_path / "scores.npy",
    )
    np.testing.assert_array_equal(a.values, b.values)  # same key, same values
    np.testing.assert_allclose(
        np.load(tmp_path / "scores.npy").mean(axis=1), a.values, rtol=1e-5, atol=1e-9
    )
    assert matrix.shape == (train.n, valid.n)
    other = trak(
        model, params, train, valid, key=jax.random.PRNGKey(4), l2=0.1, dim=16
    ).values
    assert not np.allclose(other, a.values)
    # Larger k: closer to the unprojected estimate (mean correlation over 3 keys per k).
    corr = [
        np.mean(
            [
                np.corrcoef(
                    trak(
                        model,
                        params,
                        train,
                        valid,
                        key=jax.random.PRNGKey(s),
                        l2=0.1,
                        dim=k,
                        valid_blocks=8,
                    ).values,
                    exact,
                )[0, 1]
                for s in range(3)
            ]
        )
        for k in (8, 64, 512)
    ]
    assert corr[0] < corr[1] < corr[2] and corr[2] > 0.9, corr


def test_unprojected_trak_is_the_influence_function_for_a_linear_model(logreg):
    """Gauss-Newton = Hessian for logistic regression, so P = I gives exact influence."""
    model, params, train, valid = logreg
    ref = influence(model, params, train, valid, method="exact", l2=L2, valid_blocks=10)
    r = trak(
        model,
        params,
        train,
        valid,
        key=jax.random.PRNGKey(0),
        dim=None,
        l2=L2,
        valid_blocks=10,
    )
    scale = np.abs(ref.values).max()
    np.testing.assert_allclose(r.values, ref.values, atol=1e-3 * scale)
    np.testing.assert_allclose(r.stderr, ref.stderr, atol=1e-3 * scale)
