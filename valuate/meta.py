"""`valuate fit-meta` and `valuate predict`: learn values once, predict them for new rows.

Where it sits: the command line's front to `metalearner.MetaValuator`. `fit-meta` reads a
values table written by `valuate value` and its sidecar, rebuilds the exact training and
validation sets the values were computed on (same file, split seed and scaling), fits a
meta-model to the valued rows and saves it (`meta.npz` + `meta.npz.json` from
`MetaValuator.save`, plus `meta.npz.job.json` with what `predict` needs: the target model,
label and id columns, class list and feature scaling). `predict` reads new rows (with their
labels: the meta-model's features use them), scales them with the training statistics and
writes a values table in the format of `valuate value`.

The predicted values' standard errors are the ensemble's spread (an epistemic error), so
their categories say how sure the meta-model is, not how sure a Monte Carlo estimate is.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from metalearner import MetaValuator
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

__all__ = ["fit_meta", "predict"]


def _sidecar(path: str) -> dict:
    if not os.path.exists(path):
        raise ValuationError(f"{path!r} is missing; pass a values table written by "
                             "`valuate value` together with its .json sidecar")
    with open(path) as f:
        return json.load(f)


def fit_meta(values_path: str, *, out: str, members: int = 8, steps: int = 1500,
             seed: int = 0) -> dict:
    """Fit a meta-model to the values in `values_path`; returns the job record it wrote."""
    check_output(out, (".npz",))
    job = _sidecar(values_path + ".json")
    if "input" not in job:
        raise ValuationError(f"{values_path + '.json'!r} has no input record; pass a values "
                             "table written by `valuate value`")
    source = job["input"]
    for key, path in (("sha256", source["data"]), ("valid_sha256", source["valid"])):
        if source.get(key) and (not os.path.exists(path) or file_sha256(path) != source[key]):
            raise ValuationError(f"{path!r} is not the file that was valued (missing, or its "
                                 "contents changed since: SHA-256 differs); value it again "
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
    meta = MetaValuator(members=members, steps=steps, seed=seed).fit(utility, result)
    record = {"model": job["model"], "label": source["label"], "encoding": prepared.encoding,
              "id_column": source["id_column"], "classes": list(prepared.train.classes),
              "mean": prepared.mean, "std": prepared.std, "values": os.path.abspath(values_path),
              "teacher": job["method"], "n_valued": len(result),
              "timings": {"fit_s": time.perf_counter() - start}}
    meta.save(out)
    write_json(out + ".job.json", record)  # last: its presence means the model is complete
    return record


def predict(data_path: str, *, meta_path: str, out: str, z: float = Z) -> dict:
    """Predict values of the rows of `data_path`; returns the sidecar it wrote."""
    check_output(out)
    record = _sidecar(meta_path + ".job.json")
    frame = encode_table(read_table(data_path), record.get("encoding"), label=record["label"],
                         id_column=record["id_column"], what="the new rows' columns")
    data = load(frame, label=record["label"], id_column=record["id_column"],
                task="classification")  # the classes are the meta-model's
    data, _ = data.standardize(np.asarray(record["mean"]), np.asarray(record["std"]))
    meta = MetaValuator.load(meta_path, MODELS[record["model"]](len(record["classes"])))
    result = meta.predict(data)
    reference = reference_point(record["teacher"], len(record["classes"]))
    frame = values_frame(result, data.ids, z=z, reference=reference)
    sidecar = {**result.metadata(), "input": {"data": os.path.abspath(data_path),
                                              "meta": os.path.abspath(meta_path),
                                              "rows": data.n},
               "categories": {"z": z, "reference": reference,
                              **category_counts(frame)}}
    write_table(out, frame, sidecar)
    return sidecar
