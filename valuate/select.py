"""`valuate select`: keep the smallest share of the training rows that keeps the score.

Where it sits: the command line's front to `valuation.select`. It reads a values table written
by `valuate value` and its JSON sidecar (label and id columns, the validation source and split
seed, the encoding, target model, metric and class weights), rebuilds from DATA the training
and validation sets the values were computed on (`job.prepare`: the same split, encoding and
scaling), matches the values to the training rows by id and writes

* OUT: the kept rows' ids and values, in the data's order;
* `<OUT stem>.curve<OUT suffix>`: every candidate (strategy, kept fraction, rows, eligible,
  selection and confirmation scores), the full set last;
* `OUT.json`: the chosen fraction and strategy, the selection and confirmation scores with
  their bootstrap standard errors, the full set's, the settings and the inputs.

`--valid` and `--confirm` replace the validation data and add a separate confirmation set;
they are encoded and scaled like the training rows and their columns matched by name. Values
that scored models on the validation rows (all but Data-OOB and dynamics) have seen the
confirmation rows taken from them; the summary warns, and `--confirm` avoids it.

One batched call per split trains every candidate (about 40 models of the target), so a run
takes seconds to minutes and keeps no checkpoints: an interrupted run is simply run again.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from valuation import Dataset, ValuationError, ValuationResult, load, select
from valuation.data import read_table
from valuation.results import atomic_write

from .job import MODELS, encode_table, file_sha256, prepare
from .meta import read_sidecar
from .table import Z, check_output, write_table

__all__ = ["curve_path", "run_select"]


def curve_path(out: str) -> str:
    """Where the curve table goes: `kept.csv` -> `kept.curve.csv`."""
    root, suffix = os.path.splitext(out)
    return f"{root}.curve{suffix}"


def _extra_set(path: str, job: dict, mean: np.ndarray, std: np.ndarray, encoding: dict | None,
               names: tuple, what: str) -> Dataset:
    """A validation or confirmation table encoded and scaled like the training rows."""
    source = job["input"]
    frame = encode_table(read_table(path), encoding, label=source["label"],
                         id_column=source["id_column"], what=what)
    data = load(frame, label=source["label"], id_column=source["id_column"],
                task=source.get("task", "auto"))
    data = data.select_features(names, what=what)
    return data.standardize(mean, std)[0]


def run_select(data_path: str, *, values_path: str, out: str, keep: float = 0.005,
               valid: str | None = None, confirm: str | None = None,
               selection_share: float = 0.5, seed: int = 0, z: float = Z) -> dict:
    """Select the kept rows of `data_path`; returns the summary it wrote to `out + ".json"`.

    Raises:
      ValuationError: a values table without its `valuate value` sidecar, ids of the values
        that are not training rows of DATA (or training rows without a value), bad options.
    """
    inputs = [p for p in (data_path, values_path, valid, confirm) if p is not None]
    check_output(out, inputs=inputs)
    check_output(curve_path(out), inputs=inputs)
    job = read_sidecar(values_path + ".json")
    if "input" not in job or "model" not in job:
        raise ValuationError(f"{values_path + '.json'!r} is not the sidecar of `valuate "
                             "value`; pass a values table written by `valuate value`")
    source = job["input"]
    prepared = prepare(data_path, label=source["label"], id_column=source["id_column"],
                       valid=source["valid"], valid_fraction=source["valid_fraction"] or 0.2,
                       seed=source["seed"], task=source.get("task", "auto"),
                       encode=source.get("encode", False))
    train = prepared.train
    scaling = (prepared.mean, prepared.std, prepared.encoding, train.feature_names)
    valid_set = (prepared.valid if valid is None else
                 _extra_set(valid, job, *scaling, what="the --valid table's columns"))
    confirm_set = (None if confirm is None else
                   _extra_set(confirm, job, *scaling, what="the --confirm table's columns"))
    table = read_table(values_path)
    missing = [c for c in ("id", "value", "stderr", "count") if c not in table.columns]
    if missing:
        raise ValuationError(f"{values_path!r} lacks column(s) {missing}; pass a values "
                             "table written by `valuate value`")
    table = table[np.isfinite(table["value"])]  # rows held out for validation have no value
    values = ValuationResult(values=table["value"].to_numpy(), stderr=table["stderr"],
                             counts=table["count"], ids=table["id"].to_numpy(),
                             method=job["method"])
    chosen = select(train, valid_set, values, model=MODELS[job["model"]](train.n_classes),
                    keep=keep, confirm=confirm_set, selection_share=selection_share,
                    seed=seed, z=z,
                    utility_options={"metric": job["metric"], "class_weight": job.get(
                        "balance", {}).get("class_weight")})
    in_data_order = np.argsort(pd.Index(prepared.data.ids).get_indexer(chosen.kept))
    kept = values.align(chosen.kept[in_data_order]).to_dataframe()[["id", "value"]]
    warnings = []
    blind = job["method"] == "data_oob" or job["method"].startswith("dynamics")
    if confirm is None and valid is None and not blind:
        warnings.append(f"{job['method']} values were computed on the validation rows that "
                        "also confirm here: the confirmation is unseen by the choice, not by "
                        "the values; pass --confirm FILE for a fully independent figure")
    if source.get("sha256") and file_sha256(data_path) != source["sha256"]:
        warnings.append(f"{data_path!r} is not the file that was valued (its SHA-256 "
                        "differs); rows were matched by id")
    summary = {**chosen.summary(), "n_train": train.n, "warnings": warnings,
               "input": {"data": os.path.abspath(data_path),
                         "values": os.path.abspath(values_path),
                         "valid": valid and os.path.abspath(valid),
                         "confirm": confirm and os.path.abspath(confirm),
                         "selection_share": None if confirm else selection_share},
               "model": job["model"], "curve": os.path.abspath(curve_path(out))}
    curve = chosen.curve
    atomic_write(curve_path(out), (lambda tmp: curve.to_parquet(tmp, index=False))
                 if out.endswith(".parquet") else (lambda tmp: curve.to_csv(tmp, index=False)))
    write_table(out, kept, summary)
    return summary
