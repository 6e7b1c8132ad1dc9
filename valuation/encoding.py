"""Text, category and missing values -> numeric feature columns, fitted on training rows.

Where it sits: between a user's table and `data.from_dataframe`, which accepts numeric,
complete features only. `fit_encoding` learns, from the training rows, how to turn each
feature column into numbers; `apply_encoding` applies that record unchanged to any table with
the same columns (training, validation, new rows), matching columns by name.

The record is a JSON-ready dict, stored in the values table's sidecar, so that the same
encoding is applied to rows seen later. Per feature column:

* numeric (and boolean): kept; a missing value is filled with the training median and, if
  the training rows had missing values, a 0/1 column `<name>_missing` is added;
* text or category: one 0/1 column `<name>=<category>` per category, for the
  `max_categories - 1` most frequent training categories when there are more than
  `max_categories`, plus `<name>=other` for the rest. A category not seen in training goes to
  `<name>=other` when that column exists and is all zeros otherwise; a missing value is all
  zeros plus `<name>_missing` when the training rows had missing values.

Rows are never dropped or reordered: one encoded row per input row. pandas does the work
(`to_numeric`, `value_counts`, `isna`); the record is only what is needed to repeat it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .data import match_columns
from .errors import ValuationError

__all__ = ["MAX_CATEGORIES", "apply_encoding", "encoded_names", "fit_encoding"]

MAX_CATEGORIES = 20
OTHER = "other"


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def _as_text(column: pd.Series) -> pd.Series:
    """Categories as strings (so 1 and "1" agree between a CSV and a DataFrame), NaN kept."""
    return column.astype(object).where(column.notna()).map(str, na_action="ignore")


def _check_not_numeric_with_typos(column: pd.Series, name: str) -> None:
    """A text column whose values are mostly numbers is a numeric column with a few bad
    values; one-hot encoding it would silently turn every number into a category."""
    present = column.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.isna().any() and numbers.notna().mean() >= 0.5:
        bad = present[numbers.isna()]
        raise ValuationError(
            f"column {name!r} holds numbers and {len(bad)} non-numeric values (e.g. "
            f"{bad.iloc[0]!r} in row {bad.index[0]}); fix those values (leave them empty if "
            "missing), or pass --no-encode to refuse text columns")


def fit_encoding(frame: pd.DataFrame, *, max_categories: int = MAX_CATEGORIES) -> dict[str, Any]:
    """Learn the encoding of each column of `frame` (the training rows' feature columns).

    Args:
      frame: feature columns only, one row per training sample.
      max_categories: most 0/1 columns a text column becomes (>= 2), "other" included.

    Returns:
      `{"max_categories": int, "columns": [entry, ...]}`, one entry per column in order:
      `{"name", "kind": "numeric", "fill", "indicator"}` or
      `{"name", "kind": "categorical", "categories", "other", "indicator"}`.

    Example:
      >>> enc = fit_encoding(pd.DataFrame({"a": [1.0, None], "b": ["x", "y"]}))
      >>> encoded_names(enc)
      ['a', 'a_missing', 'b=x', 'b=y']
    """
    if max_categories < 2:
        raise ValuationError(f"max_categories={max_categories} must be at least 2")
    columns = []
    for name in frame.columns:
        column = frame[name]
        missing = bool(column.isna().any())
        numbers = pd.to_numeric(column.dropna(), errors="coerce")
        if not _is_numeric(column) and numbers.notna().all():
            column = pd.to_numeric(column)  # numbers read as text (the text is in other rows)
        if _is_numeric(column):
            values = column.astype(np.float64)
            fill = float(values.median()) if values.notna().any() else 0.0
            columns.append({"name": str(name), "kind": "numeric", "fill": fill,
                            "indicator": missing})
            continue
        _check_not_numeric_with_typos(column, str(name))
        counts = _as_text(column).value_counts(dropna=True)
        # Most frequent first, ties by name: the record does not depend on row order.
        order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        capped = len(order) > max_categories
        keep = [c for c, _ in order[: max_categories - 1 if capped else len(order)]]
        columns.append({"name": str(name), "kind": "categorical", "categories": keep,
                        "other": capped, "indicator": missing})
    encoding = {"max_categories": int(max_categories), "columns": columns}
    names = encoded_names(encoding)
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValuationError(f"encoded column names collide: {clash[:5]}; rename those "
                             "columns or encode them yourself and pass --no-encode")
    return encoding


def encoded_names(encoding: dict[str, Any]) -> list[str]:
    """Names of the numeric columns `apply_encoding` produces, in order."""
    names = []
    for entry in encoding["columns"]:
        name = entry["name"]
        if entry["kind"] == "numeric":
            names.append(name)
        else:
            names += [f"{name}={c}" for c in entry["categories"]]
            names += [f"{name}={OTHER}"] if entry["other"] else []
        names += [f"{name}_missing"] if entry["indicator"] else []
    return names


def apply_encoding(frame: pd.DataFrame, encoding: dict[str, Any], *,
                   what: str = "the table") -> pd.DataFrame:
    """Encode `frame` with a record of `fit_encoding`: the same columns for any rows.

    Args:
      frame: the feature columns the encoding was fitted on, in any order (matched by
        name), one row per sample; no label or id column.
      encoding: the record `fit_encoding` returned (e.g. read back from a sidecar).
      what: how errors name `frame`, e.g. "the validation table".

    Returns:
      A float64 DataFrame with `frame`'s index and the columns `encoded_names(encoding)`.

    Raises:
      ValuationError: a column is missing or extra (one error naming all), or a column
        that was numeric in training holds text.
    """
    wanted = [entry["name"] for entry in encoding["columns"]]
    frame = frame.iloc[:, match_columns(frame.columns, wanted, what=what)]
    frame.columns = wanted
    parts = []
    for entry in encoding["columns"]:
        name, column = entry["name"], frame[entry["name"]]
        missing = column.isna().to_numpy()
        if entry["kind"] == "numeric":
            values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
            text = np.isnan(values) & ~missing
            if text.any():
                raise ValuationError(
                    f"column {name!r} holds text (e.g. {column[text].iloc[0]!r}) but is "
                    "numeric in the training rows; fix those values (leave them empty if "
                    "missing)")
            parts.append(np.where(missing, entry["fill"], values)[:, None])
        else:
            text = _as_text(column)
            known = pd.Categorical(text.where(text.isin(entry["categories"])),
                                   categories=entry["categories"])
            onehot = pd.get_dummies(known).to_numpy(np.float64)
            parts.append(onehot.reshape(len(frame), len(entry["categories"])))
            if entry["other"]:
                unseen = ~missing & ~text.isin(entry["categories"]).to_numpy()
                parts.append(unseen[:, None].astype(np.float64))
        if entry["indicator"]:
            parts.append(missing[:, None].astype(np.float64))
    x = np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0))
    return pd.DataFrame(x, index=frame.index, columns=encoded_names(encoding))
