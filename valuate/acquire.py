"""`valuate acquire`: which rows of an unlabelled pool to label next.

Where it sits: the command line's front to `metalearner.acquire_batch`. It reads a pool of
rows without labels (a label column, if present, is ignored), encodes and scales their feature
columns the way `valuate fit-meta` recorded (columns matched by name), predicts each row's
value once labelled with the meta-model (in expectation over the target's label
distribution) and writes the pool ranked for labelling: the batch first, rows predicted
harmful last.

Output columns: id, rank (1 = label first), chosen (in the batch), value and stderr (the
predicted value once labelled and its standard error), category (harmful / useless / useful
against the teacher's reference), uncertainty (the target model's), score (the rank mix).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from metalearner import MetaValuator, acquire_batch
from valuation import ValuationError
from valuation.data import from_dataframe, read_table
from valuation.results import categorize

from .job import MODELS, encode_table
from .table import Z, check_output, write_table

__all__ = ["acquire"]


def acquire(pool_path: str, *, meta_path: str, batch: int, out: str, weight: float,
            kind: str = "entropy", radius: float | None = None, z: float = Z,
            id_column: str | None = None, id_conflict: str = "error") -> dict:
    """Rank the rows of `pool_path` for labelling; returns the sidecar it wrote.

    Args:
      id_column: id column (default: the recorded one, when the pool has it; otherwise row
        numbers, which identify nothing: only content matches training rows).
      Others: as for `metalearner.acquire_batch`.
    """
    check_output(out, inputs=(pool_path,))
    record_path = meta_path + ".job.json"
    if not os.path.exists(record_path):
        raise ValuationError(f"{record_path!r} is missing; pass a meta-model written by "
                             "`valuate fit-meta`")
    with open(record_path) as f:
        record = json.load(f)
    if record.get("kind") == "rater":
        raise ValuationError(f"{meta_path!r} is a DataRater, which values labelled rows only; "
                             "fit a value-imitating meta-model (`valuate fit-meta` without "
                             "--method rater)")
    frame = read_table(pool_path)
    label = record["label"]
    if id_column is None and record["id_column"] in frame.columns:
        id_column = record["id_column"]
    if id_column is None:
        id_conflict = "new"  # row numbers are positions, not identities
    classes = record["classes"]
    # The pool has no labels: a placeholder (the first class) lets the table load as the
    # training table did; the meta-model ignores it.
    frame = frame.drop(columns=[label], errors="ignore").assign(**{label: classes[0]})
    what = f"the columns of {pool_path!r}"
    frame = encode_table(frame, record.get("encoding"), label=label, id_column=id_column,
                         what=what)
    data = from_dataframe(frame, label=label, id_column=id_column, classes=classes)
    data = data.select_features(record["columns"], what=what)
    # float32 statistics, as `prepare` returns them: training rows keep their bits
    data, _ = data.standardize(np.asarray(record["mean"], np.float32),
                               np.asarray(record["std"], np.float32))
    meta = MetaValuator.load(meta_path, MODELS[record["model"]](len(classes)))
    plan = acquire_batch(meta, data, batch=batch, weight=weight, kind=kind, z=z,
                         radius=radius, id_conflict=id_conflict)
    a, predicted = plan.acquisition, plan.predicted
    order = a.order
    table = pd.DataFrame({
        "id": np.asarray(predicted.ids)[order],
        "rank": np.arange(1, len(order) + 1),
        "chosen": a.chosen[order],
        "value": predicted.values[order],
        "stderr": predicted.stderr[order],
        "category": categorize(predicted.values, predicted.stderr, z=z,
                               reference=plan.reference)[order],
        "uncertainty": a.uncertainty[order],
        "score": a.score[order],
    })
    sidecar = {**predicted.metadata(),
               "input": {"pool": os.path.abspath(pool_path), "meta": os.path.abspath(meta_path),
                         "id_column": id_column, "id_conflict": id_conflict, "rows": data.n},
               "acquisition": {"batch": batch, "weight": weight, "uncertainty": kind,
                               "radius": a.radius, "z": z, "reference": plan.reference,
                               "harmful": int(a.harmful.sum())}}
    write_table(out, table, sidecar)
    return sidecar
