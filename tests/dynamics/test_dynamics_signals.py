"""Dynamics signals against hand computations on short, hand-made trajectories."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import valuation as va
from valuation.dynamics import (
    FEATURE_COLUMNS,
    Trace,
    signal_values,
    signals_frame,
    trajectory,
    with_extra_class,
)
from valuation.dynamics import signals as sg

# 5 epochs x 4 samples: sample 0 learned, forgotten, relearned, forgotten (2 events);
# sample 1 never learned; sample 2 always right; sample 3 forgotten once.
CORRECT = np.array([[1, 0, 1, 0],
                    [0, 0, 1, 1],
                    [1, 0, 1, 1],
                    [0, 0, 1, 0],
                    [0, 0, 1, 1]], bool)


def _trace(seeds=1, epochs=5, n=4, **fields):
    """A Trace of zeros `(seeds, epochs, n)` with some fields set."""
    base = {f: np.zeros((seeds, epochs, n)) for f in Trace._fields}
    base["correct"] = np.zeros((seeds, epochs, n), bool)
    base.update(fields)
    return Trace(**base)


def test_forgetting_events_and_never_learned_by_hand():
    np.testing.assert_array_equal(sg.forgetting_events(CORRECT), [2, 0, 0, 1])
    np.testing.assert_array_equal(sg.never_learned(CORRECT), [False, True, False, False])
    # never learned ranks below the most forgetful possible sample: -(5 // 2 + 1) = -3
    np.testing.assert_array_equal(sg.forgetting_value(CORRECT), [-2.0, -3.0, 0.0, -1.0])


def test_aum_is_mean_margin_by_hand():
    margins = np.array([[2.0, -1.0], [1.0, -3.0], [0.0, 1.0]])
    np.testing.assert_allclose(sg.aum(margins), [1.0, -1.0])


def test_data_map_by_hand():
    prob = np.array([[0.2, 0.9], [0.4, 0.9], [0.6, 0.9]])
    np.testing.assert_allclose(sg.confidence(prob), [0.4, 0.9])
    np.testing.assert_allclose(sg.variability(prob), [np.sqrt(0.08 / 3), 0.0], atol=1e-12)
    np.testing.assert_allclose(sg.correctness(CORRECT), [0.4, 0.0, 1.0, 0.6])


def test_region_by_hand():
    conf = np.array([0.9, 0.2, 0.6, 0.1, 0.95, 0.4])
    var = np.array([0.01, 0.02, 0.30, 0.40, 0.03, 0.05])
    # top third by variability (samples 3, 2) is ambiguous; the rest split at confidence 0.5
    assert sg.region(conf, var).tolist() == ["easy-to-learn", "hard-to-learn", "ambiguous",
                                             "ambiguous", "easy-to-learn", "hard-to-learn"]


def test_early_epoch_reads_the_right_row():
    stat = np.arange(12.0).reshape(3, 4)  # 3 epochs x 4 samples
    np.testing.assert_array_equal(sg.el2n(stat, 1), [0, 1, 2, 3])
    np.testing.assert_array_equal(sg.grand(stat, 3), [8, 9, 10, 11])
    assert sg.default_early_epoch(30) == 3 and sg.default_early_epoch(4) == 1
    with pytest.raises(va.ValuationError, match="early epoch 4"):
        sg.el2n(stat, 4)


def test_alignment_sums_over_checkpoints():
    np.testing.assert_allclose(sg.alignment(np.array([[1.0, -2.0], [0.5, 1.0]])), [1.5, -1.0])


def test_signal_values_sign_mean_and_stderr_over_seeds():
    # two seeds; margins chosen so that the per-seed AUMs are (1, 3) and (-2, 0)
    margin = np.stack([np.array([[1.0, 2.0], [1.0, 4.0]]), np.array([[-2.0, 0.0], [-2.0, 0.0]])])
    error = np.stack([np.array([[0.5, 0.1], [0.0, 0.0]]), np.array([[0.7, 0.3], [0.0, 0.0]])])
    trace = _trace(seeds=2, epochs=2, n=2, margin=margin, error_norm=error)
    r = signal_values(trace, np.array(["a", "b"]), "aum")
    np.testing.assert_allclose(r.values, [-0.5, 1.5])
    np.testing.assert_allclose(r.stderr, [1.5, 1.5])  # std(ddof=1) / sqrt(2) of (1, -2), (3, 0)
    np.testing.assert_array_equal(r.counts, [2, 2])
    assert r.method == "dynamics_aum" and r.ids.tolist() == ["a", "b"]
    e = signal_values(trace, np.array(["a", "b"]), "el2n", early_epoch=1)
    np.testing.assert_allclose(e.values, [-0.6, -0.2])  # minus EL2N: high error = low value
    f = signal_values(_trace(correct=CORRECT[None]), np.arange(4), "forgetting")
    np.testing.assert_array_equal(f.values, [-2.0, -3.0, 0.0, -1.0])
    assert np.isnan(f.stderr).all()  # one seed: no error bar can be estimated


def test_signal_values_rejects_unknown_and_missing_validation():
    trace = _trace(alignment=np.full((1, 5, 4), np.nan))
    with pytest.raises(va.ValuationError, match="unknown dynamics signal"):
        signal_values(trace, np.arange(4), "shapley")
    with pytest.raises(va.ValuationError, match="validation set"):
        signal_values(trace, np.arange(4), "alignment")


def test_signals_frame_columns_and_seed_average():
    trace = _trace(seeds=2, correct=np.stack([CORRECT, np.ones_like(CORRECT)]))
    frame = signals_frame(trace, np.array(list("wxyz")))
    assert list(frame.columns) == ["id", *FEATURE_COLUMNS, "region"]
    assert frame["id"].tolist() == list("wxyz")
    np.testing.assert_allclose(frame["forgetting_events"], [1.0, 0.0, 0.0, 0.5])
    np.testing.assert_allclose(frame["never_learned"], [0.0, 0.5, 0.0, 0.0])


def _tiny_mlp_setup():
    model = va.mlp(3, hidden=(4,))
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 2))
    y = jnp.array([0, 1, 2, 0, 1, 2, 0])
    params = model.init(jax.random.PRNGKey(2), x)
    checkpoints = jax.tree_util.tree_map(lambda a: a[None, None], params)  # (1, 1, ...)
    return model, x, y, params, checkpoints


def test_trajectory_statistics_against_autodiff():
    model, x, y, params, checkpoints = _tiny_mlp_setup()
    xv, yv = x[:3] * 0.5, jnp.array([2, 2, 1])
    valid = va.Dataset(x=np.asarray(xv), y=np.asarray(yv, np.int32), ids=np.arange(3),
                       classes=(0, 1, 2), feature_names=("a", "b"))
    t = trajectory(model, checkpoints, x, y, n_classes=3, valid=valid)
    logits = np.asarray(model.apply(params, x), np.float64)
    z_y = logits[np.arange(7), y]
    other = np.where(np.eye(3)[y] > 0, -np.inf, logits).max(axis=1)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(t.loss[0, 0], -np.log(p[np.arange(7), y]), rtol=1e-5)
    np.testing.assert_allclose(t.prob[0, 0], p[np.arange(7), y], rtol=1e-5)
    np.testing.assert_allclose(t.margin[0, 0], z_y - other, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(t.correct[0, 0], z_y > other)
    np.testing.assert_allclose(t.error_norm[0, 0], np.linalg.norm(p - np.eye(3)[y], axis=1),
                               rtol=1e-5)

    # the last layer of the mlp is "out": per-sample gradients by autodiff
    def out_grad(xi, yi):
        def loss(out):
            z = model.apply({**params, "out": out}, xi[None])
            return optax.softmax_cross_entropy_with_integer_labels(z, yi[None])[0]
        g = jax.grad(loss)(params["out"])
        return jnp.concatenate([g["w"].ravel(), g["b"]])

    per_sample = jax.jit(jax.vmap(out_grad))
    g_train, g_valid = per_sample(x, y), per_sample(xv, yv).mean(axis=0)
    np.testing.assert_allclose(t.grad_norm[0, 0], np.linalg.norm(g_train, axis=1), rtol=1e-5)
    np.testing.assert_allclose(t.alignment[0, 0], g_train @ g_valid, rtol=1e-4, atol=1e-6)
    assert np.isnan(trajectory(model, checkpoints, x, y, n_classes=3).alignment).all()


def test_trajectory_rejects_bad_input():
    model, x, y, _, checkpoints = _tiny_mlp_setup()
    with pytest.raises(va.ValuationError, match="label codes"):
        trajectory(model, checkpoints, x, y + 1, n_classes=3)
    with pytest.raises(va.ValuationError, match="two leading axes"):
        trajectory(model, jax.tree_util.tree_map(lambda a: a[0, 0], checkpoints), x, y,
                   n_classes=3)
    with pytest.raises(va.ValuationError, match="embed"):
        trajectory(model._replace(embed=None), checkpoints, x, y, n_classes=3)


def test_extra_class_equals_a_model_with_one_more_class():
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    aug = with_extra_class(va.logistic_regression(2))
    params = aug.init(jax.random.PRNGKey(0), x)
    assert params["extra"]["w"].shape == (3, 1)  # the new output column starts at zero
    assert not np.any(params["extra"]["w"]) and not np.any(params["extra"]["b"])
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 2))
    b = jnp.array([0.3, -0.2])
    params = {"base": {"linear": {"w": w[:, :1], "b": b[:1]}}, "extra": {"w": w[:, 1:],
                                                                       "b": b[1:]}}
    # logistic_regression(2) plus a column: class 0's logit stays pinned at 0.
    reference = jnp.concatenate([jnp.zeros((5, 1)), x @ w + b], axis=1)
    np.testing.assert_allclose(aug.apply(params, x), reference, rtol=1e-6)
