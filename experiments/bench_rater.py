"""Data-rater measurement: noisy-label detection, transfer between target models, cost.

Run `python -m experiments.bench_rater [--tasks ...] [--seeds ...] [--tmc-draws N]`. For each
task of `experiments.tasks` (10 % flipped training labels, splits 60 / 20 / 20, digits capped
at 300 training rows as in `bench_metalearner`) and seed:

* a `DataRater` (defaults, seeded) is fitted with a logistic-regression target and with an
  MLP target (hidden 64, the utility's gradient-descent solver);
* noisy-label F1 / AUROC (the lowest values flagged) on the training rows and on new rows
  (the test split with 10 % of its labels flipped, seed + 1, as in `bench_metalearner`),
  beside KNN-Shapley (training rows), Data-OOB (200 bagged models, training rows) and 10-NN
  label agreement (both);
* transfer: each target's rater applied to the other target (`DataRater.for_target`), and the
  share of its native detection AUROC above chance it keeps, `(auc_transfer - 0.5) /
  (auc_native - 0.5)`, on the training rows;
* cost: the rater's fit seconds (logistic target, including its features and the compile),
  and with `--tmc-draws N` the seconds of an `N`-permutation TMC-Shapley run on the same
  utility (`200 / N` times it estimates a 200-permutation run; it is labelled as such).

Writes `results/bench_rater.csv` (one row per task and seed) and prints the mean over seeds.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from metalearner.rater import DataRater
from valuation import logistic_regression, make_utility, mlp
from valuation.api import value
from valuation.evaluate.noisy_labels import (
    detection_auroc,
    detection_f1,
    knn_label_agreement,
)
from valuation.shapley import max_draws
from valuation.tasks import make_task

__all__ = ["bench_task", "main"]

_CAP = {"digits": 300}


def _detection(prefix: str, values, noisy) -> dict:
    return {f"{prefix}_f1": detection_f1(values, noisy),
            f"{prefix}_auroc": detection_auroc(values, noisy)}


def bench_task(name: str, *, seed: int, tmc_draws: int = 0) -> dict:
    """One row of measurements for a task and seed (module docstring)."""
    task = make_task(name, noise=0.1, seed=seed)
    train, noisy, valid = task.train, task.noisy, task.valid
    cap = _CAP.get(name)
    if cap is not None and train.n > cap:
        train, noisy = train.subset(np.arange(cap)), noisy[:cap]
    new, new_noisy = task.test.flip_labels(0.1, seed=seed + 1)
    k = train.n_classes
    utilities = {"logreg": make_utility(logistic_regression(k), train, valid),
                 "mlp": make_utility(mlp(k, (64,)), train, valid)}
    row = {"task": name, "seed": seed, "n_train": train.n, "n_new": new.n}
    raters = {}
    for target, utility in utilities.items():
        start = time.perf_counter()
        raters[target] = DataRater(seed=seed).fit(utility)
        row[f"rater_{target}_s"] = time.perf_counter() - start
        row.update(_detection(f"rater_{target}", raters[target].value().values, noisy))
        row.update(_detection(f"new_rater_{target}", raters[target].predict(new).values,
                              new_noisy))
    for source, target in (("logreg", "mlp"), ("mlp", "logreg")):
        moved = raters[source].for_target(utilities[target])
        auc = detection_auroc(moved.value().values, noisy)
        row[f"transfer_{source}_to_{target}_auroc"] = auc
        native = row[f"rater_{target}_auroc"]
        row[f"transfer_{source}_to_{target}_kept"] = (auc - 0.5) / (native - 0.5)
    u = utilities["logreg"]
    row.update(_detection("knn_shapley", value(u, method="knn", progress=False).values,
                          noisy))
    oob = value(u, method="oob", seed=seed, stop=max_draws(200), progress=False)
    row.update(_detection("data_oob", oob.values, noisy))
    row.update(_detection("knn10", knn_label_agreement(train.x, train.y), noisy))
    row.update(_detection("new_knn10", knn_label_agreement(
        new.x, new.y, reference=(train.x, train.y)), new_noisy))
    if tmc_draws:
        start = time.perf_counter()
        value(u, method="tmc", seed=seed, stop=max_draws(tmc_draws), progress=False)
        row[f"tmc{tmc_draws}_s"] = time.perf_counter() - start
        row["tmc200_s_estimated"] = row[f"tmc{tmc_draws}_s"] * 200 / tmc_draws
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["breast_cancer", "wine"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--tmc-draws", type=int, default=0,
                        help="time an N-permutation TMC run per task (0: skip)")
    parser.add_argument("--out", default="results/bench_rater.csv")
    args = parser.parse_args(argv)
    rows = []
    for name in args.tasks:
        for seed in args.seeds:
            rows.append(bench_task(name, seed=seed,
                                   tmc_draws=args.tmc_draws if seed == args.seeds[0] else 0))
            print(pd.Series(rows[-1]).to_string(), flush=True)
    frame = pd.DataFrame(rows)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    frame.to_csv(args.out, index=False)
    summary = frame.drop(columns="seed").groupby("task").agg(["mean", "std"])
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(summary.T.to_string())


if __name__ == "__main__":
    main()
