"""Benchmark of the utility engine: models trained and scored per second, against scikit-learn.

For each task, the same random subsets (each sample kept with probability 1/2) are fitted by the
engine (one compiled, vmap-ed program per chunk) and by a loop of scikit-learn
`LogisticRegression(C=1/l2)` fits; both report mean validation accuracy, which must agree within
one point. Compile time is reported apart from the steady-state throughput (median of three warm runs). Peak memory is the
process's maximum resident set size.

    python -m experiments.bench_utility [--quick] [--models 1024] [--sklearn-fits 200]

Writes results/bench_utility.csv and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import jax
import numpy as np
import pandas as pd

import valuation as va


def _split(name: str, seed: int = 0):
    data = va.load_bundled(name)
    fractions = (0.7, 0.3) if name == "breast_cancer" else (0.6, 0.4)
    train, valid = data.split(*fractions, seed=seed)
    train, (mean, std) = train.standardize()
    return train, valid.standardize(mean, std)[0]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_task(name: str, n_models: int, n_sklearn: int, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression

    train, valid = _split(name, seed)
    utility = va.make_utility(va.logistic_regression(train.n_classes), train, valid)
    rng = np.random.default_rng(seed)
    masks = (rng.random((n_models, train.n)) < 0.5).astype(np.float32)

    start = time.perf_counter()
    utility(masks[: utility.chunk])  # compile (and one chunk of work)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(3):  # median of three warm runs: one stray process cannot skew it
        start = time.perf_counter()
        ours = utility(masks)
        times.append(time.perf_counter() - start)
    engine_s = float(np.median(times))

    sub = masks[:n_sklearn]
    start = time.perf_counter()
    theirs = []
    for m in sub:
        keep = m > 0
        clf = LogisticRegression(C=1.0 / utility.l2, max_iter=1000)
        theirs.append(clf.fit(train.x[keep], train.y[keep]).score(valid.x, valid.y))
    sklearn_s = time.perf_counter() - start

    engine_rate, sklearn_rate = n_models / engine_s, n_sklearn / sklearn_s
    return {
        "task": name, "n_train": train.n, "d": train.d, "classes": train.n_classes,
        "solver": utility.solver, "steps": utility.steps, "chunk": utility.chunk,
        "engine_models": n_models, "engine_fits_per_s": round(engine_rate, 1),
        "engine_compile_s": round(compile_s, 2),
        "sklearn_fits": n_sklearn, "sklearn_fits_per_s": round(sklearn_rate, 1),
        "speedup": round(engine_rate / sklearn_rate, 2),
        "engine_accuracy": round(float(np.mean(ours[:n_sklearn])), 4),
        "sklearn_accuracy": round(float(np.mean(theirs)), 4),
        "accuracy_gap_points": round(100 * float(np.mean(ours[:n_sklearn]) - np.mean(theirs)), 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "device": jax.devices()[0].platform,
    }


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer models (a smoke run)")
    parser.add_argument("--models", type=int, default=2048, help="engine models per task")
    parser.add_argument("--sklearn-fits", type=int, default=200)
    parser.add_argument("--tasks", nargs="+", default=["breast_cancer", "digits"])
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.sklearn_fits = 256, 40
    rows = [bench_task(t, args.models, args.sklearn_fits) for t in args.tasks]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    os.makedirs(args.out, exist_ok=True)
    table.to_csv(os.path.join(args.out, "bench_utility.csv"), index=False)
    with open(os.path.join(args.out, "bench_utility.json"), "w") as f:
        json.dump(rows, f, indent=2)
    return table


if __name__ == "__main__":
    main()
