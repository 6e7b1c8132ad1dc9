"""Benchmark of the Data Shapley family: cost, noisy-label detection and estimate stability.

Run `python -m experiments.bench_shapley [--quick]`. For breast_cancer and digits
(`experiments.tasks`: stratified 60/20/20 split, standardised, 10 % of the training labels
flipped) and a logistic-regression target model (the engine's batched Newton solver,
accuracy on the validation split), every method of `valuation.value` -- TMC-Shapley,
Beta(16, 1) Shapley, MSR Banzhaf, leave-one-out, Data-OOB, KNN-Shapley (K = 10) -- reports

* wall time (including JAX compilation) and utility evaluations (models trained);
* noisy-label detection: F1 of flagging the k lowest values (k = number of flipped labels)
  and AUROC (`experiments.noisy_labels`);
* Spearman correlation with a long-run reference: the same method, another seed, `ref`
  times the budget (1.0 by construction for the deterministic methods);

next to two baselines: a seeded random ranking and the share of a sample's 10 nearest
training neighbours carrying its label. Digits is reduced for the retraining methods' sake:
300 training samples and the first 10 principal components of the training features (a
10-class logistic regression on all 64 pixels has 585 parameters, beyond the Newton
solver). A last row times KNN-Shapley on 100,000 training x 1,000 validation points (20
features, synthetic).

pyDVL (0.10) is compared only when a separate environment `/work/pydvl-venv` exists (never
a dependency of valuate; `experiments/pydvl_shapley.py` runs there on the same splits, with
scikit-learn's `LogisticRegression(C=1)`, the same L2 objective), and only on
`PYDVL_TASKS`; otherwise it is skipped with a message. Each of its Monte Carlo methods gets
the same draw budget capped by `PYDVL_SECONDS` of wall time, and Data-OOB at most
`PYDVL_OOB` bagged models; its rows are scored against our reference runs.

Writes `results/bench_shapley[_quick].csv` and `.json` (the table and the settings).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd

import valuation as va
from valuation.evaluate.noisy_labels import (
    detection_auroc,
    detection_f1,
    knn_label_agreement,
    random_f1,
)
from valuation.evaluate.rank_correlation import spearman
from valuation.results import atomic_write, write_json
from valuation.shapley import knn_shapley, max_draws
from valuation.tasks import make_task

PYDVL = "/work/pydvl-venv/bin/python"
PYDVL_TASKS = ("breast_cancer",)
PYDVL_SECONDS = {"full": 120.0, "quick": 30.0}
PYDVL_OOB = {"full": 200, "quick": 50}

# Monte Carlo budgets in draws (permutations, coalitions, bagged models) per task; the
# reference run uses `REF` times as many.
BUDGETS = {
    "full": {"breast_cancer": {"tmc": 200, "beta": 200, "banzhaf": 16384, "oob": 800},
             "digits": {"tmc": 24, "beta": 24, "banzhaf": 2048, "oob": 800}},
    "quick": {"breast_cancer": {"tmc": 16, "beta": 16, "banzhaf": 2048, "oob": 256},
              "digits": {"tmc": 8, "beta": 8, "banzhaf": 1024, "oob": 256}},
}
REF = {"full": 3, "quick": 2}
# (label, value() method, options): Data-OOB runs with both of its per-sample scores.
METHODS = (("tmc", "tmc", {"truncation_rtol": 0.01}), ("beta", "beta", {"truncation_rtol": 0.01}),
           ("banzhaf", "banzhaf", {}), ("oob", "oob", {}),
           ("oob_probability", "oob", {"score": "probability"}), ("loo", "loo", {}),
           ("knn", "knn", {"k": 10}))


def _task(name: str, seed: int):
    """(train, valid, flipped) for a task; digits reduced as the module docstring says."""
    task = make_task(name, noise=0.1, seed=seed)
    train, valid, noisy = task.train, task.valid, task.noisy
    if name == "digits":
        keep = np.arange(300)
        train, noisy = train.subset(keep), noisy[keep]
        centre = train.x.mean(axis=0)
        basis = np.linalg.svd(train.x - centre, full_matrices=False)[2][:10].T
        project = lambda d: d.replace(x=((d.x - centre) @ basis).astype(np.float32))
        train, valid = project(train), project(valid)
    return train, valid, noisy


def _row(task, method, values, noisy, seconds, evaluations, reference=None, **extra):
    return {"task": task, "method": method, "seconds": round(seconds, 2),
            "evaluations": evaluations, "f1": detection_f1(values, noisy),
            "auroc": detection_auroc(values, noisy),
            "spearman_ref": np.nan if reference is None else spearman(values, reference),
            **extra}


def pydvl_rows(name, train, valid, noisy, mode, references, ours, our_draws,
               echo=print) -> list[dict]:
    """pyDVL's methods on the same split in its own environment (see the module docstring).

    `time_ratio_vs_valuate` is pyDVL's wall time over ours; as pyDVL's Monte Carlo runs stop
    at the time cap with fewer draws, `throughput_ratio` compares draws per second instead
    (ours / pyDVL's; draws = permutations, coalitions or bagged models).
    """
    import subprocess
    import tempfile

    budget = BUDGETS[mode][name]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.json")
        np.savez(src, xt=train.x, yt=train.y, xv=valid.x, yv=valid.y, tmc=budget["tmc"],
                 banzhaf=budget["banzhaf"], oob=min(budget["oob"], PYDVL_OOB[mode]), k=10,
                 time_limit=PYDVL_SECONDS[mode])
        script = os.path.join(os.path.dirname(__file__), "pydvl_shapley.py")
        subprocess.run([PYDVL, script, src, dst], check=True, stderr=subprocess.DEVNULL)
        with open(dst) as f:
            runs = json.load(f)
    rows = []
    for method, run_ in runs.items():
        rows.append(_row(name, f"pydvl_{method}", np.asarray(run_["values"]), noisy,
                         run_["seconds"], None, references.get(method)))
        ratio = run_["seconds"] / max(ours[method], 1e-9)
        rows[-1]["time_ratio_vs_valuate"] = round(ratio, 1)
        rows[-1]["draws"] = run_["draws"]
        if run_["draws"] and our_draws.get(method):
            rows[-1]["throughput_ratio"] = round(
                (our_draws[method] / ours[method]) / (run_["draws"] / run_["seconds"]), 1)
        echo(f"  pydvl_{method:<14} {run_['seconds']:7.1f} s  {run_['draws']} draws  "
             f"F1 {rows[-1]['f1']:.3f}  Spearman(our ref) {rows[-1]['spearman_ref']:.3f}  "
             f"time x{ratio:.1f} ours, draws/s ours x{rows[-1].get('throughput_ratio')}")
    return rows


def bench_task(name: str, mode: str, seed: int, echo=print) -> list[dict]:
    train, valid, noisy = _task(name, seed)
    echo(f"{name}: {train.n} training samples, {int(noisy.sum())} flipped, "
         f"{valid.n} validation, d={train.d}, {train.n_classes} classes")
    rows = []
    rng = np.random.default_rng(seed)
    rows.append(_row(name, "random", rng.random(train.n), noisy, 0.0, 0,
                     note=f"expected F1 {random_f1(noisy):.3f}"))
    start = time.perf_counter()
    rows.append(_row(name, "knn10_label_agreement", knn_label_agreement(train.x, train.y), noisy,
                     time.perf_counter() - start, 0))
    references, seconds_by_method, draws_by_method = {}, {}, {}
    for label, method, options in METHODS:
        budget = BUDGETS[mode][name].get(method)
        runs = []
        # one utility per method: the first run's time includes its compilation
        utility = va.make_utility(va.logistic_regression(train.n_classes), train, valid)
        for run_seed, factor in ((seed, 1), (seed + 1, REF[mode])) if budget else ((seed, 1),):
            stop = max_draws(budget * factor) if budget else None
            start = time.perf_counter()
            result = va.value(utility, method=method, seed=run_seed, stop=stop,
                              progress=False, **options)
            runs.append((result, time.perf_counter() - start))
        (result, seconds), reference = runs[0], runs[-1][0].values
        evals = result.extra.get("evaluations", 0)
        label = result.method + ("[probability]" if "score" in options else "")
        rows.append(_row(name, label, result.values, noisy, seconds, evals, reference,
                         draws=result.extra.get("draws"),
                         ref_evaluations=runs[-1][0].extra.get("evaluations") if budget else None,
                         median_stderr=float(np.median(result.stderr))))
        references[label], seconds_by_method[label] = reference, seconds
        draws_by_method[label] = result.extra.get("draws")
        r = rows[-1]
        echo(f"  {r['method']:<20} {seconds:7.1f} s  {evals:>7} evals  F1 {r['f1']:.3f}  "
             f"AUROC {r['auroc']:.3f}  Spearman(ref) {r['spearman_ref']:.3f}")
    if name in PYDVL_TASKS and os.path.exists(PYDVL):
        rows += pydvl_rows(name, train, valid, noisy, mode, references, seconds_by_method,
                           draws_by_method, echo)
    return rows


def knn_scale(n: int = 100_000, m: int = 1_000, d: int = 20, seed: int = 0) -> dict:
    """Wall time of KNN-Shapley on n training x m validation points (synthetic)."""
    data = va.make_classification(n + m, d, n_classes=3, seed=seed)
    start = time.perf_counter()
    est = knn_shapley(data.x[:n], data.y[:n], data.x[n:], data.y[n:], k=10)
    seconds = time.perf_counter() - start
    assert np.all(np.isfinite(est.values))
    return {"task": f"synthetic {n} x {m}", "method": "knn_shapley",
            "seconds": round(seconds, 2), "evaluations": 0}


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (minutes)")
    parser.add_argument("--tasks", default="breast_cancer,digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    rows = []
    for name in args.tasks.split(","):
        rows += bench_task(name, mode, args.seed)
    scale = knn_scale(10_000 if args.quick else 100_000, 1_000)
    print(f"KNN-Shapley {scale['task']}: {scale['seconds']:.1f} s")
    rows.append(scale)
    if not os.path.exists(PYDVL):
        print(f"pyDVL comparison skipped: {PYDVL} not found")
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.drop(columns=["note"], errors="ignore").round(3).to_string(index=False))
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "bench_shapley" + ("_quick" if args.quick else ""))
    atomic_write(stem + ".csv", lambda tmp: table.to_csv(tmp, index=False))
    meta = {"mode": mode, "budgets": BUDGETS[mode], "reference_factor": REF[mode],
            "methods": [[label, method, opts] for label, method, opts in METHODS],
            "seed": args.seed, "pydvl_seconds_cap": PYDVL_SECONDS[mode],
            "pydvl_oob_models": PYDVL_OOB[mode], "versions": va.results.package_versions(),
            "rows": json.loads(table.to_json(orient="records"))}
    write_json(stem + ".json", meta)
    return table


if __name__ == "__main__":
    main()
