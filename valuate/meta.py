"""`valuate fit-meta` and `valuate predict`: learn values once, predict them for new rows.

Where it sits: the command line's front to `metalearner.MetaValuator`. `fit-meta` reads a
values table written by `valuate value` and its sidecar, rebuilds the exact training and
validation sets the values were computed on (same file, split seed and scaling), fits a
meta-model to the valued rows and saves it (`meta.npz` + `meta.npz.json` from
`MetaValuator.save`, plus `meta.npz.job.json` with what `predict` needs: the target model,
label and id columns, feature columns, class list and feature scaling). `predict` reads new
rows (with their labels: the meta-model's features use them), takes the feature columns by
name (any order; a missing or extra column is one error naming it), scales them with the
training statistics and writes a values table in the format of `valuate value`.

Rows and ids: a row whose content (scaled features and label) equals a training row's is
that training row, whatever its id. With an id column (`--id-column`, default the one the
values were computed with, when the new table has it) an id that names a training row of
other content is an error naming the ids, unless `--id-conflict new` says such rows are
new; without one, rows are numbered and those numbers identify nothing, so only content
decides.

`fit-meta --method rater` fits a `metalearner.DataRater` on the same data and split instead
(no values needed: it learns from the target's validation loss); `predict` reads either kind.

The predicted values' standard errors are the ensemble's spread (an epistemic error), so
their categories say how sure the meta-model is, not how sure a Monte Carlo estimate is.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from metalearner import DataRater, MetaValuator
from valuation import ValuationError, ValuationResult, load, make_utility
from valuation.data import read_table

from .job import MODELS, encode_table, file_sha256, prepare
from .table import (
    Z,
    category_counts,
    check_output,
    reference_point,
    values_frame,
    write_json,
    write_table,
)

__all__ = ["fit_meta", "predict", "read_sidecar"]


def read_sidecar(path: str) -> dict:
    """The JSON record `valuate value` (or `fit-meta`) wrote beside its output; one clear
    error when it is missing."""
    if not os.path.exists(path):
        raise ValuationError(f"{path!r} is missing; pass a values table written by "
                             "`valuate value` together with its .json sidecar")
    with open(path) as f:
        return json.load(f)


def fit_meta(values_path: str, *, out: str, members: int = 8, steps: int = 1500,
             seed: int = 0, data: str | None = None, valid: str | None = None,
             method: str = "imitate") -> dict:
    """Fit a meta-model to the values in `values_path`; returns the job record it wrote.

    Args:
      data, valid: where the valued data (and validation) files are now, when they moved
        since `valuate value` ran; default the paths in the sidecar. Either way the file
        must hold the bytes that were valued (its SHA-256 is checked).
      method: "imitate" regresses the table's values (`MetaValuator`); "rater" fits a
        `DataRater` on the same data and split instead (it needs no values; `members` and
        `steps` do not apply).
    """
    check_output(out, (".npz",))
    job = read_sidecar(values_path + ".json")
    if "input" not in job:
        raise ValuationError(f"{values_path + '.json'!r} has no input record; pass a values "
                             "table written by `valuate value`")
    source = dict(job["input"])
    if valid is not None and source["valid"] is None:
        raise ValuationError("--valid-data: these values held out part of DATA as "
                             "validation rows, there is no validation file to point to")
    source["data"] = os.path.abspath(data) if data else source["data"]
    source["valid"] = os.path.abspath(valid) if valid else source["valid"]
    for key, path in (("sha256", source["data"]), ("valid_sha256", source["valid"])):
        if source.get(key) and (not os.path.exists(path) or file_sha256(path) != source[key]):
            raise ValuationError(f"{path!r} is not the file that was valued (missing, or its "
                                 "contents changed since: SHA-256 differs); point to the "
                                 "moved file with --data (--valid-data), or value it again "
                                 "with `valuate value`")
    prepared = prepare(source["data"], label=source["label"], id_column=source["id_column"],
                       valid=source["valid"], valid_fraction=source["valid_fraction"] or 0.2,
                       seed=source["seed"], task=source.get("task", "auto"),
                       encode=source.get("encode", False))
    table = read_table(values_path)
    table = table[np.isfinite(table["value"])]  # rows held out for validation have no value
    result = ValuationResult(values=table["value"].to_numpy(), stderr=table["stderr"],
                             counts=table["count"], ids=table["id"].to_numpy(),
                             method=job["method"])
    model = MODELS[job["model"]](prepared.train.n_classes)
    utility = make_utility(model, prepared.train, prepared.valid, metric=job["metric"],
                           class_weight=job.get("balance", {}).get("class_weight"))
    start = time.perf_counter()
    if method == "rater":
        meta = DataRater(seed=seed).fit(utility)
    else:
        meta = MetaValuator(members=members, steps=steps, seed=seed).fit(utility, result)
    record = {"model": job["model"], "kind": method, "label": source["label"],
              "encoding": prepared.encoding,
              "id_column": source["id_column"], "classes": list(prepared.train.classes),
              "columns": list(prepared.train.feature_names),
              "mean": prepared.mean, "std": prepared.std, "values": os.path.abspath(values_path),
              "teacher": "data_rater" if method == "rater" else job["method"],
              "n_valued": len(result),
              "timings": {"fit_s": time.perf_counter() - start}}
    meta.save(out)
    write_json(out + ".job.json", record)  # last: its presence means the model is complete
    return record


def predict(data_path: str, *, meta_path: str, out: str, z: float = Z,
            label: str | None = None, id_column: str | None = None,
            id_conflict: str = "error") -> dict:
    """Predict values of the rows of `data_path`; returns the sidecar it wrote.

    Args:
      label: label column (default: the one the values were computed with).
      id_column: id column (default: the recorded one, when the table has it; otherwise
        row numbers, and ids then identify nothing: only content matches training rows).
      id_conflict: "error" or "new", for ids naming a training row of other content.
    """
    check_output(out)
    record = read_sidecar(meta_path + ".job.json")
    frame = read_table(data_path)
    label = label or record["label"]
    if id_column is None and record["id_column"] in frame.columns:
        id_column = record["id_column"]
    if id_column is None:
        id_conflict = "new"  # row numbers are positions, not identities
    what = f"the columns of {data_path!r}"
    frame = encode_table(frame, record.get("encoding"), label=label, id_column=id_column,
                         what=what)
    data = load(frame, label=label, id_column=id_column, task="classification")
    data = data.select_features(record["columns"], what=what)
    # float32 statistics, as `prepare` returns them: training rows keep their bits
    data, _ = data.standardize(np.asarray(record["mean"], np.float32),
                               np.asarray(record["std"], np.float32))
    kind = DataRater if record.get("kind") == "rater" else MetaValuator
    meta = kind.load(meta_path, MODELS[record["model"]](len(record["classes"])))
    result = meta.predict(data, id_conflict=id_conflict)
    reference = reference_point(record["teacher"], len(record["classes"]))
    frame = values_frame(result, data.ids, z=z, reference=reference)
    sidecar = {**result.metadata(), "input": {"data": os.path.abspath(data_path),
                                              "meta": os.path.abspath(meta_path),
                                              "label": label, "id_column": id_column,
                                              "id_conflict": id_conflict, "rows": data.n},
               "categories": {"z": z, "reference": reference,
                              **category_counts(frame)}}
    write_table(out, frame, sidecar)
    return sidecar
