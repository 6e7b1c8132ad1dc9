"""Influence benchmark: cost, noisy-label detection and agreement of every influence method.

Two tasks, each with 10 % of the training labels flipped (seeded):

* `digits`: multinomial logistic regression (585 parameters) on scikit-learn's digits,
  trained to its exact optimum by the batched Newton solver;
* `mlp50k`: an MLP with ~50,000 parameters (64 -> 256 -> 128 -> 2) on 10,000 synthetic
  samples, trained by full-batch Adam (`training.fit`, checkpoints saved for TracIn).

For each method: wall time and peak resident memory (`experiments.measure`), detection F1 and
AUROC of the flipped labels (lowest values flagged), and the Pearson correlation of its
values with the reference method of the task ("exact" on digits, "cg" on the MLP).

pyDVL comparison (MLP task): if a Python with pyDVL 0.10 and PyTorch is found (`--pydvl-python`,
default `/work/pydvl-venv/bin/python`; never a dependency of valuate), the same MLP is copied
into PyTorch and pyDVL's `CgInfluence` computes the train x validation influences for
`--pydvl-valid` validation points with the same damping and tolerance, timed in its own
process (2 threads). Our CG runs the same problem (`l2=0`: pyDVL's loss has no L2 term; the
damping, chosen above the Hessian's negative eigenvalues, is shared), and the table reports
both times, their ratio and the largest relative difference of the attribution matrices
(pyDVL's `InfluenceMode.Up` returns `<H^-1 g_test, g_i>` for the mean loss; removing one of n
samples moves theta by `(1/n) H^-1 g_i`, so ours is pyDVL's divided by n, sign and all). It
is skipped, with a line in the table, when no such Python exists.

    python -m experiments.bench_influence [--quick] [--task digits|mlp50k|all]

Writes `results/bench_influence.csv` and `.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import valuation as va
from valuation.data import from_arrays
from valuation.evaluate.measure import measure
from valuation.evaluate.noisy_labels import detection_auroc, detection_f1
from valuation.influence import influence, lanczos
from valuation.influence.grads import flatten, mean_objective
from valuation.influence.hvp import hvp

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
    params = va.fit_logistic_newton(
        jnp.asarray(noisy.x),
        jnp.asarray(noisy.y),
        jnp.ones((1, noisy.n)),
        n_classes=noisy.n_classes,
        l2=L2,
        steps=15,
    )
    params = jax.tree_util.tree_map(lambda a: a[0], params)
    _, ckpts = va.fit(
        model,
        jnp.asarray(noisy.x),
        jnp.asarray(noisy.y),
        jnp.ones(noisy.n),
        key=jax.random.PRNGKey(0),
        steps=200,
        l2=L2,
        save_every=40,
        optimizer=optax.sgd(0.5),
    )
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
    params, ckpts = va.fit(
        model,
        jnp.asarray(noisy.x),
        jnp.asarray(noisy.y),
        jnp.ones(noisy.n),
        key=jax.random.PRNGKey(0),
        steps=steps,
        l2=L2,
        save_every=every,
    )
    blocks = {"valid_blocks": 8}
    methods = {
        "cg": {**blocks, "maxiter": 300},
        "lowrank": {**blocks, "rank": 32},
        "exact_last_layer": {**blocks, "layers": ("out",)},
        "tracin": {**blocks, "checkpoints": ckpts, "learning_rates": 0.05 * every},
        "trak": {**blocks, "dim": 512},
    }
    return "mlp50k", model, params, noisy, valid, flipped, methods, "cg"


def _run(task) -> list[dict]:
    name, model, params, train, valid, flipped, methods, reference = task
    rows, values = [], {}
    n_params = va.models.n_params(params)
    for method, opts in methods.items():
        base = "exact" if method == "exact_last_layer" else method
        row = {"task": name, "method": method, "n_params": n_params, "n_train": train.n}
        try:
            result, cost = measure(
                influence,
                model,
                params,
                train,
                valid,
                method=base,
                l2=L2,
                key=jax.random.PRNGKey(0),
                **opts,
            )
        except va.ValuationError as err:  # a solver that reports failure: record it
            rows.append({**row, "error": str(err)})
            continue
        values[method] = result.values
        rows.append(
            {
                **row,
                "n_params_used": result.extra.get("n_params"),
                "seconds": round(cost.seconds, 2),
                "peak_mb": round(cost.peak_mb),
                "f1": detection_f1(result.values, flipped),
                "auroc": detection_auroc(result.values, flipped),
                "damping": result.extra.get("damping"),
                "lambda_min": result.extra.get("lambda_min"),
            }
        )
    for row in rows:
        if row["method"] in values and reference in values:
            row[f"pearson_vs_{reference}"] = float(
                np.corrcoef(values[row["method"]], values[reference])[0, 1]
            )
    return rows


PYDVL_SCRIPT = r"""
import sys, time, numpy as np, torch
from torch.utils.data import DataLoader, TensorDataset
from pydvl.influence.torch import CgInfluence
torch.set_num_threads(2)
z = np.load(sys.argv[1])
layers = [torch.nn.Linear(*z[f"w{i}"].shape) for i in range(3)]
with torch.no_grad():
    for i, layer in enumerate(layers):
        layer.weight.copy_(torch.from_numpy(z[f"w{i}"].T))
        layer.bias.copy_(torch.from_numpy(z[f"b{i}"]))
model = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(), layers[2])
xt, yt = torch.from_numpy(z["xt"]), torch.from_numpy(z["yt"]).long()
xv, yv = torch.from_numpy(z["xv"]), torch.from_numpy(z["yv"]).long()
start = time.perf_counter()
loader = DataLoader(TensorDataset(xt, yt), batch_size=int(z["batch"]))
inf = CgInfluence(model, torch.nn.functional.cross_entropy, regularization=float(z["damping"]),
                  rtol=float(z["rtol"]), atol=1e-12, maxiter=int(z["maxiter"]))
inf = inf.fit(loader)
values = inf.influences(xv, yv, xt, yt).detach().numpy()
np.savez(sys.argv[2], influences=values, seconds=time.perf_counter() - start)
"""


def _pydvl_compare(task, python: str, n_valid: int) -> list[dict]:
    """Our CG vs pyDVL's CgInfluence on the same MLP, damping and tolerance."""
    name, model, params, train, valid, _, _, _ = task
    if not os.path.exists(python):
        return [
            {
                "task": name,
                "method": "pydvl_cg",
                "error": f"no pyDVL Python at {python}: skipped",
            }
        ]
    valid = valid.subset(np.arange(n_valid))
    flat = flatten(params)
    xt, yt = jnp.asarray(train.x), jnp.asarray(train.y)
    h = hvp(mean_objective(model, flat, 0.0), flat.theta, xt, yt)
    evals, _ = lanczos(h, flat.dim, 40, key=jax.random.PRNGKey(1))
    lmin, lmax = float(evals[0]), float(evals[-1])
    damping = 1.5 * max(0.0, -lmin) + 1e-3 * lmax  # above the negative eigenvalues
    tol, maxiter = 1e-6, 1000
    start = time.perf_counter()
    _, matrix = influence(
        model,
        params,
        train,
        valid,
        method="cg",
        l2=0.0,
        damping=damping,
        tol=tol,
        maxiter=maxiter,
        valid_blocks=n_valid,
        return_matrix=True,
    )
    ours_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {
            f"{k}{i}": np.asarray(params[layer][k])
            for i, layer in enumerate(["dense_0", "dense_1", "out"])
            for k in ("w", "b")
        }
        np.savez(
            os.path.join(tmp, "in.npz"),
            **arrays,
            xt=train.x,
            yt=train.y,
            xv=valid.x,
            yv=valid.y,
            damping=damping,
            rtol=np.sqrt(tol),
            maxiter=maxiter,
            batch=train.n // 5 if train.n % 5 == 0 else train.n,
        )
        script = os.path.join(tmp, "run_pydvl.py")
        with open(script, "w") as f:
            f.write(PYDVL_SCRIPT)
        done = subprocess.run(
            [python, script, os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")],
            capture_output=True,
            check=False,
            text=True,
        )
        if done.returncode != 0:
            return [
                {
                    "task": name,
                    "method": "pydvl_cg",
                    "error": "pyDVL run failed: "
                    + done.stderr.strip().splitlines()[-1],
                }
            ]
        with np.load(os.path.join(tmp, "out.npz")) as out:
            theirs, seconds = out["influences"], float(out["seconds"])
    theirs = theirs.T / train.n  # (n_train, n_valid), our normalisation
    rel = float(np.max(np.abs(matrix - theirs)) / np.max(np.abs(theirs)))
    common = {
        "task": name,
        "n_params": flat.dim,
        "n_train": train.n,
        "damping": damping,
        "lambda_min": lmin,
        "n_valid_points": n_valid,
    }
    return [
        {
            **common,
            "method": "cg_vs_pydvl(ours)",
            "seconds": round(ours_seconds, 2),
            "max_rel_diff_vs_pydvl": rel,
            "pearson_vs_pydvl": float(
                np.corrcoef(matrix.ravel(), theirs.ravel())[0, 1]
            ),
        },
        {
            **common,
            "method": "pydvl_cg",
            "seconds": round(seconds, 2),
            "time_ratio_pydvl_over_ours": seconds / ours_seconds,
        },
    ]


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller data and fewer steps"
    )
    parser.add_argument("--task", choices=("digits", "mlp50k", "all"), default="all")
    parser.add_argument("--pydvl-python", default="/work/pydvl-venv/bin/python")
    parser.add_argument(
        "--pydvl-valid",
        type=int,
        default=8,
        help="validation points in the pyDVL comparison",
    )
    parser.add_argument(
        "--skip-methods",
        action="store_true",
        help="MLP task: only the pyDVL comparison",
    )
    args = parser.parse_args(argv)
    tasks = {"digits": _digits, "mlp50k": _mlp}
    rows = []
    for name, make in tasks.items():
        if args.task in (name, "all"):
            task = make(args.quick)
            if not (args.skip_methods and name == "mlp50k"):
                rows += _run(task)
            if name == "mlp50k":
                rows += _pydvl_compare(task, args.pydvl_python, args.pydvl_valid)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    os.makedirs("results", exist_ok=True)
    stem = "results/bench_influence" + ("_quick" if args.quick else "")
    table.to_csv(stem + ".csv", index=False)
    with open(stem + ".json", "w") as f:
        json.dump(rows, f, indent=2, default=str)
    return table


if __name__ == "__main__":
    main()
