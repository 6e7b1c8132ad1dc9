"""Regression targets: do the lowest values find corrupted targets, and at what cost?

scikit-learn's diabetes (442 x 10, a real target) split 70/30, features and target scaled
with the training split's statistics; a seeded `--corrupt` share (default 10 %) of the
training targets is pushed 3 target standard deviations up or down (the regression analogue
of flipped labels). Every method values the training rows for the default regression target
(ridge, `va.linear_regression()`, R^2 on the validation split); the detection protocol is
`valuation.evaluate.noisy_labels` (AUROC of the ranking, F1 of flagging the k lowest values,
k = corrupted rows). Baselines: random (F1 = the corruption rate, AUROC 0.5) and minus the
in-sample absolute residual of the full ridge fit (what any user can compute for free).

    python -m experiments.bench_regression [--quick] [--corrupt 0.1] [--seed 0]

Writes results/bench_regression.csv and .json. Seconds include compiling and drift with the
machine's load; compare them within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd

import valuation as va
from valuation.evaluate.noisy_labels import detection_auroc, detection_f1, random_f1
from valuation.shapley import max_draws

# method -> (value() options, budget of draws or None) for the full and the quick run
METHODS = {
    "tmc": ({}, (100, 10)),
    "beta": ({}, (100, 10)),
    "banzhaf": ({}, (5000, 512)),
    "loo": ({}, None),
    "oob": ({}, (800, 128)),
    "knn": ({"k": 10}, None),
    "influence": ({"solver": "exact"}, None),
    "dynamics": ({"signal": "loss"}, None),
}


def make_task(corrupt: float, seed: int):
    """`(train, valid, corrupted mask)`: diabetes split 70/30 and scaled; `corrupt` of the
    training targets shifted by +/-3 (standard deviations of the scaled target)."""
    train, valid = va.load_bundled("diabetes").split(0.7, 0.3, seed=seed)
    train, (mean, std) = train.standardize()
    valid, _ = valid.standardize(mean, std)
    mu, sd = float(train.y.mean()), float(train.y.std())
    train, valid = (d.replace(y=((d.y - mu) / sd).astype(np.float32)) for d in (train, valid))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(train.n, size=round(corrupt * train.n), replace=False)
    y = train.y.copy()
    y[chosen] += np.where(rng.random(chosen.size) < 0.5, -3.0, 3.0).astype(np.float32)
    mask = np.zeros(train.n, bool)
    mask[chosen] = True
    return train.replace(y=y), valid, mask


def _residual_baseline(train, valid) -> np.ndarray:
    """Minus the in-sample |residual| of the ridge fit on every training row."""
    utility = va.make_utility(va.linear_regression(), train, valid)
    params = utility.fit(np.ones((1, train.n), np.float32))
    pred = np.asarray(utility.predict_proba(params, train.x))[0]
    return -np.abs(pred - train.y)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    parser.add_argument("--corrupt", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, valid, corrupted = make_task(args.corrupt, args.seed)
    rows = [{"method": "random", "auroc": 0.5, "f1": random_f1(corrupted), "seconds": 0.0,
             "evaluations": 0}]
    start = time.perf_counter()
    values = _residual_baseline(train, valid)
    rows.append({"method": "abs_residual (baseline)", "auroc": detection_auroc(values, corrupted),
                 "f1": detection_f1(values, corrupted),
                 "seconds": time.perf_counter() - start, "evaluations": 1})
    for method, (options, budgets) in METHODS.items():
        stop = None if budgets is None else max_draws(budgets[1] if args.quick else budgets[0])
        start = time.perf_counter()
        result = va.value(train, method=method, valid=valid, stop=stop, seed=args.seed,
                          progress=False, **options)
        rows.append({"method": result.method, "auroc": detection_auroc(result.values, corrupted),
                     "f1": detection_f1(result.values, corrupted),
                     "seconds": time.perf_counter() - start,
                     "evaluations": result.extra.get("evaluations")})
    table = pd.DataFrame(rows)
    settings = {"task": "diabetes", "n_train": train.n, "n_valid": valid.n,
                "corrupted": int(corrupted.sum()), "shift_sd": 3.0, "seed": args.seed,
                "quick": args.quick, "target": "linear_regression (ridge, l2=1), metric r2"}
    print(json.dumps(settings))
    with pd.option_context("display.width", 200):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    os.makedirs("results", exist_ok=True)
    stem = "results/bench_regression" + ("_quick" if args.quick else "")
    table.to_csv(stem + ".csv", index=False)
    with open(stem + ".json", "w") as f:
        json.dump({"settings": settings, "rows": rows}, f, indent=2, default=str)
    return table


if __name__ == "__main__":
    main()
