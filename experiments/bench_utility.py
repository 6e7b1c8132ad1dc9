"""Benchmark of the utility engine: models trained and scored per second, against scikit-learn.

For each task the same random subsets (each sample kept with probability 1/2) are fitted by the
engine (one compiled program per chunk of models) and by a loop of scikit-learn fits of the
same model on the same subsets (`LogisticRegression(C=1/l2)`, `Ridge(alpha=l2)`,
`MLPClassifier`); both are scored on the same validation set. Reported per task:

* fits/s of each and their ratio (the engine: median of three warm runs over all models; the
  loop: one pass over the first `--sklearn-fits` subsets);
* agreement: the mean over those subsets of |engine score - scikit-learn score| (accuracy, or
  R^2 for regression), and both mean scores (for the MLP, whose fits differ by initialisation
  and optimizer, the means are what is compared);
* compile time: the first call on one chunk (building the utility, the full-data fit and the
  compiles) minus a warm call on the same chunk;
* peak memory (the process's maximum resident set size so far).

    python -m experiments.bench_utility [--quick] [--models 1024] [--sklearn-fits 100]
                                        [--tasks breast_cancer wine synthetic3 digits ...]
                                        [--chunk-sweep [--sweep-only]]

Writes results/bench_utility.csv and .json; `--chunk-sweep` also times each task at chunks
128 to 1024 and the automatic one (results/bench_utility_chunks.csv). Absolute rates drift with the machine's load; the
ratios are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import warnings

import jax
import numpy as np
import pandas as pd

import valuation as va

TASKS = ("breast_cancer", "wine", "synthetic3", "digits", "synthetic_10k", "diabetes",
         "breast_cancer_mlp", "digits_mlp")


def make_task(name: str, seed: int = 0):
    """`(train, valid, kind)`, standardised with the training split's statistics; a name
    ending in "_mlp" is the same data with the MLP target (one hidden layer of 64)."""
    kind = "logistic"
    if name.endswith("_mlp"):
        train, valid, _ = make_task(name[: -len("_mlp")], seed)
        return train, valid, "mlp"
    if name in ("breast_cancer", "wine"):
        train, valid = va.load_bundled(name).split(0.6, 0.4, seed=seed)  # n = 341 / 107
    elif name == "synthetic3":  # n = 2,000, d = 30, 3 classes
        data = va.make_classification(3000, 30, n_classes=3, seed=seed)
        train, valid = data.split(2 / 3, 1 / 3, seed=seed)
    elif name == "digits":  # n = 500, d = 64, 10 classes
        data = va.load_bundled("digits")
        train, valid = data.split(500 / data.n, 500 / data.n, seed=seed)
    elif name == "diabetes":  # n = 309, d = 10, a real target: the ridge target
        train, valid = va.load_bundled("diabetes").split(0.7, 0.3, seed=seed)
        kind = "ridge"
    elif name == "synthetic_10k":  # n = 10,000, d = 50, 2 classes
        data = va.make_classification(12000, 50, separation=1.0, seed=seed)
        train, valid = data.split(10000 / 12000, 2000 / 12000, seed=seed)
    else:
        raise ValueError(f"unknown task {name!r}; choose from {TASKS}")
    train, (mean, std) = train.standardize()
    return train, valid.standardize(mean, std)[0], kind


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sklearn_loop(kind, train, valid, masks, l2):
    """Scores and seconds of a loop of scikit-learn fits, its BLAS/OpenMP pools held at one
    thread: for fits this small that is scikit-learn's fastest setting (with two threads on a
    busy two-core machine the pools' spinning made the loop 20x slower)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    def make():
        if kind == "ridge":
            return Ridge(alpha=l2)  # .score is R^2
        if kind == "mlp":  # the same objective: alpha is our l2; defaults otherwise
            return MLPClassifier(hidden_layer_sizes=(64,), alpha=l2, random_state=0)
        return LogisticRegression(C=1.0 / l2, max_iter=1000)

    scores = []
    with threadpool_limits(1):
        start = time.perf_counter()
        for m in masks:
            keep = m > 0
            scores.append(make().fit(train.x[keep], train.y[keep]).score(valid.x, valid.y))
        seconds = time.perf_counter() - start
    return np.array(scores), seconds


def bench_task(name: str, n_models: int, n_sklearn: int, seed: int = 0,
               chunk: int | None = None) -> dict:
    train, valid, kind = make_task(name, seed)
    rng = np.random.default_rng(seed)
    masks = (rng.random((n_models, train.n)) < 0.5).astype(np.float32)

    start = time.perf_counter()
    model = {"ridge": va.linear_regression, "mlp": lambda: va.mlp(train.n_classes, (64,)),
             "logistic": lambda: va.logistic_regression(train.n_classes)}[kind]()
    utility = va.make_utility(model, train, valid, chunk=chunk)
    first = masks[: utility.chunk]
    utility(first)  # the full-data fit, the compiles and one chunk of work
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    utility(first)
    compile_s = cold_s - (time.perf_counter() - start)
    times = []
    for _ in range(3):  # median of three warm runs: one stray process cannot skew it
        start = time.perf_counter()
        ours = utility(masks)
        times.append(time.perf_counter() - start)
    engine_s = float(np.median(times))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, sklearn_s = _sklearn_loop(kind, train, valid, masks[:n_sklearn], utility.l2)

    engine_rate, sklearn_rate = n_models / engine_s, n_sklearn / sklearn_s
    diff = np.abs(ours[:n_sklearn] - theirs)
    return {
        "task": name, "n_train": train.n, "d": train.d, "classes": train.n_classes,
        "target": kind, "solver": utility.solver, "chunk": utility.chunk,
        "engine_models": n_models, "engine_fits_per_s": round(engine_rate, 1),
        "engine_compile_s": round(compile_s, 2),
        "sklearn_fits": n_sklearn, "sklearn_fits_per_s": round(sklearn_rate, 1),
        "speedup": round(engine_rate / sklearn_rate, 2),
        "metric": utility.metric_name,
        "engine_score": round(float(np.mean(ours[:n_sklearn])), 4),
        "sklearn_score": round(float(np.mean(theirs)), 4),
        "mean_abs_diff": float(f"{diff.mean():.2g}"),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "device": jax.devices()[0].platform,
    }


SWEEP = (128, 256, 512, 1024)


def chunk_sweep(name: str, n_models: int, seed: int = 0) -> dict:
    """Engine fits per CPU second at each chunk of `SWEEP` and at the automatic one, on the
    same subsets (one warm run each, after a call that compiles the chunk's shape); CPU time
    of this process, not wall time, so that other processes on a shared machine blur the
    comparison less. `auto_vs_best` is the automatic chunk's rate over the best swept one's."""
    train, valid, kind = make_task(name, seed)
    masks = (np.random.default_rng(seed).random((n_models, train.n)) < 0.5).astype(np.float32)
    model = {"ridge": va.linear_regression, "mlp": lambda: va.mlp(train.n_classes, (64,)),
             "logistic": lambda: va.logistic_regression(train.n_classes)}[kind]()
    auto = va.make_utility(model, train, valid).chunk
    rates = {}
    for chunk in sorted(set(SWEEP) | {auto}):
        utility = va.make_utility(model, train, valid, chunk=chunk)
        utility(masks[:chunk])  # compiles this shape
        start = time.process_time()
        utility(masks)
        rates[chunk] = n_models / (time.process_time() - start)
    best = max(rates[c] for c in SWEEP)
    return {"task": name, "auto_chunk": auto, "auto_vs_best": round(rates[auto] / best, 3),
            **{f"fits_per_cpu_s_{c}": round(r, 1) for c, r in sorted(rates.items())}}


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer models (a smoke run)")
    parser.add_argument("--sweep-only", action="store_true",
                        help="only the chunk sweep (with --chunk-sweep)")
    parser.add_argument("--models", type=int, default=1024, help="engine models per task")
    parser.add_argument("--sklearn-fits", type=int, default=100)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--chunk", type=int, default=None, help="models per compiled call")
    parser.add_argument("--out", default="results")
    parser.add_argument("--chunk-sweep", action="store_true",
                        help="also time each task at chunks 128..1024 and the automatic one "
                             "(results/bench_utility_chunks.csv)")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.sklearn_fits = 256, 20
    rows = []
    for t in [] if args.sweep_only else args.tasks:
        rows.append(bench_task(t, args.models, args.sklearn_fits, chunk=args.chunk))
        print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    os.makedirs(args.out, exist_ok=True)
    if rows:
        table.to_csv(os.path.join(args.out, "bench_utility.csv"), index=False)
        with open(os.path.join(args.out, "bench_utility.json"), "w") as f:
            json.dump(rows, f, indent=2)
    if args.chunk_sweep:
        sweep = []
        for t in args.tasks:
            sweep.append(chunk_sweep(t, args.models))
            print(json.dumps(sweep[-1]), flush=True)
        sweep = pd.DataFrame(sweep)
        print(sweep.to_string(index=False))
        sweep.to_csv(os.path.join(args.out, "bench_utility_chunks.csv"), index=False)
    return table


if __name__ == "__main__":
    main()
