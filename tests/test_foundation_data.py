"""Data intake: every bad input gets one clear ValuationError; ids survive every operation."""

import numpy as np
import pandas as pd
import pytest

import valuation as va
from valuation.data import align_classes, from_arrays, from_dataframe, read_table


def _frame(n=12):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "a": rng.normal(size=n),
                         "b": rng.normal(size=n), "label": ["cat", "dog"] * (n // 2)})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_files_round_trip_ids_and_labels(tmp_path, suffix):
    df = _frame()
    path = tmp_path / f"t{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    data = va.load(path, label="label", id_column="id")
    assert data.classes == ("cat", "dog")
    assert data.feature_names == ("a", "b")
    np.testing.assert_array_equal(data.ids, df["id"].to_numpy())
    np.testing.assert_array_equal(data.labels, df["label"].to_numpy())
    np.testing.assert_allclose(data.x, df[["a", "b"]].to_numpy(), rtol=1e-6)


def _bad_frames():
    df = _frame()
    nan = df.copy()
    nan.loc[3, "b"] = np.nan
    inf = df.copy()
    inf.loc[2, "a"] = np.inf
    text = df.copy()
    text["c"] = "x"
    one_class = df.copy()
    one_class["label"] = "cat"
    dup = df.copy()
    dup.loc[1, "id"] = "r0"
    return {
        "NaN or infinite": nan, "infinite": inf, "non-numeric feature columns": text,
        "1 class": one_class, "not unique": dup,
    }


@pytest.mark.parametrize("message", list(_bad_frames()))
@pytest.mark.parametrize("source", ["frame", "csv", "parquet"])
def test_bad_tables_raise_clear_errors(tmp_path, message, source):
    df = _bad_frames()[message]
    if source == "frame":
        arg = df
    else:
        arg = tmp_path / f"bad.{source}"
        df.to_csv(arg, index=False) if source == "csv" else df.to_parquet(arg)
    with pytest.raises(va.ValuationError, match=message):
        va.load(arg, label="label", id_column="id")


def test_missing_label_column():
    with pytest.raises(va.ValuationError, match="label column 'target' not found"):
        from_dataframe(_frame(), label="target")


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(va.ValuationError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(va.ValuationError, match="unknown file type"):
        read_table(tmp_path / "t.xlsx")


def test_shape_mismatch_empty_and_wrong_rank():
    with pytest.raises(va.ValuationError, match="10 feature rows but 9 labels"):
        from_arrays(np.zeros((10, 2)), np.arange(9) % 2)
    with pytest.raises(va.ValuationError, match="empty"):
        from_arrays(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(va.ValuationError, match="2-D"):
        from_arrays(np.zeros((4, 2, 2)), np.arange(4) % 2)
    with pytest.raises(va.ValuationError, match="one-hot"):
        from_arrays(np.zeros((4, 2)), np.eye(4)[:, :2])
    assert from_arrays(np.zeros((4, 2)), [0.5, 1.5, 0.5, 1.5]).task == "regression"


def test_validation_sharing_no_class_with_training():
    train = from_arrays(np.zeros((4, 1)), ["a", "b", "a", "b"])
    valid = from_arrays(np.zeros((4, 1)), ["c", "d", "c", "d"])
    with pytest.raises(va.ValuationError, match="shares no class"):
        align_classes(train, valid)
    partial = from_arrays(np.zeros((4, 1)), ["a", "c", "a", "c"])
    with pytest.raises(va.ValuationError, match="classes the training set lacks"):
        align_classes(train, partial)
    wrong_d = from_arrays(np.zeros((4, 2)), ["a", "b", "a", "b"])
    with pytest.raises(va.ValuationError, match="2 features"):
        align_classes(train, wrong_d)


def test_split_is_seeded_stratified_disjoint_and_keeps_ids():
    data = va.load_bundled("breast_cancer")
    a1, b1, c1 = data.split(0.6, 0.2, 0.2, seed=3)
    a2, _, _ = data.split(0.6, 0.2, 0.2, seed=3)
    a3, _, _ = data.split(0.6, 0.2, 0.2, seed=4)
    np.testing.assert_array_equal(a1.ids, a2.ids)
    assert not np.array_equal(a1.ids, a3.ids)
    all_ids = np.concatenate([a1.ids, b1.ids, c1.ids])
    assert len(set(all_ids.tolist())) == len(all_ids) == data.n
    share = [np.mean(p.y == 1) for p in (data, a1, b1, c1)]
    assert max(share) - min(share) < 0.02
    lookup = dict(zip(data.ids.tolist(), range(data.n)))
    rows = [lookup[i] for i in b1.ids.tolist()]
    np.testing.assert_array_equal(b1.x, data.x[rows])
    np.testing.assert_array_equal(b1.y, data.y[rows])


def test_flip_labels_flips_exactly_the_mask():
    data = va.load_bundled("wine")
    noisy, flipped = data.flip_labels(0.1, seed=0)
    assert flipped.sum() == round(0.1 * data.n)
    np.testing.assert_array_equal(noisy.y != data.y, flipped)
    np.testing.assert_array_equal(noisy.ids, data.ids)
    again, flipped2 = data.flip_labels(0.1, seed=0)
    np.testing.assert_array_equal(again.y, noisy.y)
    np.testing.assert_array_equal(flipped2, flipped)


def test_dataset_is_immutable():
    data = va.load_bundled("wine")
    with pytest.raises(ValueError):
        data.x[0, 0] = 1.0


def test_select_features_matches_by_name_and_names_every_mismatch():
    data = from_arrays(np.arange(6.0).reshape(3, 2), [0, 1, 0], feature_names=["a", "b"])
    swapped = data.select_features(["b", "a"])
    np.testing.assert_array_equal(swapped.x, data.x[:, ::-1])
    assert swapped.feature_names == ("b", "a")
    with pytest.raises(va.ValuationError, match=r"missing columns \['c'\].*not trained on \['b'\]"):
        data.select_features(["a", "c"])
