"""No silent wrong answer at the edges: encoding of text and missing values, float32 range,
regression-like labels, columns by name, class counts, class balance, progress lines."""

import io
import json

import numpy as np
import pandas as pd
import pytest

import valuation as va
from valuation.data import from_arrays
from valuation.encoding import apply_encoding, encoded_names, fit_encoding
from valuation.runner import _PlainLines
from valuation.utility import accuracy, balanced_accuracy, class_weights


def _frame():
    return pd.DataFrame({"num": [1.0, np.nan, 3.0, 5.0],
                         "colour": ["red", "blue", None, "red"],
                         "flag": [True, False, True, True],
                         "tag": ["a", "b", "c", "d"]})


def test_encoding_fits_once_and_applies_the_same_columns_to_any_rows():
    encoding = fit_encoding(_frame(), max_categories=3)
    assert encoded_names(encoding) == ["num", "num_missing", "colour=red", "colour=blue",
                                       "colour_missing", "flag", "tag=a", "tag=b",
                                       "tag=other"]
    x = apply_encoding(_frame(), encoding)
    assert x.loc[1, "num"] == 3.0 and x.loc[1, "num_missing"] == 1.0  # training median
    assert x.loc[2, ["colour=red", "colour=blue", "colour_missing"]].tolist() == [0, 0, 1]
    assert x["tag=other"].tolist() == [0, 0, 1, 1]  # capped: the rare tail shares a column
    # New rows, columns in another order: unseen categories go to "other" where it exists,
    # else all zeros; a missing number without a training indicator is still filled.
    new = pd.DataFrame({"tag": ["zz"], "flag": [False], "colour": ["green"], "num": [np.nan]})
    row = apply_encoding(new, encoding).iloc[0]
    assert row["tag=other"] == 1 and row[["colour=red", "colour=blue"]].sum() == 0
    assert row["num"] == 3.0
    # The record is JSON: what a sidecar stores applies unchanged after a round trip.
    again = apply_encoding(_frame(), json.loads(json.dumps(encoding)))
    pd.testing.assert_frame_equal(again, x)


def test_encoding_errors_name_the_column():
    encoding = fit_encoding(_frame())
    with pytest.raises(va.ValuationError, match=r"missing columns \['tag'\]"):
        apply_encoding(_frame().drop(columns="tag"), encoding)
    with pytest.raises(va.ValuationError, match="column 'num' holds text"):
        apply_encoding(_frame().assign(num=["1", "x", "2", "3"]), encoding)
    with pytest.raises(va.ValuationError, match="'n' holds numbers and 1 non-numeric"):
        fit_encoding(pd.DataFrame({"n": ["1", "2", "3", "oops"]}))


def test_numbers_beyond_float32_are_named_and_large_ones_survive_scaling():
    x = np.array([[1.0, 1e300], [2.0, 1.0], [3.0, 2.0], [4.0, 3.0]])
    with pytest.raises(va.ValuationError, match="exceed the float32 range.*column 'x1'"):
        from_arrays(x, [0, 1, 0, 1])
    big = from_arrays(np.array([[1e30], [2e30], [3e30], [1e30]]), [0, 1, 0, 1])
    scaled, _ = big.standardize()
    assert np.isfinite(scaled.x).all() and scaled.x.std() > 0.9  # not zeroed


def test_task_is_inferred_from_the_labels_or_taken_as_said():
    x = np.zeros((100, 1))
    whole = np.arange(100) % 25 + 100  # 25 distinct whole numbers: classes or a target?
    with pytest.raises(va.ValuationError,
                       match="regression target.*task='regression'.*task='classification'"):
        from_arrays(x, whole)
    assert from_arrays(x, whole, task="classification").n_classes == 25
    as_target = from_arrays(x, whole, task="regression")
    assert as_target.task == "regression" and as_target.y.dtype == np.float32
    np.testing.assert_array_equal(as_target.y, whole)
    assert from_arrays(x, np.arange(100) % 10).n_classes == 10  # few classes: fine
    many_rows = np.zeros((1000, 1))  # 30 classes over 1,000 rows: 3 % of the rows, classes
    assert from_arrays(many_rows, np.arange(1000) % 30).n_classes == 30
    target = from_arrays(x, np.linspace(0, 1, 100))  # not whole numbers: a target
    assert target.task == "regression" and target.classes == ()
    with pytest.raises(va.ValuationError, match="class list was passed with task='regr"):
        from_arrays(x, whole, classes=list(range(100, 125)), task="regression")
    with pytest.raises(va.ValuationError, match="regression targets must be numbers"):
        from_arrays(x, np.array(["a", "b"] * 50), task="regression")
    with pytest.raises(va.ValuationError, match="unknown task"):
        from_arrays(x, whole, task="ranking")
def test_value_matches_validation_columns_by_name_and_checks_class_count():
    data = va.make_classification(60, 3, n_classes=3, seed=0)
    train, valid = data.split(0.6, 0.4, seed=0)
    reordered = valid.replace(x=valid.x[:, ::-1], feature_names=valid.feature_names[::-1])
    kw = {"method": "knn", "progress": False}
    np.testing.assert_array_equal(va.value(train, valid=valid, **kw).values,
                                  va.value(train, valid=reordered, **kw).values)
    renamed = valid.replace(feature_names=("x0", "x1", "z"))
    with pytest.raises(va.ValuationError, match=r"missing columns \['x2'\].*\['z'\]"):
        va.value(train, valid=renamed, **kw)
    with pytest.raises(va.ValuationError, match="outputs 2 class scores but the data has 3"):
        va.value(train, va.logistic_regression(2), valid=valid, **kw)


def test_balanced_accuracy_and_class_weights_by_hand():
    y = np.array([0, 0, 0, 1])
    majority = np.array([[0.9, 0.1]] * 4)
    assert float(accuracy(majority, y)) == 0.75
    assert float(balanced_accuracy(majority, y)) == 0.5  # (1 + 0) / 2
    w = class_weights(y, 2)
    assert w.tolist() == pytest.approx([4 / 6] * 3 + [2.0]) and w.sum() == pytest.approx(4)


def test_balanced_knn_weighs_validation_classes_equally():
    """KNN-Shapley over a validation set of 9 + 1 rows, balanced, equals the plain mean of
    its two one-class halves' values."""
    data = va.make_classification(40, 2, seed=3)
    train, valid = data.split(0.5, 0.5, seed=0)
    valid = valid.subset(np.r_[np.flatnonzero(valid.y == 0)[:9], np.flatnonzero(valid.y == 1)[:1]])
    model = va.logistic_regression(2)
    balanced = va.make_utility(model, train, valid, class_weight="balanced")
    got = va.value(balanced, method="knn").values
    halves = [va.value(va.make_utility(model, train, valid.subset(valid.y == c)),
                       method="knn").values for c in (0, 1)]
    np.testing.assert_allclose(got, (halves[0] + halves[1]) / 2, rtol=1e-6, atol=1e-9)


def test_progress_without_a_terminal_is_plain_lines():
    out = io.StringIO()
    lines = _PlainLines(out, interval=0.0)
    for text in ["\rbar:  10%|#", "\rbar:  10%|#", "\rbar: 100%|##########|", "\n"]:
        lines.write(text)
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == ["bar:  10%|#", "bar: 100%|##########|"]
