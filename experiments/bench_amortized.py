"""Amortized estimation against the plain estimator: Spearman to a reference per evaluation.

Run `python -m experiments.bench_amortized [--tiny] [--tasks ...] [--teachers ...]
[--out results]`. For each task (default breast_cancer and synthetic_1k, 10 % flipped labels,
split seed 0, logistic-regression target scored on validation log-loss, whose smooth
utility gives a reference that agrees with itself; on accuracy TMC's reference runs barely
agree at these budgets) and teacher (TMC-Shapley, MSR-Banzhaf):

* reference: two runs of the teacher on the training set at a high budget (TMC 100
  permutations each, Banzhaf 8,192 coalitions each; own seeds), averaged. Its reliability
  is the Spearman-Brown step-up of the two runs' Spearman `r`: `2r / (1 + r)`; the best
  Spearman any estimate with independent noise can reach against it is the square root
  (the "ceiling").
* plain: the teacher alone at a grid of budgets B (utility evaluations: TMC 1-32
  permutations' worth, `B = P * n`; Banzhaf 32-2,048 coalitions), Spearman to the reference.
* amortized (Covert et al., "Stochastic Amortization", NeurIPS 2024;
  `learn_values(..., amortized=True)`): the teacher at the same budget B on every training
  row, a meta-model fitted to those noisy values, its predictions for every row; Spearman
  to the reference. Its evaluations are B plus the meta-model's own refits of the target
  (one full fit, `folds` fold refits, `bags` bootstrap refits), and its seconds include the
  meta-model's fit.
* the target (issue 11): for each plain budget, the fewest amortized evaluations whose
  Spearman reaches the plain one, and the ratio (>= 10 is the target; "never" when no
  amortized budget of the grid reaches it).

Writes `bench_amortized.csv` (task, teacher, estimator, budget, evaluations, seconds,
spearman), `bench_amortized_targets.csv`, `bench_amortized.md` and `bench_amortized.json`.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from metalearner import MetaValuator, learn_values
from valuation import logistic_regression, make_utility
from valuation.api import value
from valuation.evaluate.measure import measure
from valuation.evaluate.rank_correlation import spearman
from valuation.results import package_versions, write_json, write_text
from valuation.shapley import max_evaluations
from valuation.tasks import make_task

from .meta_report import markdown

__all__ = ["bench_curve", "main", "reach"]

# Draws per grid point (permutations, coalitions), per reference run, and per update.
GRID = {"tmc": (1, 2, 4, 8, 16, 32), "banzhaf": (32, 128, 512, 2048)}
REFERENCE = {"tmc": 100, "banzhaf": 8192}
TINY_GRID = {"tmc": (1, 2), "banzhaf": (32, 64)}
TINY_REFERENCE = {"tmc": 4, "banzhaf": 256}
BATCH = {"tmc": 1, "banzhaf": 32}
META = MetaValuator(members=4, steps=1000)


def _evaluations(teacher: str, draws: int, n: int) -> int:
    return draws * n if teacher == "tmc" else draws


def bench_curve(name: str, teacher: str, *, grid: tuple[int, ...], reference_draws: int,
                meta: MetaValuator, echo=print) -> tuple[list[dict], dict]:
    """Curve rows (plain and amortized at each budget) and the reference's reliability."""
    task = make_task(name, noise=0.1, seed=0)
    utility = make_utility(logistic_regression(task.train.n_classes), task.train, task.valid,
                           metric="neg_log_loss")
    n = utility.n

    def run(seed, draws):
        return value(utility, method=teacher, seed=seed, progress=False, batch=BATCH[teacher],
                     stop=max_evaluations(_evaluations(teacher, draws, n)))

    halves = [run(seed, reference_draws) for seed in (101, 102)]
    r = spearman(halves[0].values, halves[1].values)
    reliability = {"task": name, "teacher": teacher, "reference_draws": 2 * reference_draws,
                   "half_spearman": r, "reliability": 2 * r / (1 + r),
                   "ceiling": float(np.sqrt(max(2 * r / (1 + r), 0.0)))}
    reference = (halves[0].values + halves[1].values) / 2
    refits = 1 + meta.folds + meta.bags
    rows = []
    for draws in grid:
        budget = _evaluations(teacher, draws, n)
        plain, cost = measure(run, 0, draws)
        rows.append({"estimator": "plain", "evaluations": plain.extra["evaluations"],
                     "seconds": cost.seconds, "spearman": spearman(plain.values, reference)})
        learned, cost = measure(learn_values, utility, teacher=teacher, amortized=True,
                                seed=0, meta=meta, stop=max_evaluations(budget),
                                progress=False, batch=BATCH[teacher])
        rows.append({"estimator": "amortized",
                     "evaluations": learned.teacher.extra["evaluations"] + refits,
                     "seconds": cost.seconds,
                     "spearman": spearman(learned.combined.values, reference)})
        for row in rows[-2:]:
            row.update(task=name, teacher=teacher, budget=budget)
        echo(f"{name} {teacher} budget {budget}: plain {rows[-2]['spearman']:.3f}, amortized "
             f"{rows[-1]['spearman']:.3f} (ceiling {reliability['ceiling']:.3f})")
    return rows, reliability


def reach(curve: pd.DataFrame) -> pd.DataFrame:
    """Per plain point of one (task, teacher) curve: the fewest amortized evaluations with a
    Spearman at least as high, and the ratio plain / amortized evaluations (NaN: never)."""
    plain = curve[curve["estimator"] == "plain"].sort_values("evaluations")
    amortized = curve[curve["estimator"] == "amortized"].sort_values("evaluations")
    out = []
    for _, p in plain.iterrows():
        enough = amortized[amortized["spearman"] >= p["spearman"]]
        fewest = float(enough["evaluations"].min()) if len(enough) else np.nan
        out.append({"task": p["task"], "teacher": p["teacher"],
                    "plain_evaluations": p["evaluations"], "plain_spearman": p["spearman"],
                    "amortized_evaluations": fewest, "ratio": p["evaluations"] / fewest,
                    "met": bool(p["evaluations"] >= 10 * fewest)})
    return pd.DataFrame(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["breast_cancer", "synthetic_1k"])
    parser.add_argument("--teachers", nargs="+", default=["tmc", "banzhaf"], choices=GRID)
    parser.add_argument("--tiny", action="store_true", help="tiny grid (the slow test)")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    grid, reference = (TINY_GRID, TINY_REFERENCE) if args.tiny else (GRID, REFERENCE)
    meta = MetaValuator(members=2, steps=100, bags=8) if args.tiny else META
    start = time.perf_counter()
    rows, reliabilities = [], []
    for name in args.tasks:
        for teacher in args.teachers:
            curve, reliability = bench_curve(name, teacher, grid=grid[teacher],
                                             reference_draws=reference[teacher], meta=meta)
            rows += curve
            reliabilities.append(reliability)
    curves = pd.DataFrame(rows)
    targets = pd.concat([reach(group) for _, group in
                         curves.groupby(["task", "teacher"], sort=False)], ignore_index=True)
    wide = curves.pivot_table(index=["task", "teacher", "budget"], columns="estimator",
                              values=["spearman", "evaluations", "seconds"], sort=False)
    wide.columns = [f"{e}_{m}" for m, e in wide.columns]
    report = "\n\n".join([
        "### reference reliability\n\n" + markdown(pd.DataFrame(reliabilities).set_index("task")),
        "### Spearman to the reference per budget\n\n" + markdown(wide),
        "### amortized evaluations to reach the plain estimator's Spearman (target: ratio"
        " >= 10)\n\n" + markdown(targets.assign(
            met=targets["met"].map({True: "met", False: "MISSED"})).set_index("task"), 3),
    ]) + "\n"
    print(report)
    os.makedirs(args.out, exist_ok=True)
    write_text(os.path.join(args.out, "bench_amortized.csv"), curves.to_csv(index=False))
    write_text(os.path.join(args.out, "bench_amortized_targets.csv"),
               targets.to_csv(index=False))
    write_text(os.path.join(args.out, "bench_amortized.md"), report)
    write_json(os.path.join(args.out, "bench_amortized.json"), {
        "config": {"tasks": args.tasks, "teachers": args.teachers, "grid": grid,
                   "reference_draws": reference, "batch": BATCH, "tiny": args.tiny,
                   "meta": meta.config(), "seconds": time.perf_counter() - start,
                   "versions": package_versions()},
        "reliability": reliabilities})


if __name__ == "__main__":
    main()
