"""Recording: it never perturbs training, it scores unseen samples like training samples, and
its signals find flipped labels on well-separated data."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import valuation as va
from valuation.dynamics import (
    aum_threshold_values,
    data_map_plot,
    dynamics_from_utility,
    dynamics_values,
    features_for_new_samples,
    record,
    signal_values,
    signals_frame,
)
from valuation.evaluate.noisy_labels import detection_auroc
from valuation.training import fit


@pytest.fixture(scope="module")
def noisy_blobs(blobs):
    """The `blobs` training split with 10 % of labels flipped: (noisy train, valid, flipped)."""
    train, valid = blobs
    noisy, flipped = train.flip_labels(0.1, seed=0)
    return noisy, valid, flipped


@pytest.fixture(scope="module")
def recorded(noisy_blobs):
    noisy, valid, _ = noisy_blobs
    return record(va.logistic_regression(2), noisy, key=jax.random.PRNGKey(0), epochs=20,
                  valid=valid, seeds=2)


@pytest.mark.parametrize("model, batch_size", [
    (va.logistic_regression(2), None),
    pytest.param(va.mlp(2, hidden=(8,)), 32, marks=pytest.mark.slow),  # ~10 s: two compiles
])
def test_recorder_on_and_off_give_identical_params(blobs, model, batch_size):
    train = blobs[0]
    key, epochs = jax.random.PRNGKey(3), 6
    spe = 4 if batch_size is None else -(-train.n // batch_size)
    opt = optax.sgd(0.1, momentum=0.9)
    checkpoints, _ = record(model, train, key=key, epochs=epochs, steps_per_epoch=spe,
                            batch_size=batch_size, optimizer=opt, seeds=2)
    keys = jax.random.split(key, 2)  # record's keys: one per seed
    ones = jnp.ones(train.n, jnp.float32)

    def unrecorded(k):
        return fit(model, jnp.asarray(train.x), jnp.asarray(train.y), ones, key=k, steps=epochs * spe, optimizer=opt,
                   l2=1.0, batch_size=batch_size)

    plain = jax.jit(jax.vmap(unrecorded))(keys)
    last = jax.tree_util.tree_map(lambda a: a[:, -1], checkpoints)
    for a, b in zip(jax.tree_util.tree_leaves(last), jax.tree_util.tree_leaves(plain)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_trace_and_checkpoint_shapes(recorded, noisy_blobs):
    checkpoints, trace = recorded
    n, d = noisy_blobs[0].n, noisy_blobs[0].d
    assert trace.shape == (2, 20, n)
    assert checkpoints["linear"]["w"].shape == (2, 20, d, 1)
    assert trace.correct.dtype == bool


def test_features_for_training_samples_equal_recorded_features(recorded, noisy_blobs):
    noisy, valid, _ = noisy_blobs
    checkpoints, trace = recorded
    expected = signals_frame(trace, noisy.ids)
    order = np.random.default_rng(0).permutation(noisy.n)  # any order, any subset
    got = features_for_new_samples(va.logistic_regression(2), checkpoints, noisy.x[order],
                                   noisy.y[order], n_classes=2, valid=valid,
                                   ids=noisy.ids[order])
    numeric = [c for c in expected.columns if c not in ("id", "region")]
    np.testing.assert_array_equal(got["id"], noisy.ids[order])
    np.testing.assert_allclose(got[numeric].to_numpy(), expected[numeric].to_numpy()[order],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("signal", ["aum", "confidence"])
def test_aum_and_confidence_separate_flipped_labels(recorded, noisy_blobs, signal):
    noisy, _, flipped = noisy_blobs
    values = signal_values(recorded[1], noisy.ids, signal).values
    assert detection_auroc(values, flipped) >= 0.9


def test_every_signal_ranks_flipped_labels_low(recorded, noisy_blobs):
    noisy, _, flipped = noisy_blobs
    for signal in ("correctness", "forgetting", "el2n", "grand", "alignment"):
        values = signal_values(recorded[1], noisy.ids, signal).values
        assert detection_auroc(values, flipped) >= 0.8, signal


def test_aum_threshold_samples_flag_flipped_labels(noisy_blobs):
    noisy, _, flipped = noisy_blobs
    r = aum_threshold_values(va.logistic_regression(2), noisy, key=jax.random.PRNGKey(0),
                             epochs=10)
    assert r.method == "dynamics_aum_threshold" and len(r.extra["thresholds"]) == 2
    assert set(np.unique(r.counts)) <= {1, 2} and (r.counts == 2).any()
    assert detection_auroc(r.values, flipped) >= 0.9
    flagged = r.values < 0
    assert flagged[flipped].mean() >= 0.9  # the cut-off catches the flipped labels


def test_dynamics_values_is_deterministic_and_checks_input(noisy_blobs):
    noisy, valid, _ = noisy_blobs
    model = va.logistic_regression(2)
    a = dynamics_values(model, noisy, valid, signal="alignment", key=1, epochs=4, seeds=2)
    b = dynamics_values(model, noisy, valid, signal="alignment", key=1, epochs=4, seeds=2)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.seed == 1 and a.ids.tolist() == noisy.ids.tolist()
    with pytest.raises(va.ValuationError, match="validation set"):
        dynamics_values(model, noisy, signal="alignment", key=1, epochs=4)
    with pytest.raises(va.ValuationError, match="unknown dynamics signal"):
        dynamics_values(model, noisy, signal="loo", key=1)
    with pytest.raises(va.ValuationError, match="epochs"):
        dynamics_values(model, noisy, key=1, epochs=1)


def test_data_map_plot_returns_a_figure(recorded, noisy_blobs):
    import matplotlib

    matplotlib.use("Agg")
    frame = signals_frame(recorded[1], noisy_blobs[0].ids)
    fig = data_map_plot(frame, mask=noisy_blobs[2])
    assert fig.axes[0].get_xlabel() == "variability"
    assert data_map_plot(frame).axes[0].get_ylabel() == "confidence"  # coloured by correctness
    with pytest.raises(va.ValuationError, match="mask"):
        data_map_plot(frame, mask=np.ones(3, bool))


def test_dynamics_from_utility_plugs_into_the_value_registry(noisy_blobs, monkeypatch):
    from valuation import api

    noisy, valid, _ = noisy_blobs
    monkeypatch.setitem(api.METHODS, "dynamics",
                        api.Method(dynamics_from_utility, needs_valid=False))
    r = api.value(noisy, method="dynamics", valid=valid, seed=2, progress=False,
                  signal="alignment", epochs=4, seeds=2)
    direct = dynamics_values(va.logistic_regression(2), noisy, valid, signal="alignment",
                             key=2, epochs=4, seeds=2)
    assert r.method == "dynamics_alignment" and "utility" in r.params
    np.testing.assert_array_equal(r.values, direct.values)
