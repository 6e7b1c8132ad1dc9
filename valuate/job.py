"""`valuate value`: a batch valuation job from a table on disk to a values table on disk.

Where it sits: the command line's main job, on top of `valuation.value`. Steps: read DATA
(CSV or Parquet) and the validation data (a second file, or a stratified share of DATA held
out), encode text/category columns and missing values with an encoding fitted on the training
rows (`valuation.encoding`; columns matched by name), standardise features with the training
statistics, value every training row for the target model, and write one row per input row
(see `valuate.table`) plus a JSON sidecar with the method, parameters, seed, the encoding,
content hashes of the input files, package versions, timings and any warnings.

Imbalance: when the rarest class holds under 40 % of an even share of the training rows
(`IMBALANCE`; under 20 % with two classes, 13.3 % with three),
accuracy rewards predicting the majority class and the minority rows come out "harmful"
wholesale. By default (`balance="auto"`) the job then weighs classes equally: the validation
metric becomes balanced accuracy (tmc, beta, banzhaf, loo), Data-OOB's bagged models train with
balanced class weights, and KNN-Shapley averages the validation classes equally. Influence
(validation log-loss) and dynamics are not balanced; the summary warns.

Regression: a numeric label that is not all whole numbers (or `task="regression"`) is a
regression target (`valuation.data.infer_task`). The target is then scaled to zero mean and
unit variance with the training statistics (recorded in the sidecar as "target_scaling"),
the default model is ridge regression ("linear"), the default metric R^2, and the reference
point of Data-OOB's minus squared errors is minus the training targets' variance (the mean
predictor's error; see `reference_point`). The sidecar records the task.

With a job folder, the running statistics are checkpointed there atomically; the same command
run again after an interruption (SIGKILL included) continues from the last checkpoint and
writes the values an uninterrupted run gives. Monte Carlo methods without `--job-dir` use the
folder `OUT.job/` (named on stderr) and remove it once the table is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

from valuation import (
    Dataset,
    ValuationError,
    ValuationWarning,
    linear_regression,
    load,
    logistic_regression,
    mlp,
)
from valuation.data import from_arrays, read_table
from valuation.encoding import apply_encoding, fit_encoding
from valuation.shapley.stopping import max_evaluations

from .table import (
    CATEGORIES,
    Z,
    category_counts,
    check_output,
    no_error_bars,
    reference_point,
    values_frame,
    write_table,
)

__all__ = ["IMBALANCE", "MODELS", "SCORED", "Prepared", "encode_table", "file_sha256", "prepare",
           "run_job", "target_model"]

# name -> model for a data set with k classes (k = 0: a regression target, one real output)
MODELS = {"logreg": logistic_regression, "linear": lambda k: linear_regression(),
          "mlp": lambda k: mlp(k or 1, hidden=(64,))}
CLASSIFIERS, REGRESSORS = ("logreg", "mlp"), ("linear", "mlp")
IMBALANCE = 0.4  # imbalanced: the rarest class holds under this fraction of an even share
MONTE_CARLO = ("tmc", "beta", "banzhaf", "oob")  # the methods --budget/--batch/--job-dir steer
SCORED = ("tmc", "beta", "banzhaf", "loo")  # the methods that score models with the metric


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes: what `fit-meta` checks before rebuilding a data set."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Prepared(NamedTuple):
    """The input rows, the standardised training and validation sets, the feature scaling,
    the encoding (None with `encode=False`) and, for a regression target, the target's
    scaling `{"mean", "std"}` (training statistics; None for classes)."""

    data: Dataset
    train: Dataset
    valid: Dataset
    mean: np.ndarray
    std: np.ndarray
    encoding: dict | None = None
    target: dict | None = None


def target_model(name: str, train: Dataset):
    """The `MODELS` entry `name` for `train`'s task ("auto": logreg for classes, linear
    (ridge) for a regression target).

    Raises:
      ValuationError: an unknown name, or a model that does not fit the task.
    """
    if name == "auto":
        name = "linear" if train.task == "regression" else "logreg"
    if name not in MODELS:
        raise ValuationError(f"unknown model {name!r}; choose one of auto, "
                             f"{', '.join(MODELS)}")
    fits = REGRESSORS if train.task == "regression" else CLASSIFIERS
    if name not in fits:
        raise ValuationError(f"--model {name} does not fit a {train.task} target; use "
                             f"{' or '.join(fits)} (default {fits[0]})")
    return name, MODELS[name](train.n_classes)


def _scale_target(train: Dataset, valid: Dataset):
    """Regression targets scaled to zero mean and unit variance with the training statistics
    (computed in float64), so that every target model sees targets on the scale of its
    initialisation; R^2 values do not change, squared errors are in units of the target's
    variance."""
    mean, std = float(np.mean(train.y, dtype=np.float64)), float(np.std(train.y,
                                                                        dtype=np.float64))
    std = std if std > 0 else 1.0
    scaled = [d.replace(y=((d.y - mean) / std).astype(np.float32)) for d in (train, valid)]
    return scaled[0], scaled[1], {"mean": mean, "std": std}


def _features(frame: pd.DataFrame, label: str, id_column: str | None) -> list[str]:
    return [c for c in frame.columns if c not in (label, id_column)]


def encode_table(frame: pd.DataFrame, encoding: dict | None, *, label: str,
                 id_column: str | None, what: str = "the table's columns") -> pd.DataFrame:
    """`frame` with its feature columns replaced by their encoding (`valuation.encoding`).

    Every column other than `label` and `id_column` is a feature and is matched by name to
    the encoding's columns (one error naming every missing and extra one); the label and id
    columns are kept as they are. `encoding=None` (a job run with `--no-encode`) returns
    `frame` unchanged. The rows keep their order.
    """
    if encoding is None:
        return frame
    encoded = apply_encoding(frame[_features(frame, label, id_column)], encoding, what=what)
    keep = [label] + ([id_column] if id_column is not None else [])
    return pd.concat([encoded, frame[keep]], axis=1)


def _dataset(frame: pd.DataFrame, *, label: str, id_column: str | None, task: str,
             encoding: dict | None, names: tuple | None, what: str) -> Dataset:
    """`frame` as a `Dataset`, encoded with `encoding` and/or its features matched to `names`."""
    frame = encode_table(frame, encoding, label=label, id_column=id_column, what=what)
    data = load(frame, label=label, id_column=id_column, task=task)
    return data if names is None else data.select_features(names, what=what)


def prepare(data_path: str, *, label: str, id_column: str | None, valid: str | None,
            valid_fraction: float, seed: int, task: str = "auto",
            encode: bool = True) -> Prepared:
    """Read DATA, split off (or read) the validation data, encode, standardise.

    The split comes first and depends only on the labels and the seed, so the encoding and
    the scaling are fitted on the training rows alone; the same arguments always give the same
    split, encoding and scaling, which is what lets `valuate fit-meta` rebuild the training set
    a values table was computed on. The validation table's columns are matched by name.
    """
    frame = read_table(data_path, keep=(label, id_column))
    if (label not in frame.columns or len(frame) == 0
            or (id_column is not None and id_column not in frame.columns)):
        load(frame, label=label, id_column=id_column)  # raises the error saying what is off
    train_rows, valid_rows = np.arange(len(frame)), None
    if valid is None:
        if not 0.0 < valid_fraction < 1.0:
            raise ValuationError(f"--valid-fraction {valid_fraction} must lie strictly "
                                 "between 0 and 1; e.g. --valid-fraction 0.2")
        # The split of `Dataset.split` needs labels and ids only: split a feature-less copy.
        ids = frame[id_column].to_numpy() if id_column is not None else frame.index.to_numpy()
        rows = from_arrays(np.zeros((len(frame), 1)), frame[label].to_numpy(), ids=ids,
                           task=task).replace(ids=np.arange(len(frame)))
        train_rows, valid_rows = (part.ids for part in rows.split(
            1.0 - valid_fraction, valid_fraction, seed=seed))
    encoding = None
    if encode:
        encoding = fit_encoding(frame.iloc[np.sort(train_rows)][_features(frame, label,
                                                                          id_column)])
    options = {"label": label, "id_column": id_column, "task": task, "encoding": encoding}
    data = _dataset(frame, **options, names=None, what="the data table's columns")
    if valid is None:
        train, valid_set = data.subset(train_rows), data.subset(valid_rows)
    else:
        train = data
        # the task is the training table's: a few validation targets may all be whole
        valid_set = _dataset(read_table(valid, keep=(label, id_column)),
                             **{**options, "task": data.task}, names=data.feature_names,
                             what="the validation table's columns")
    train, (mean, std) = train.standardize()
    valid_set, _ = valid_set.standardize(mean, std)
    target = None
    if train.task == "regression":
        train, valid_set, target = _scale_target(train, valid_set)
    return Prepared(data, train, valid_set, np.asarray(mean), np.asarray(std), encoding,
                    target)


def balance_plan(train: Dataset, method: str, metric: str | None,
                 balance: str) -> tuple[dict, dict]:
    """Utility options and a sidecar record for class balance (see the module docstring).

    Args:
      train: the training set.
      method: a `valuation.METHODS` name.
      metric: the user's metric, or None for the default.
      balance: "auto" (balance when the rarest class's share is below `IMBALANCE / k`), "on"
        or "off".

    Returns:
      `(utility_options, record)`: the `make_utility` keyword arguments and a JSON-ready
      record with the class shares, whether balancing applies and a warning (or None).
    """
    if balance not in ("auto", "on", "off"):
        raise ValuationError(f"unknown --balance {balance!r}; choose auto, on or off")
    if train.task == "regression":
        if balance == "on":
            raise ValuationError("--balance on weighs classes, but this is a regression "
                                 "target: drop --balance")
        return {"metric": metric or "r2"}, {"imbalanced": False, "mode": balance,
                                            "applied": False, "metric": metric or "r2",
                                            "class_weight": None, "warning": None}
    counts = np.bincount(train.y, minlength=train.n_classes)
    shares = counts / counts.sum()
    rarest = int(np.argmin(shares))
    imbalanced = bool(shares[rarest] < IMBALANCE / train.n_classes)
    applied = balance == "on" or (balance == "auto" and imbalanced)
    options = {"metric": metric or ("balanced_accuracy" if applied else "accuracy")}
    if applied and method in ("oob", "knn"):
        options["class_weight"] = "balanced"
    warning = None
    if imbalanced:
        warning = (f"imbalanced classes: {train.classes[rarest]!r} holds "
                   f"{100 * shares[rarest]:.1f} % of the training rows; ")
        if not applied:
            warning += ("with plain accuracy the minority rows tend to come out harmful "
                        "wholesale; drop --balance off (balanced accuracy, class weights)")
        elif method in ("influence", "dynamics"):
            warning += (f"{method} is not class-balanced, so minority rows may come out "
                        "harmful wholesale; prefer --method banzhaf, oob or knn")
        elif metric is not None and metric != "balanced_accuracy" and method in SCORED:
            warning += (f"--metric {metric} is not class-balanced; consider --metric "
                        "balanced_accuracy")
        else:
            warning += ("classes weigh equally: " + (
                "class-weighted training" if method == "oob" else
                "validation classes averaged equally" if method == "knn" else
                f"validation metric {options['metric']}"))
    record = {"class_shares": {str(c): float(f) for c, f in zip(train.classes, shares)},
              "imbalanced": imbalanced, "mode": balance, "applied": applied,
              "metric": options["metric"], "class_weight": options.get("class_weight"),
              "warning": warning}
    return options, record


def _flat_warning(result, method: str, metric: str) -> str | None:
    """A warning when every value is the same (the method told no row apart), else None."""
    values = np.asarray(result.values, float)
    if values.size == 0 or np.ptp(values) > 0:
        return None
    fix = ("--metric neg_log_loss: one row rarely changes a model's accuracy"
           if method == "loo" and metric != "neg_log_loss" else
           "another --metric, a larger --budget or another --method")
    return (f"all {values.size} values equal {values[0]:.3g}: {method} tells no row apart "
            f"on this data; try {fix}")


def run_job(
    data_path: str,
    *,
    label: str,
    out: str,
    method: str,
    model: str = "auto",
    metric: str | None = None,
    id_column: str | None = None,
    valid: str | None = None,
    valid_fraction: float = 0.2,
    seed: int = 0,
    budget: int | None = None,
    batch: int | None = None,
    job_dir: str | None = None,
    progress: bool = True,
    z: float = Z,
    task: str = "auto",
    encode: bool = True,
    balance: str = "auto",
    ray: str | None = None,
    degenerate: str | None = None,
) -> dict:
    """Run one valuation job end to end; returns the sidecar dict it wrote.

    `metric=None` is accuracy, or balanced accuracy when classes are balanced (`balance`);
    r2 for a regression target. `model="auto"` is logreg for classes, linear (ridge) for a
    regression target (`target_model`). `degenerate` ("frequency" or "zero",
    `valuation.utility`) sets how the subset-scoring methods (`SCORED`) score a subset with
    fewer than two classes; None keeps the default.
    The sidecar's "warnings" list what the user should know (imbalance, values all equal,
    no error bars).

    Raises:
      ValuationError: any problem with the inputs or the output path, before work starts.
    """
    check_output(out, inputs=[p for p in (data_path, valid) if p is not None])
    if model not in ("auto", *MODELS):
        raise ValuationError(f"unknown model {model!r}; choose one of auto, "
                             f"{', '.join(MODELS)}")
    from valuation.api import (  # the value families load after cheap checks
        METHODS,
        value,
    )

    if method not in METHODS:
        raise ValuationError(f"unknown method {method!r}; choose one of "
                             f"{', '.join(sorted(METHODS))}")
    steering = [flag for flag, v in (("--budget", budget), ("--batch", batch),
                                     ("--job-dir", job_dir)) if v is not None]
    if steering and method not in MONTE_CARLO:
        raise ValuationError(f"{' and '.join(steering)} only apply to the Monte Carlo methods "
                             f"({', '.join(MONTE_CARLO)}); {method} runs once: drop them")
    if budget is not None and budget < 1:
        raise ValuationError(f"--budget {budget} must be a positive number of evaluations")
    if degenerate is not None and method not in SCORED:
        raise ValuationError(f"--degenerate only changes the methods that score subsets "
                             f"({', '.join(SCORED)}); {method} does not: drop it")
    start = time.perf_counter()
    data, train, valid_set, _, _, encoding, target = prepare(
        data_path, label=label, id_column=id_column, valid=valid,
        valid_fraction=valid_fraction, seed=seed, task=task, encode=encode)
    model, target_net = target_model(model, train)
    utility_options, balance_record = balance_plan(train, method, metric, balance)
    if degenerate is not None:
        utility_options["degenerate"] = degenerate
    loaded = time.perf_counter()
    checkpoint = None
    auto_dir = job_dir is None and METHODS[method].default_stop is not None
    if auto_dir:  # Monte Carlo: checkpoints on by default, in a folder beside the output
        job_dir = out + ".job"
        if progress:
            print(f"valuate: checkpoints in {job_dir}/ (removed when the job finishes); if "
                  "it is interrupted, run the same command again to resume", file=sys.stderr)
    if job_dir is not None:
        checkpoint = os.path.join(job_dir, "checkpoint.npz")  # the runner makes the folder
    with warnings.catch_warnings(record=True) as caught:  # into the sidecar, printed once
        warnings.simplefilter("always", ValuationWarning)
        result = value(train, target_net, method=method, valid=valid_set,
                       stop=None if budget is None else max_evaluations(budget), seed=seed,
                       progress=progress, checkpoint=checkpoint,
                       utility_options=utility_options,
                       **({} if batch is None else {"batch": batch}),
                       **({} if ray is None else {"ray": ray}))
    raised = [str(w.message) for w in caught if issubclass(w.category, ValuationWarning)]
    for w in caught:  # anything else goes on to the usual handlers
        if not issubclass(w.category, ValuationWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    valued = time.perf_counter()
    variance = float(np.var(train.y, dtype=np.float64)) if train.task == "regression" else None
    reference = reference_point(result.method, train.n_classes, target_variance=variance)
    frame = values_frame(result, data.ids, z=z, reference=reference)
    flat = _flat_warning(result, method, utility_options["metric"])
    signless = no_error_bars(result.stderr)
    rule = ("harmful: value + z*stderr < reference; useful: value - z*stderr > reference; "
            "useless: otherwise; validation: held-out rows")
    if signless:
        rule = ("no error bars (stderr is 0 for every row): harmful: value < reference; "
                "useful: value > reference; useless: value == reference; validation: "
                "held-out rows")
    notes = [w for w in (balance_record["warning"], flat, *raised) if w]
    if signless and method == "dynamics":
        notes.append("dynamics: the training seeds agree exactly, so there is no error "
                        "bar; categories come from the sign of the value alone")
    metadata = result.metadata()
    if "truncation" in metadata["extra"]:  # a summary; the positions stay in the result
        metadata["extra"] = {**metadata["extra"], "truncation": {
            k: v for k, v in metadata["extra"]["truncation"].items() if k != "positions"}}
    sidecar = {
        **metadata,
        "input": {"data": os.path.abspath(data_path), "sha256": file_sha256(data_path),
                  "label": label, "id_column": id_column,
                  "valid": valid and os.path.abspath(valid),
                  "valid_sha256": valid and file_sha256(valid),
                  "valid_fraction": None if valid else valid_fraction, "seed": seed,
                  "task": task, "encode": encode,
                  "rows": data.n, "n_train": train.n, "n_valid": valid_set.n},
        "encoding": encoding,
        "task": train.task,
        "target_scaling": target,
        "model": model,
        "metric": utility_options["metric"],
        "balance": balance_record,
        "categories": {"z": z, "reference": reference, "rule": rule,
                       **category_counts(frame, CATEGORIES)},
        "warnings": notes,
        "timings": {"load_s": loaded - start, "value_s": valued - loaded},
    }
    write_table(out, frame, sidecar)
    if auto_dir:
        shutil.rmtree(job_dir, ignore_errors=True)
    return sidecar
