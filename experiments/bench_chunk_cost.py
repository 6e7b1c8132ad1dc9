"""The measurements behind the engine's chunk-size cost model (`valuation.chunking`).

For the "pcg" logistic solver on Gaussian-cluster data (`make_classification`, 500 validation
rows), over a grid of training rows n, features d and classes k, one compiled chunk of B
models is timed at two chunk sizes with a fixed number of solver steps (`tol=0`, `steps=8`,
so every model runs every step and the step count does not depend on B). Each row reports:

* `ms_per_step` at each B (the best of three warm calls, divided by the solver steps; the
  best, not the median, because other processes on a shared machine only ever add time);
* `fixed_ms` and `per_model_us`: the straight line `ms = fixed + B * per_model` through the
  two chunk sizes, per solver step. `fixed` is what a chunk pays whatever its size (loop and
  call overhead, reading the features); `per_model` is each model's own elementwise work
  and products;
* `bytes_per_model`: the growth of XLA's temporary buffers (`memory_analysis`) per added
  model, and `bytes_per_model_row` the same over `n * m` (m = 1 for two classes, else k).

Two more tables (`--memory`, `--stragglers`): the working set per model of the other
solvers (the same XLA growth from 8 to 64 models, `bytes_per_model_row` over training +
validation rows), and the straggler efficiency of "pcg" (mean steps over the chunk's steps,
on 512 random half-subsets of the `bench_utility` tasks, grouped into chunks of 16 to 512).

The fit printed at the end is the least-squares fit of the cost model's constants to these
points (`valuation.chunking` states the constants it uses and these points):

    fixed(n, d)          = a + b * n * (d + 1)              [ms per step]
    per_model(n, d, m)   = n * m * (c + e * (d + 1))        [ms per step]

    python -m experiments.bench_chunk_cost [--quick] [--memory] [--stragglers] [--out results]

Writes results/bench_chunk_cost.csv (and _memory.csv, _stragglers.csv). Absolute times drift with the machine's load; run it
on an idle machine for constants.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax.numpy as jnp
import numpy as np
import pandas as pd

import valuation as va

GRID = [(n, d, k) for n in (1_000, 10_000, 100_000) for d, k in ((20, 2), (64, 2), (30, 3),
                                                                      (64, 10))]
QUICK = [(n, d, k) for n in (1_000, 10_000) for d, k in ((20, 2), (30, 3))]
SIZES = (8, 64)
STEPS = 8


def _time_chunk(train, valid, chunk: int, rng) -> tuple[float, float, int]:
    """(best ms per solver step, XLA temp bytes, solver steps) of one chunk of `chunk`."""
    utility = va.make_utility(va.logistic_regression(train.n_classes), train, valid,
                              chunk=chunk, tol=0.0, steps=STEPS)
    masks = (rng.random((chunk, train.n)) < 0.5).astype(np.float32)
    utility(masks)  # compiles
    times = []
    for _ in range(3):
        start = time.perf_counter()
        utility(masks)
        times.append(time.perf_counter() - start)
    data = utility._data
    weights = jnp.asarray(masks)
    keys = jnp.zeros((chunk, 2), jnp.uint32)
    memory = utility._score.lower(data, weights, keys).compile().memory_analysis()
    return 1e3 * min(times) / STEPS, float(memory.temp_size_in_bytes), STEPS


def measure(n: int, d: int, k: int, seed: int = 0) -> dict:
    """One row of the table (module docstring) for n training rows, d features, k classes."""
    data = va.make_classification(n + 500, d, n_classes=k, seed=seed)
    train, valid = data.split(n / (n + 500), 500 / (n + 500), seed=seed)
    rng = np.random.default_rng(seed)
    small, big = SIZES
    ms_small, mem_small, _ = _time_chunk(train, valid, small, rng)
    ms_big, mem_big, _ = _time_chunk(train, valid, big, rng)
    per_model = (ms_big - ms_small) / (big - small)
    m = 1 if k == 2 else k
    bytes_per_model = (mem_big - mem_small) / (big - small)
    return {"n": train.n, "d": d, "k": k, f"ms_per_step_{small}": round(ms_small, 4),
            f"ms_per_step_{big}": round(ms_big, 4),
            "fixed_ms": round(ms_small - small * per_model, 4),
            "per_model_us": round(1e3 * per_model, 3),
            "bytes_per_model": round(bytes_per_model),
            "bytes_per_model_row": round(bytes_per_model / (train.n * m), 1),
            "load": round(os.getloadavg()[0], 2)}


MEMORY = [(2000, 20, 2, "logistic", "newton"), (20000, 20, 2, "logistic", "newton"),
          (2000, 64, 10, "logistic", "newton"), (2000, 20, 2, "logistic", "gd"),
          (2000, 20, 3, "logistic", "gd"), (2000, 20, 2, "mlp", "warm"),
          (20000, 20, 2, "mlp", "warm"), (2000, 20, 0, "ridge", "closed_form"),
          (20000, 20, 0, "ridge", "closed_form")]


def _temp_bytes(utility, chunk: int) -> float:
    weights = jnp.ones((chunk, utility.n), jnp.float32)
    keys = jnp.zeros((chunk, 2), jnp.uint32)
    compiled = utility._score.lower(utility._data, weights, keys).compile()
    return float(compiled.memory_analysis().temp_size_in_bytes)


def memory_row(n: int, d: int, k: int, kind: str, solver: str, seed: int = 0) -> dict:
    """Working set per model of `solver` (k = 0: a regression target, the ridge model)."""
    if k:
        data = va.make_classification(n + 500, d, n_classes=k, seed=seed)
    else:
        x = np.random.default_rng(seed).normal(size=(n + 500, d))
        data = va.load(x, x[:, 0] + 0.3, task="regression")
    train, valid = data.split(n / (n + 500), 500 / (n + 500), seed=seed)
    model = {"logistic": lambda: va.logistic_regression(k), "mlp": lambda: va.mlp(k, (64,)),
             "ridge": va.linear_regression}[kind]()
    utility = va.make_utility(model, train, valid, solver=solver)
    small, big = SIZES
    per_model = (_temp_bytes(utility, big) - _temp_bytes(utility, small)) / (big - small)
    return {"model": model.name, "solver": solver, "n": train.n, "d": d, "k": k,
            "bytes_per_model": round(per_model),
            "bytes_per_model_row": round(per_model / (train.n + valid.n), 1)}


def straggler_row(name: str) -> dict:
    """Mean steps over the chunk's (slowest model's) steps, for chunks of 16 to 512."""
    from valuation import glm

    from .bench_utility import make_task

    train, valid, _ = make_task(name)
    utility = va.make_utility(va.logistic_regression(train.n_classes), train, valid)
    data = utility._data
    masks = (np.random.default_rng(0).random((512, train.n)) < 0.5).astype(np.float32)
    _, info = glm.fit_logistic(data["xt"], data["yt"], jnp.asarray(masks),
                               n_classes=train.n_classes, init=data["full"], l2=utility.l2,
                               tol=utility.tol, max_steps=utility.steps,
                               shared=data.get("shared", False), outer=data.get("outer"),
                               return_info=True)
    used = np.asarray(info["used"], np.float64)
    return {"task": name, "mean_steps": round(float(used.mean()), 2),
            **{f"efficiency_{b}": round(float(used.mean() / used.reshape(-1, b).max(1).mean()), 3)
               for b in (16, 32, 64, 128, 256, 512)}}


def fit_constants(table: pd.DataFrame) -> dict:
    """Least-squares constants of the cost model (module docstring), non-negative."""
    from scipy.optimize import nnls

    big_d = table["d"] + 1
    m = np.where(table["k"] == 2, 1, table["k"])
    fixed, _ = nnls(np.stack([np.ones(len(table)), table["n"] * big_d], 1),
                    table["fixed_ms"].clip(lower=0).to_numpy())
    rows = table["n"] * m
    per, _ = nnls(np.stack([rows, rows * big_d], 1), table["per_model_us"].to_numpy() / 1e3)
    return {"a_ms": float(fixed[0]), "b_ms_per_row_feature": float(fixed[1]),
            "c_ms_per_row_output": float(per[0]), "e_ms_per_row_output_feature": float(per[1])}


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid (a smoke run)")
    parser.add_argument("--memory", action="store_true", help="also the other solvers' memory")
    parser.add_argument("--stragglers", action="store_true", help="also pcg's stragglers")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for flag, rows_of, name in ((args.memory, lambda: [memory_row(*c) for c in MEMORY], "memory"),
                                (args.stragglers, lambda: [straggler_row(t) for t in (
                                    "breast_cancer", "synthetic3", "digits", "synthetic_10k")],
                                 "stragglers")):
        if flag:
            extra = pd.DataFrame(rows_of())
            print(extra.to_string(index=False), flush=True)
            extra.to_csv(os.path.join(args.out, f"bench_chunk_cost_{name}.csv"), index=False)
    rows = []
    for n, d, k in QUICK if args.quick else GRID:
        rows.append(measure(n, d, k))
        print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    print(json.dumps(fit_constants(table)))
    table.to_csv(os.path.join(args.out, "bench_chunk_cost.csv"), index=False)
    return table


if __name__ == "__main__":
    main()
