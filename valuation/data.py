"""User tables in, validated `Dataset` out.

Where it sits: the first step of the data flow. Every check on user input happens here and only
here; code downstream (training, utilities, estimators) assumes a valid `Dataset`.

A `Dataset` is immutable and carries, besides features and labels, the sample ids that let
results be joined back to the user's rows, the feature names and the class list. Labels are
stored as integer codes into `classes`; every operation (split, subset, label flips,
standardisation) keeps ids aligned with rows.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import ValuationError

__all__ = [
    "TASKS",
    "Dataset",
    "align_classes",
    "from_arrays",
    "from_dataframe",
    "infer_task",
    "load",
    "match_columns",
    "read_table",
    "regression_dataset",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Features, labels and ids of a classification or regression data set.

    Attributes:
      x: features, float32 array of shape `(n, d)`.
      y: labels as int32 codes into `classes`, shape `(n,)`; for a regression target
        (`classes == ()`) the float32 targets themselves.
      ids: sample ids, shape `(n,)`, unique; the join key back to the user's rows.
      classes: the class labels, in code order (`classes[y[i]]` is sample i's label); the
        empty tuple for a regression target.
      feature_names: names of the `d` feature columns.
    """

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    classes: tuple
    feature_names: tuple

    def __post_init__(self):
        for name in ("x", "y", "ids"):
            getattr(self, name).setflags(write=False)

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        """Number of features."""
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes in the class list (some may be absent from this split); 0 for a
        regression target."""
        return len(self.classes)

    @property
    def task(self) -> str:
        """"classification" or "regression" (a regression target has no class list)."""
        return "classification" if self.classes else "regression"

    @property
    def labels(self) -> np.ndarray:
        """Labels in the user's own vocabulary, shape `(n,)` (the targets, for regression)."""
        if not self.classes:
            return self.y
        return np.asarray(self.classes, dtype=object)[self.y]

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        if not self.classes:
            return f"Dataset(n={self.n}, d={self.d}, regression target)"
        counts = np.bincount(self.y, minlength=self.n_classes)
        per_class = ", ".join(f"{c!s}: {k}" for c, k in zip(self.classes, counts))
        return f"Dataset(n={self.n}, d={self.d}, classes={{{per_class}}})"

    def replace(self, **changes: Any) -> Dataset:
        """A copy with some fields replaced (no validation: internal use)."""
        return dataclasses.replace(self, **changes)

    def subset(self, index: np.ndarray | Sequence[int]) -> Dataset:
        """Rows `index` (integer positions or a boolean mask), ids kept with their rows."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return self.replace(x=self.x[index], y=self.y[index], ids=self.ids[index])

    def split(self, *fractions: float, seed: int, stratify: bool = True) -> tuple[Dataset, ...]:
        """Random disjoint splits, e.g. `train, valid, test = data.split(0.6, 0.2, 0.2, seed=0)`.

        Args:
          *fractions: shares of the samples per split; they must sum to at most 1 (the
            remainder is dropped).
          seed: seed of the shuffle.
          stratify: keep class proportions in every split (per-class shuffles); ignored for a
            regression target.

        Returns:
          One `Dataset` per fraction, rows in shuffled order, ids kept.
        """
        fr = np.asarray(fractions, dtype=float)
        if fr.size == 0 or np.any(fr <= 0) or fr.sum() > 1 + 1e-9:
            raise ValuationError(
                f"split fractions {tuple(fractions)} must be positive and sum to at most 1; "
                "pass e.g. data.split(0.7, 0.3, seed=0)"
            )
        rng = np.random.default_rng(seed)
        groups = [np.flatnonzero(self.y == c) for c in range(self.n_classes)]
        if not stratify or not self.classes:
            groups = [np.arange(self.n)]
        parts: list[list[np.ndarray]] = [[] for _ in fr]
        for g in groups:
            g = rng.permutation(g)
            edges = np.round(np.cumsum(fr) * len(g)).astype(int)
            for j, (lo, hi) in enumerate(zip(np.r_[0, edges[:-1]], edges)):
                parts[j].append(g[lo:hi])
        out = []
        for j, p in enumerate(parts):
            index = rng.permutation(np.concatenate(p))
            if index.size == 0:
                raise ValuationError(
                    f"split {j} (fraction {fr[j]}) would be empty for {self.n} samples; "
                    "use larger fractions or more data"
                )
            out.append(self.subset(index))
        return tuple(out)

    def select_features(self, names: Sequence[str], *, what: str = "the samples") -> Dataset:
        """The same rows with feature columns `names`, in that order, matched by name.

        Raises:
          ValuationError: a column of `names` is missing or an extra column is present
            (`match_columns`).
        """
        order = match_columns(self.feature_names, names, what=what)
        if order == list(range(self.d)):
            return self
        return self.replace(x=self.x[:, order], feature_names=tuple(names))

    def flip_labels(self, fraction: float, *, seed: int) -> tuple[Dataset, np.ndarray]:
        """Label noise for experiments: flip `fraction` of the labels to another class.

        Each chosen sample gets a label drawn uniformly from the other classes of the class
        list.

        Returns:
          `(noisy_dataset, flipped)`, where `flipped` is a boolean mask of shape `(n,)`.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValuationError(f"flip fraction {fraction} must lie in [0, 1]")
        if not self.classes:
            raise ValuationError("a regression target has no labels to flip; add noise to "
                                 "the targets instead")
        rng = np.random.default_rng(seed)
        n_flip = round(fraction * self.n)
        chosen = rng.choice(self.n, size=n_flip, replace=False)
        shift = rng.integers(1, self.n_classes, size=n_flip)
        y = self.y.copy()
        y[chosen] = (y[chosen] + shift) % self.n_classes
        flipped = np.zeros(self.n, dtype=bool)
        flipped[chosen] = True
        return self.replace(y=y), flipped

    def standardize(self, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        """Features scaled to zero mean and unit variance.

        Args:
          mean, std: statistics to use, shape `(d,)`; by default this data set's own. Pass the
            training set's statistics when scaling validation or test data.

        Returns:
          `(dataset, (mean, std))`, the statistics as float32; constant features keep std 1.
          The statistics are computed in float64 (float32 squares of values near 1e20
          overflow) and applied in float32, so scaling any rows with the returned statistics
          repeats this arithmetic bit for bit.
        """
        wide = self.x.astype(np.float64)
        mean = np.asarray(wide.mean(axis=0) if mean is None else mean, np.float32)
        std = np.asarray(wide.std(axis=0) if std is None else std, np.float32)
        std = np.where(std > 0, std, np.float32(1.0))
        x = ((self.x - mean) / std).astype(np.float32)
        return self.replace(x=x), (mean, std)


def match_columns(have: Sequence[str], want: Sequence[str], *, what: str) -> list[int]:
    """Positions in `have` of the columns `want`, matched by name, never by position.

    Args:
      have: the column names a table holds.
      want: the column names expected, in the order expected.
      what: how the error names the table, e.g. "the validation table".

    Returns:
      `order` with `have[order[j]] == want[j]`.

    Raises:
      ValuationError: one error naming every missing and every extra column.
    """
    have, want = [str(c) for c in have], [str(c) for c in want]
    missing = [c for c in want if c not in have]
    extra = [c for c in have if c not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns {missing[:10]}")
        if extra:
            parts.append(f"columns the model was not trained on {extra[:10]}")
        _fail(f"{what} do not match the training columns by name: {'; '.join(parts)}",
              "pass a table with exactly the training table's feature columns (any order)")
    position = {c: i for i, c in enumerate(have)}
    return [position[c] for c in want]


def _fail(problem: str, fix: str):
    raise ValuationError(f"{problem}; {fix}")


def _check_features(x: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
    if x.ndim != 2:
        _fail(f"features must be a 2-D array (samples, features), got shape {x.shape}",
              "reshape a single feature with x.reshape(-1, 1)")
    if x.shape[0] == 0:
        _fail("the data set is empty (0 samples)", "pass at least two samples of two classes")
    if x.shape[1] == 0:
        _fail("the data set has no feature columns", "pass at least one numeric feature")
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        try:
            x = x.astype(np.float64)
        except (TypeError, ValueError):
            _fail("features must be numeric, found non-numeric values",
                  "encode text or category columns as numbers before valuation")
    x = x.astype(np.float64)
    x = _check_float32_range(x, feature_names).astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        rows, cols = np.nonzero(bad)
        col_names = sorted({str(feature_names[c]) for c in cols})
        kind = "NaN" if np.isnan(x[rows[0], cols[0]]) else "infinite"
        _fail(f"{bad.sum()} feature values are NaN or infinite (first: {kind} in row "
              f"{rows[0]}, column {feature_names[cols[0]]!r}; columns affected: "
              f"{', '.join(col_names[:5])})",
              "impute or drop those rows before valuation")
    return x


def _check_float32_range(x: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
    """`x` (float64) unchanged, or one error naming the columns whose finite values a float32
    cast would turn into infinities (the engine computes in float32)."""
    big = np.isfinite(x) & (np.abs(x) > np.finfo(np.float32).max)
    if big.any():
        rows, cols = np.nonzero(big)
        col_names = sorted({str(feature_names[c]) for c in cols})
        _fail(f"{big.sum()} finite feature values exceed the float32 range (+/-3.4e38) the "
              f"computation uses (first: {x[rows[0], cols[0]]:.3g} in row {rows[0]}, column "
              f"{feature_names[cols[0]]!r}; columns affected: {', '.join(col_names[:5])})",
              "rescale those columns (e.g. divide by a power of ten or take a log) before "
              "valuation")
    return x


TASKS = ("auto", "classification", "regression")
_MAX_NUMERIC_CLASSES = 20  # whole-number labels with more distinct values than this ...
_MAX_CLASS_SHARE = 0.05  # ... and than this share of the rows look like a regression target


def infer_task(y: np.ndarray, task: str = "auto") -> str:
    """"classification" or "regression" for labels `y` `(n,)` and the user's `task`.

    With `task="auto"`: non-numeric labels are classes; numbers that are not all whole
    numbers are a regression target; whole numbers with more than 20 distinct values that
    are also more than 5 % of the rows (e.g. scikit-learn's diabetes: 214 values over 442
    rows) are refused, since they could be either and taking them as classes would silently
    make a many-class problem. "classification" and "regression" are taken as said.

    Raises:
      ValuationError: an unknown `task`, non-numeric labels with `task="regression"`, or
        ambiguous whole-number labels with `task="auto"`.
    """
    if task not in TASKS:
        _fail(f"unknown task {task!r}", f"pass task= one of {list(TASKS)} (CLI: --task)")
    numeric = np.issubdtype(y.dtype, np.number) and y.dtype != bool
    if task == "regression":
        if not numeric:
            _fail(f"regression targets must be numbers, got labels such as {y[0]!r}",
                  "pass numeric targets, or task='classification' (CLI: --task "
                  "classification) for class labels")
        return task
    if task == "classification" or not numeric:
        return "classification"
    if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
        return "regression"
    n_values = len(np.unique(y))
    if n_values > _MAX_NUMERIC_CLASSES and n_values > _MAX_CLASS_SHARE * len(y):
        _fail(f"the numeric label column has {n_values} distinct whole numbers over {len(y)} "
              "rows, which looks like a regression target",
              "say which it is: task='regression' (CLI: --task regression) for a real-valued "
              "target, or task='classification' (CLI: --task classification) if they really "
              "are classes")
    return "classification"


def _features_and_names(x: Any, feature_names: Sequence[str] | None):
    """Checked float32 features `(n, d)` and their `d` names (default `x0..x{d-1}`)."""
    x = np.asarray(x)
    if x.ndim == 1 and x.size > 0:
        x = x.reshape(-1, 1)
    if feature_names is None:
        names = tuple(f"x{j}" for j in range(x.shape[1] if x.ndim == 2 else 0))
    else:
        names = tuple(str(f) for f in feature_names)
    x = _check_features(x, names)
    if len(names) != x.shape[1]:
        _fail(f"{len(names)} feature names for {x.shape[1]} feature columns",
              "pass one name per column")
    return x, names


def _unique_ids(ids: Any, n: int) -> np.ndarray:
    """Sample ids `(n,)` (default `0..n-1`), checked unique; a copy."""
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if ids.shape != (n,):
        _fail(f"{ids.shape} ids for {n} samples", "pass one id per row")
    if pd.Series(ids).duplicated().any():
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        _fail(f"sample ids are not unique (e.g. {dup!r})", "pass a unique id per row")
    return ids.copy()


def from_arrays(
    x: Any,
    y: Any,
    *,
    ids: Any = None,
    feature_names: Sequence[str] | None = None,
    classes: Sequence | None = None,
    task: str = "auto",
) -> Dataset:
    """A validated `Dataset` from array-likes.

    Args:
      x: features of shape `(n, d)`.
      y: labels of shape `(n,)`, any hashable values (ints, strings).
      ids: sample ids of shape `(n,)`; default `0..n-1`. Must be unique.
      feature_names: names of the `d` columns; default `x0..x{d-1}`.
      classes: the class list, in code order; default the sorted unique labels. Pass it to
        keep a class that is absent from this table (e.g. a validation split).
      task: "auto", "classification" or "regression" (`infer_task`): with "auto",
        numbers that are not all whole are a regression target (the result is then
        `regression_dataset(x, y, ...)`), and whole numbers with too many distinct values
        are refused. Passing `classes` says it is classification.

    Raises:
      ValuationError: empty data, wrong shapes, NaN/inf, non-numeric or float32-overflowing
        features, ambiguous whole-number labels, fewer than two classes, duplicate ids,
        labels outside `classes`, `classes` with `task="regression"`.
    """
    x, names = _features_and_names(x, feature_names)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        _fail(f"labels must be 1-D (one per sample), got shape {y.shape}",
              "pass class labels, not one-hot rows (use y.argmax(1))")
    if y.shape[0] != x.shape[0]:
        _fail(f"{x.shape[0]} feature rows but {y.shape[0]} labels",
              "pass exactly one label per row")
    if pd.isna(pd.Series(y, dtype=object)).any():
        _fail("some labels are missing (NaN/None)", "drop or label those rows")
    if classes is not None and task == "regression":
        _fail("a class list was passed with task='regression'",
              "drop classes= for a regression target")
    if infer_task(y, "classification" if classes is not None else task) == "regression":
        return _regression(x, names, y, ids)
    if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if classes is None:
        classes = tuple(np.unique(y).tolist())
        if len(classes) < 2:
            _fail(f"the labels hold {len(classes)} class ({classes[0]!r}); valuation needs "
                  "at least 2", "add samples of another class")
    classes = tuple(classes)
    if len(classes) < 2:
        _fail(f"the class list has {len(classes)} class; valuation needs at least 2",
              "pass at least two classes")
    code = {c: i for i, c in enumerate(classes)}
    try:
        codes = np.fromiter((code[v] for v in y.tolist()), dtype=np.int32, count=len(y))
    except KeyError as err:
        _fail(f"label {err.args[0]!r} is not in the class list {classes}",
              "add it to `classes` or fix the label")
    ids = _unique_ids(ids, x.shape[0])
    return Dataset(x=x, y=codes, ids=ids, classes=classes, feature_names=names)


def from_dataframe(
    df: pd.DataFrame,
    *,
    label: str,
    id_column: str | None = None,
    features: Sequence[str] | None = None,
    classes: Sequence | None = None,
    task: str = "auto",
) -> Dataset:
    """A `Dataset` from a pandas DataFrame.

    Args:
      df: one row per sample.
      label: name of the label column.
      id_column: name of a column of unique sample ids; default the DataFrame's index.
      features: feature columns; default every other column.
      classes, task: see `from_arrays`.
    """
    if not isinstance(df, pd.DataFrame):
        _fail(f"expected a pandas DataFrame, got {type(df).__name__}",
              "use from_arrays for numpy arrays")
    if label not in df.columns:
        _fail(f"label column {label!r} not found (columns: {', '.join(map(str, df.columns[:10]))})",
              "pass the name of the column holding the class labels")
    if id_column is not None and id_column not in df.columns:
        _fail(f"id column {id_column!r} not found", "pass an existing column or none")
    if features is None:
        features = [c for c in df.columns if c not in (label, id_column)]
    else:
        missing = [c for c in features if c not in df.columns]
        if missing:
            _fail(f"feature columns {missing} not found", "check the column names")
    if len(df) == 0:
        _fail(f"the table has a header ({len(df.columns)} columns) but no rows",
              "pass a table with at least two rows of two classes")
    feats = df[list(features)]
    non_numeric = [str(c) for c in feats.columns
                   if not (pd.api.types.is_numeric_dtype(feats[c])
                           or pd.api.types.is_bool_dtype(feats[c]))]
    if non_numeric:
        _fail(f"non-numeric feature columns: {', '.join(non_numeric[:5])}",
              "encode them as numbers (valuation.encoding.fit_encoding / apply_encoding; "
              "`valuate value` does it unless --no-encode) or drop them")
    ids = df[id_column].to_numpy() if id_column is not None else df.index.to_numpy()
    return from_arrays(feats.to_numpy(dtype=np.float64, na_value=np.nan), df[label].to_numpy(),
                       ids=ids, feature_names=[str(c) for c in feats.columns], classes=classes,
                       task=task)


PARQUET_BATCH_ROWS = 262_144  # rows per record batch when reading Parquet


def read_table(path: str | os.PathLike, *, keep: Sequence[str | None] = ()) -> pd.DataFrame:
    """Read a CSV (optionally compressed) or Parquet file into a DataFrame.

    Parquet is read in record batches (`pyarrow.dataset`, `PARQUET_BATCH_ROWS` rows each)
    and every float64 column not named in `keep` (the label, the ids) becomes float32 batch
    by batch, so a million-row file costs the float32 table plus one batch: the engine
    computes in float32 anyway, and the cast rounds exactly as the CSV route's later one. A
    column with finite values beyond the float32 range stays float64 (the intake then names
    it). Columns are kept by name; the rows keep their order.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        _fail(f"file {path!r} does not exist", "check the path")
    lower = path.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            return _read_parquet(path, {k for k in keep if k is not None})
        if lower.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".txt")):
            return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        _fail(f"could not read {path!r}: {err}", "check that it is a valid CSV or Parquet file")
    _fail(f"unknown file type {path!r}", "pass a .csv or .parquet file")


def _read_parquet(path: str, keep: set[str]) -> pd.DataFrame:
    """`read_table` for Parquet (see there): one streamed pass over the float64 columns for
    their ranges, one that casts batch by batch. pyarrow's errors are `OSError`s or
    `ValueError`s."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    source = ds.dataset(path, format="parquet")
    narrow = [f.name for f in source.schema if pa.types.is_float64(f.type) and f.name not in keep]
    limit = float(np.finfo(np.float32).max)
    wide = set()  # float64 columns with finite values a float32 cast would make infinite
    for batch in source.to_batches(columns=narrow, batch_size=PARQUET_BATCH_ROWS):
        for name in narrow:
            top = pc.max(pc.abs(pc.if_else(pc.is_finite(batch[name]), batch[name], 0.0)))
            if top.as_py() is not None and top.as_py() > limit:
                wide.add(name)
    schema = pa.schema([f.with_type(pa.float32()) if f.name in narrow and f.name not in wide
                        else f for f in source.schema])
    table = pa.Table.from_batches(
        [b.cast(schema) for b in source.to_batches(batch_size=PARQUET_BATCH_ROWS)],
        schema=schema)
    return table.to_pandas()


def load(
    source: Any,
    y: Any = None,
    *,
    label: str | None = None,
    id_column: str | None = None,
    classes: Sequence | None = None,
    task: str = "auto",
) -> Dataset:
    """A `Dataset` from whatever the user holds.

    Args:
      source: a `Dataset` (returned as is), a numpy array of features (then pass `y`), a
        pandas DataFrame or a path to a CSV/Parquet file (then pass `label`).
      y: labels, for array input.
      label: label column, for DataFrame and file input.
      id_column: id column, for DataFrame and file input.
      classes, task: see `from_arrays`.

    Example:
      >>> import numpy as np
      >>> load(np.array([[0.0], [1.0]]), np.array(["a", "b"]))
      Dataset(n=2, d=1, classes={a: 1, b: 1})
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        source = read_table(source)
    if isinstance(source, pd.DataFrame):
        if label is None:
            _fail("a table needs the name of its label column", "pass label='column name'")
        return from_dataframe(source, label=label, id_column=id_column, classes=classes,
                              task=task)
    if y is None:
        _fail("array input needs labels", "pass load(x, y)")
    return from_arrays(source, y, classes=classes, task=task)


def align_classes(train: Dataset, *others: Dataset) -> tuple[Dataset, ...]:
    """Re-code `others` onto `train`'s class list and check that they fit together.

    Raises:
      ValuationError: a data set has a different number of features, shares no class with
        `train`, or has a class that `train` has never seen.
    """
    out = [train]
    for k, other in enumerate(others, start=1):
        if other.d != train.d:
            _fail(f"data set {k} has {other.d} features but the training set has {train.d}",
                  "pass the same feature columns to both")
        if other.task != train.task:
            _fail(f"data set {k} has a {other.task} target but the training set a "
                  f"{train.task} one", "pass data sets of the same task")
        if not train.classes:
            out.append(other)
            continue
        labels = other.labels
        unseen = sorted({str(v) for v in labels if v not in set(train.classes)})
        if len(unseen) == len(set(labels.tolist())):
            _fail(f"data set {k} shares no class with the training set "
                  f"(its classes: {unseen[:5]}; training classes: {list(train.classes)[:5]})",
                  "check the label column and that both come from the same task")
        if unseen:
            _fail(f"data set {k} has classes the training set lacks: {unseen[:5]}",
                  "drop those rows or add training samples of those classes")
        code = {c: i for i, c in enumerate(train.classes)}
        y = np.array([code[v] for v in labels.tolist()], dtype=np.int32)
        out.append(other.replace(y=y, classes=train.classes))
    return tuple(out)


def regression_dataset(
    x: Any,
    y: Any,
    *,
    ids: Any = None,
    feature_names: Sequence[str] | None = None,
) -> Dataset:
    """A validated `Dataset` with a regression target (`classes == ()`, float32 `y`).

    Args:
      x: features of shape `(n, d)`.
      y: real-valued targets of shape `(n,)`, finite.
      ids: sample ids of shape `(n,)`; default `0..n-1`. Must be unique.
      feature_names: names of the `d` columns; default `x0..x{d-1}`.

    Raises:
      ValuationError: empty data, wrong shapes, NaN/inf or non-numeric features or targets,
        duplicate ids.
    """
    x, names = _features_and_names(x, feature_names)
    return _regression(x, names, np.asarray(y), ids)


def _regression(x: np.ndarray, names: tuple, y: np.ndarray, ids: Any) -> Dataset:
    """A regression `Dataset` from checked features `(n, d)` and their names; checks the
    targets `(n,)` and ids."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        _fail(f"targets of shape {y.shape} for {x.shape[0]} feature rows",
              "pass exactly one target per row")
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError):
        _fail("regression targets must be numbers", "pass numeric targets")
    if not np.all(np.isfinite(y)):
        _fail(f"{int((~np.isfinite(y)).sum())} targets are NaN or infinite",
              "drop or impute those rows")
    if np.any(np.abs(y) > np.finfo(np.float32).max):
        _fail("targets exceed the float32 range (+/-3.4e38) the computation uses",
              "rescale the target (e.g. divide by a power of ten or take a log)")
    ids = _unique_ids(ids, x.shape[0])
    return Dataset(x=x, y=y.astype(np.float32), ids=ids, classes=(),
                   feature_names=names)
