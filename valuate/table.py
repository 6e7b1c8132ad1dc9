"""The values table a batch job writes: one row per input row, with a category per sample.

Where it sits: the last step of `valuate value`, between a `ValuationResult` (training
samples only, in training order) and the user's file (every input row, in input order).

Categories come from the standard errors, with `z` standard errors on each side (default
1.96, a two-sided 95 % normal interval):

* harmful: `value + z * stderr < reference`, the value is reliably below the reference;
* useful: `value - z * stderr > reference`, reliably above it;
* useless: the interval contains the reference, the value cannot be told apart from it;
* validation: the row was held out as validation data and has no value.

The reference is 0, the "no contribution" point of marginal-contribution values (Shapley,
Banzhaf, leave-one-out, KNN-Shapley, influence) and of margins (dynamics). Data-OOB values
are out-of-bag scores in [0, 1] rather than contributions; for them the reference is the
chance score `1 / n_classes` (see `reference_point`).

Exact methods report `stderr = 0`, so for them the sign of the value alone decides, and only
a value of exactly zero is "useless". A sample with fewer than two updates has an infinite
standard error and is "useless" until it has more.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import pandas as pd

from valuation import ValuationError, ValuationResult
from valuation.results import Z, atomic_write, categorize, reference_point, write_json

__all__ = ["CATEGORIES", "Z", "categorize", "category_counts", "check_output", "no_error_bars",
           "reference_point", "values_frame", "write_json", "write_table"]

CATEGORIES = ("harmful", "useless", "useful", "validation")


def values_frame(result: ValuationResult, input_ids: np.ndarray, *, z: float = Z,
                 reference: float = 0.0) -> pd.DataFrame:
    """The output table: one row per input id, in input order.

    Columns: id, value, stderr, count, rank (1 = most valuable among the valued rows),
    category. Input rows absent from `result` (held out for validation) get value and stderr
    NaN, count 0, no rank and category "validation".
    """
    frame = result.to_dataframe()
    frame["category"] = categorize(result.values, result.stderr, z=z, reference=reference)
    frame = frame.set_index("id").reindex(pd.Index(input_ids, name="id"))
    held_out = frame["category"].isna().to_numpy()
    frame.loc[held_out, "category"] = "validation"
    frame["count"] = frame["count"].fillna(0).astype(np.int64)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame.reset_index()


def category_counts(frame: pd.DataFrame,
                    categories: tuple[str, ...] = CATEGORIES[:3]) -> dict[str, int]:
    """Rows per category of a `values_frame`, zero for absent ones (JSON-ready ints)."""
    counts = frame["category"].value_counts()
    return {c: int(counts.get(c, 0)) for c in categories}


def no_error_bars(stderr: np.ndarray) -> bool:
    """Whether no sample has a positive standard error (exact methods, agreeing seeds): then
    the categories come from the sign of `value - reference` alone, and the job says so."""
    return not np.any(np.asarray(stderr, float) > 0)


def check_output(path: str, suffixes: tuple[str, ...] = (".parquet", ".csv"),
                 inputs: tuple[str, ...] | list[str] = ()) -> None:
    """Fail before any work if `path` cannot receive an output file of one of `suffixes`, or
    if it (or its `.json` sidecar) is one of the `inputs` files, which it would overwrite."""
    if not path.endswith(suffixes):
        raise ValuationError(f"output {path!r} must end in {' or '.join(suffixes)}; "
                             f"pass e.g. --out values{suffixes[0]}")
    for written in (path, path + ".json"):
        for source in inputs:
            if os.path.exists(written) and os.path.samefile(written, source):
                raise ValuationError(f"output {written!r} is the input file {source!r}; "
                                     "writing it would destroy the data: pick another --out")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValuationError(f"output {path!r} is a directory; pass a file name")
    if not os.path.isdir(folder):
        raise ValuationError(f"output folder {folder!r} does not exist; create it first")
    try:  # try it: permission bits alone miss read-only mounts and root's privileges
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".valuate-probe-")
    except OSError:
        raise ValuationError(f"output folder {folder!r} is not writable; pick another --out"
                             ) from None
    os.close(fd)
    os.remove(probe)


def write_table(path: str, frame: pd.DataFrame, sidecar: dict[str, Any]) -> None:
    """Write the sidecar `path + ".json"`, then the table; each atomically.

    The table is written last, so its presence means the job finished; an older table is
    removed first, so a table never sits beside a newer run's sidecar.
    """
    if os.path.exists(path):
        os.remove(path)
    write_json(path + ".json", sidecar)
    if path.endswith(".parquet"):
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
