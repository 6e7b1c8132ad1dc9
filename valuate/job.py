"""`valuate value`: a batch valuation job from a table on disk to a values table on disk.

Where it sits: the command line's main job, on top of `valuation.value`. Steps: read DATA
(CSV or Parquet) and the validation data (a second file, or a stratified share of DATA held
out), standardise features with the training statistics, value every training row for the
target model, and write one row per input row (see `valuate.table`) plus a JSON sidecar with
the method, parameters, seed, package versions and timings.

With a job folder, the running statistics are checkpointed there atomically; the same command
run again after an interruption (SIGKILL included) continues from the last checkpoint and
writes the values an uninterrupted run gives. Monte Carlo methods without `--job-dir` use the
folder `OUT.job/` (named on stderr) and remove it once the table is written.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import NamedTuple

import numpy as np

from valuation import Dataset, ValuationError, load, logistic_regression, mlp
from valuation.data import read_table
from valuation.shapley.stopping import max_evaluations

from .table import (
    CATEGORIES,
    Z,
    category_counts,
    check_output,
    reference_point,
    values_frame,
    write_table,
)

__all__ = ["MODELS", "Prepared", "prepare", "run_job"]

MODELS = {"logreg": logistic_regression, "mlp": lambda k: mlp(k, hidden=(64,))}


def _read(path: str, label: str, id_column: str | None) -> Dataset:
    return load(read_table(path), label=label, id_column=id_column)


class Prepared(NamedTuple):
    """The input rows, the standardised training and validation sets, and the scaling."""

    data: Dataset
    train: Dataset
    valid: Dataset
    mean: np.ndarray
    std: np.ndarray


def prepare(data_path: str, *, label: str, id_column: str | None, valid: str | None,
            valid_fraction: float, seed: int) -> Prepared:
    """Read DATA, split off (or read) the validation data, standardise with train statistics.

    The same arguments always give the same split (it is seeded), which is what lets
    `valuate fit-meta` rebuild the training set a values table was computed on.
    """
    data = _read(data_path, label, id_column)
    if valid is not None:
        train, valid_set = data, _read(valid, label, id_column)
    elif not 0.0 < valid_fraction < 1.0:
        raise ValuationError(f"--valid-fraction {valid_fraction} must lie strictly between 0 "
                             "and 1; e.g. --valid-fraction 0.2")
    else:
        train, valid_set = data.split(1.0 - valid_fraction, valid_fraction, seed=seed)
    train, (mean, std) = train.standardize()
    valid_set, _ = valid_set.standardize(mean, std)
    return Prepared(data, train, valid_set, np.asarray(mean), np.asarray(std))


def run_job(
    data_path: str,
    *,
    label: str,
    out: str,
    method: str,
    model: str = "logreg",
    metric: str = "accuracy",
    id_column: str | None = None,
    valid: str | None = None,
    valid_fraction: float = 0.2,
    seed: int = 0,
    budget: int | None = None,
    batch: int | None = None,
    job_dir: str | None = None,
    progress: bool = True,
    z: float = Z,
    ray: str | None = None,
) -> dict:
    """Run one valuation job end to end; returns the sidecar dict it wrote.

    Raises:
      ValuationError: any problem with the inputs or the output path, before work starts.
    """
    check_output(out)
    if model not in MODELS:
        raise ValuationError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    from valuation.api import (  # the value families load after cheap checks
        METHODS,
        value,
    )

    if method not in METHODS:
        raise ValuationError(f"unknown method {method!r}; choose one of "
                             f"{', '.join(sorted(METHODS))}")
    if budget is not None and budget < 1:
        raise ValuationError(f"--budget {budget} must be a positive number of evaluations")
    start = time.perf_counter()
    data, train, valid_set, _, _ = prepare(data_path, label=label, id_column=id_column,
                                           valid=valid, valid_fraction=valid_fraction,
                                           seed=seed)
    loaded = time.perf_counter()
    checkpoint = None
    auto_dir = job_dir is None and ray is None and METHODS[method].default_stop is not None
    if auto_dir:  # Monte Carlo: checkpoints on by default, in a folder beside the output
        job_dir = out + ".job"
        if progress:
            print(f"valuate: checkpoints in {job_dir}/ (removed when the job finishes); if "
                  "it is interrupted, run the same command again to resume", file=sys.stderr)
    if job_dir is not None:
        checkpoint = os.path.join(job_dir, "checkpoint.npz")  # the runner makes the folder
    result = value(train, MODELS[model](train.n_classes), method=method, valid=valid_set,
                   stop=None if budget is None else max_evaluations(budget), seed=seed,
                   progress=progress, checkpoint=checkpoint,
                   utility_options={"metric": metric},
                   **({} if batch is None else {"batch": batch}),
                   **({} if ray is None else {"ray": ray}))
    valued = time.perf_counter()
    reference = reference_point(result.method, train.n_classes)
    frame = values_frame(result, data.ids, z=z, reference=reference)
    sidecar = {
        **result.metadata(),
        "input": {"data": os.path.abspath(data_path), "label": label, "id_column": id_column,
                  "valid": valid and os.path.abspath(valid),
                  "valid_fraction": None if valid else valid_fraction, "seed": seed,
                  "rows": data.n, "n_train": train.n, "n_valid": valid_set.n},
        "model": model,
        "metric": metric,
        "categories": {"z": z, "reference": reference,
                       "rule": "harmful: value + z*stderr < reference; useful: value - "
                       "z*stderr > reference; useless: otherwise; validation: held-out rows",
                       **category_counts(frame, CATEGORIES)},
        "timings": {"load_s": loaded - start, "value_s": valued - loaded},
    }
    write_table(out, frame, sidecar)
    if auto_dir:
        shutil.rmtree(job_dir, ignore_errors=True)
    return sidecar
