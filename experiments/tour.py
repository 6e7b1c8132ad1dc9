"""A tour of valuate, cell by cell: run it top to bottom, or open it as a notebook.

    python -m experiments.tour            # a few minutes on 2 CPU cores; figures in tour-output/

The `# %%` markers split it into cells (VS Code, Jupytext and Spyder open it as a notebook).
It values the breast-cancer training set with 10 % flipped labels by several methods, checks
which method finds the flipped labels, compares the rankings, retrains the target model
without the lowest- and highest-valued samples, and shows a checkpointed, resumable run.
"""

# %% Setup: a benchmark task, built deterministically from its name and seed.
import os
import sys

import numpy as np
import pandas as pd

import valuation as va
from valuation.api import value
from valuation.evaluate.noisy_labels import detection_auroc, detection_f1
from valuation.evaluate.point_removal import curve_summary, curves
from valuation.evaluate.rank_correlation import spearman
from valuation.shapley.stopping import max_evaluations, stderr_below
from valuation.tasks import make_task

OUT = sys.argv[1] if len(sys.argv) > 1 else "tour-output"
os.makedirs(OUT, exist_ok=True)

task = make_task("breast_cancer", noise=0.1, seed=0)
print(task.describe())
model = va.logistic_regression(task.train.n_classes)

# %% Value every training sample: four methods, one call each.
# Data-OOB and Banzhaf are Monte Carlo estimates with standard errors; leave-one-out and
# KNN-Shapley are exact (stderr 0). `stop` bounds a Monte Carlo run.
log_loss = {"metric": "neg_log_loss"}
results = {
    "oob": value(task.train, model, method="oob", seed=0, score="probability"),
    "banzhaf": value(task.train, model, method="banzhaf", valid=task.valid, seed=0,
                     stop=max_evaluations(2048), utility_options=log_loss),
    "loo": value(task.train, model, method="loo", valid=task.valid,
                 utility_options=log_loss),
    "knn": value(task.train, method="knn", valid=task.valid, k=10),
}
banzhaf = results["banzhaf"]
print(banzhaf)  # in a notebook, the result renders as a table of its lowest and highest
print(banzhaf.to_dataframe().sort_values("rank").head())

# %% Which method finds the flipped labels? Flag the k lowest values, k = number flipped.
print(pd.DataFrame({name: {"F1": detection_f1(r.values, task.noisy),
                           "AUROC": detection_auroc(r.values, task.noisy),
                           "seconds": r.extra.get("seconds")}
                    for name, r in results.items()}).T.round(3))

# %% Do the methods agree? Spearman correlation of the rankings.
names = list(results)
print(pd.DataFrame([[spearman(results[a].values, results[b].values) for b in names]
                    for a in names], index=names, columns=names).round(2))

# %% Retrain without the lowest- / highest-valued samples, scored on the held-out test set.
# Every point of every curve is one weight vector, so all of them train as one batch.
test_utility = va.make_utility(model, task.train, task.test)
frame = curves(results["oob"].values, test_utility, seed=0)
print(frame[frame["protocol"] == "removal"].pivot(index="fraction", columns="order",
                                                  values="score").round(3))
print(curve_summary(frame))

# %% Plots: values by rank with error bands, flipped labels highlighted.
fig = results["banzhaf"].plot(highlight=task.noisy)
fig.savefig(os.path.join(OUT, "banzhaf_values.png"))

# %% Error bars shrink with more evaluations; two runs of the same method pool by counts.
more = value(task.train, model, method="banzhaf", valid=task.valid, seed=1,
             stop=max_evaluations(2048), utility_options=log_loss)
pooled = banzhaf.merge(more)
print(f"median stderr: one run {np.median(banzhaf.stderr):.4f}, "
      f"pooled {np.median(pooled.stderr):.4f}")

# %% A long job: checkpoint to a file, stop on precision; rerunning the cell resumes it.
checkpoint = os.path.join(OUT, "banzhaf.npz")
long_run = value(task.train, model, method="banzhaf", valid=task.valid, seed=2,
                 stop=stderr_below(0.002, fraction=0.9) | max_evaluations(8192),
                 checkpoint=checkpoint, utility_options=log_loss)
print(long_run.extra["stopping_reason"], long_run.extra["evaluations"], "evaluations")
long_run.save(os.path.join(OUT, "banzhaf_values.parquet"))
print("written to", OUT)
