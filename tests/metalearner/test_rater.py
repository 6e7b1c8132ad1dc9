"""DataRater: a flipped block is down-weighted on training and new rows; same seed, same
rater; rows by content and columns by name; one interface with `value`."""

import dataclasses
import json

import jax
import numpy as np
import pandas as pd
import pytest

import valuation as va
from metalearner.rater import RATER_GROUPS, DataRater

# Small and quick: the cheapest feature groups (one compiled feature program).
FAST = {"outer_steps": 40, "k": 5, "folds": 3,
        "groups": ("model", "label"), "members": 2}
N_FLIP_TRAIN, N_FLIP_NEW = 16, 8


def _flip_block(data, k):
    """`data` with the labels of its first `k` rows flipped (a binary task)."""
    y = np.asarray(data.y).copy()
    y[:k] = 1 - y[:k]
    return data.replace(y=y.astype(np.int32))


@pytest.fixture(scope="module")
def task():
    data = va.make_classification(200, 4, separation=2.5, seed=0)
    train, valid = data.split(0.6, 0.4, seed=0)
    fit_rows, new_rows = train.split(0.7, 0.3, seed=1)
    fit_rows, new_rows = _flip_block(fit_rows, N_FLIP_TRAIN), _flip_block(new_rows, N_FLIP_NEW)
    utility = va.make_utility(va.logistic_regression(2), fit_rows, valid)
    return utility, new_rows, DataRater(seed=0, **FAST).fit(utility)


def test_the_flipped_block_weighs_less_than_the_clean_block_on_training_and_new_rows(task):
    _, new_rows, rater = task
    train_values = rater.value().values
    new_values = rater.predict(new_rows).values
    for values, k in ((train_values, N_FLIP_TRAIN), (new_values, N_FLIP_NEW)):
        assert values[:k].mean() < values[k:].mean()
        assert np.median(values[:k]) < np.percentile(values[k:], 25)
    # The outer objective (the inner copies' validation loss) went down.
    assert (rater.state.losses[:, -1] < rater.state.losses[:, 0]).all()  # every member


def test_same_seed_gives_the_same_rater_and_values_through_value(task):
    utility, _, rater = task
    again = va.value(utility, method="rater", seed=0, progress=False, **FAST)
    np.testing.assert_array_equal(again.values, rater.value().values)
    np.testing.assert_array_equal(again.ids, utility.train.ids)
    assert again.method == "data_rater"


def test_rows_by_content_and_columns_by_name(task):
    utility, _, rater = task
    train = utility.train
    renamed = train.subset(np.arange(10)).replace(ids=np.array([f"new{i}" for i in range(10)]))
    # A training row under a fresh id is that training row; columns may come in any order.
    reordered = renamed.select_features(train.feature_names[::-1])
    # float32 scores: values of order 1 agree to ~1e-7 absolute (a value near 0 only so)
    np.testing.assert_allclose(rater.predict(reordered).values, rater.value().values[:10],
                               rtol=1e-6, atol=1e-6)
    moved = train.subset(np.arange(3)).replace(x=np.asarray(train.x[:3]) + 1.0)
    with pytest.raises(va.ValuationError, match="id of a training row"):
        rater.predict(moved)
    assert rater.predict(moved, id_conflict="new").values.shape == (3,)


def test_bad_options_and_unfitted_rater_give_one_clear_error(task):
    utility = task[0]
    with pytest.raises(va.ValuationError, match="unknown option"):
        va.value(utility, method="rater", progress=False, steps=3)
    with pytest.raises(va.ValuationError, match="not fitted"):
        DataRater().value()
    with pytest.raises(va.ValuationError, match="at least 1"):
        DataRater(inner_steps=0)
    with pytest.raises(va.ValuationError, match="at least 2"):
        DataRater(members=1)
    with pytest.raises(va.ValuationError, match="inner_models=5 copies.*bags=4"):
        DataRater(inner_models=5, bags=4)


def _only_member(rater, j):
    """`rater` with every member replaced by its member `j`: that member's values, alone."""
    s = rater.state
    params = jax.tree_util.tree_map(lambda a: np.asarray(a)[[j, j]], s.params)
    state = dataclasses.replace(s, params=params, shift=s.shift[[j, j]])
    return dataclasses.replace(rater, members=2, state=state)


def test_the_ensemble_value_is_the_members_mean_and_its_stderr_their_spread(task):
    _, new_rows, rater = task
    for rows in (rater.state.train, new_rows):
        alone = [_only_member(rater, j).predict(rows) for j in range(2)]
        for one in alone:
            np.testing.assert_array_equal(one.stderr, 0.0)  # identical members: no spread
        per_member = np.stack([one.values for one in alone])
        got = rater.predict(rows)
        np.testing.assert_allclose(got.values, per_member.mean(0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.stderr, per_member.std(0, ddof=1) / np.sqrt(2),
                                   rtol=1e-10, atol=1e-12)
        assert got.stderr.min() > 0  # members from different keys differ on every row
    # Each member on its own also puts the flipped block below the clean one.
    for j in range(2):
        values = _only_member(rater, j).value().values
        assert values[:N_FLIP_TRAIN].mean() < values[N_FLIP_TRAIN:].mean()


@pytest.mark.slow
def test_valuate_value_fit_meta_and_predict_with_the_rater(tmp_path):
    from valuate.cli import main

    rng = np.random.default_rng(0)
    y = np.array(["yes", "no"])[np.arange(60) % 2]
    x = rng.normal(size=(60, 3)) + 1.5 * (y == "yes")[:, None]
    table = pd.DataFrame({"rid": [f"r{i}" for i in range(60)], "f0": x[:, 0],
                          "f1": x[:, 1], "f2": x[:, 2], "target": y})
    table.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "v.csv"
    assert main(["value", str(tmp_path / "data.csv"), "--label", "target", "--id-column",
                 "rid", "--method", "rater", "--out", str(out), "--quiet"]) == 0
    frame = pd.read_csv(out)
    assert list(frame["id"]) == list(table["rid"])
    assert frame["value"].notna().sum() == 48  # 20 % held out for validation
    meta, predicted = tmp_path / "rater.npz", tmp_path / "p.csv"
    assert main(["fit-meta", str(out), "--method", "rater", "--out", str(meta),
                 "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "data.csv"), "--meta", str(meta), "--out",
                 str(predicted), "--quiet"]) == 0
    # Same data, split and seed: the rater of fit-meta is the rater of value.
    again = pd.read_csv(predicted).set_index("id").loc[frame["id"]]
    valued = frame["value"].notna().to_numpy()
    np.testing.assert_allclose(again["value"].to_numpy()[valued],
                               frame["value"].to_numpy()[valued], rtol=1e-6, atol=1e-6)


def test_save_and_load_give_the_same_values_for_the_same_target_only(task, tmp_path):
    utility, new_rows, rater = task
    path = tmp_path / "rater.npz"
    rater.save(path)
    loaded = DataRater.load(path, utility.model)
    np.testing.assert_array_equal(loaded.predict(new_rows).values,
                                  rater.predict(new_rows).values)
    np.testing.assert_array_equal(loaded.value().ids, rater.value().ids)
    with pytest.raises(va.ValuationError, match="target model"):
        DataRater.load(path, va.mlp(2))


def test_a_rater_saved_in_the_old_format_is_refused_with_one_clear_error(task, tmp_path):
    utility, _, rater = task
    path = tmp_path / "rater.npz"
    rater.save(path)
    sidecar = tmp_path / "rater.npz.json"
    meta = json.loads(sidecar.read_text())
    meta["format"] = "valuate.datarater/2"  # with warm_steps, before the refit starts
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(va.ValuationError, match=r"format 'valuate.datarater/2'.*fit and save"):
        DataRater.load(path, utility.model)


@pytest.mark.parametrize(("rows", "target", "groups"), [
    (31, "logistic", FAST["groups"]),
    (29, "logistic", RATER_GROUPS),
    (27, "mlp", RATER_GROUPS),
])
def test_the_feature_program_and_meta_training_compile_once_ahead_of_the_fits(
        task, caplog, rows, target, groups):
    # Shapes no other test uses (`rows` training rows), so the programs are new here; the
    # ahead-of-time compiles (`compile_features_ahead` with the utility's batched fit,
    # `_compile_ahead`) must be the ones the fit runs (a drifted shape compiles a second
    # time). A linear target without the "gradient" group compiles no fold-summary program
    # (its centroids come from the host).
    utility, _, _ = task
    model = va.logistic_regression(2) if target == "logistic" else va.mlp(2, (4,))
    small = va.make_utility(model, utility.train.subset(np.arange(rows)), utility.valid)
    options = {**FAST, "outer_steps": 3, "groups": groups, "bags": 4}
    jax.config.update("jax_log_compiles", True)  # global: the context manager is per thread
    try:
        with caplog.at_level("WARNING", logger="jax"):
            DataRater(seed=0, **options).fit(small)
    finally:
        jax.config.update("jax_log_compiles", False)

    def compiles(name):
        return sum(f"Finished XLA compilation of jit({name})" in r.getMessage()
                   for r in caplog.records)

    assert compiles("_meta_train") == 1
    assert compiles("_features") == 1
    # the fold models with the "bagging" refits, else the starts' refits apart: ahead too
    assert compiles("fit_weighted") == 1 + ("bagging" not in groups)
    assert compiles("_summaries") == (target == "mlp")
