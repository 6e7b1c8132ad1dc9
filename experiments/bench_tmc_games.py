"""TMC-Shapley: the two games, truncation on an imbalanced table, the CLI's default TMC on digits.

    python -m experiments.bench_tmc_games --out tmc-games/ [--parts games imbalanced digits]

* games: breast_cancer (60/40 split, seed 0, 341 training rows): Spearman correlation of TMC
  values at `--draws` permutations (seed 0) with a reference run of the same game at
  `--reference` permutations (seed 1), for each game of `make_utility(degenerate=...)`:
  "frequency" (default) and "zero" (pyDVL's).
* imbalanced: a Caravan-like synthetic table (5,822 rows, 6 % positives, a model barely better
  than the majority class; 80/20 split): default TMC (100 permutations, accuracy): share of
  values exactly 0, evaluations, median truncation position. Runs on older code too (run the
  file with another checkout on PYTHONPATH for a before/after).
* digits: `python -m valuate value` with TMC and its default budget on 625 digits rows (500
  training rows after the 20 % held out): wall time of the subprocess, evaluations, draws.

Figures are printed and written to `OUT/tmc_games.json`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

import valuation as va
from valuation.evaluate.rank_correlation import spearman
from valuation.shapley import max_draws


def _split(data, fractions, seed=0):
    train, valid = data.split(*fractions, seed=seed)
    train, (mean, std) = train.standardize()
    return train, valid.standardize(mean, std)[0]


def games(draws: int, reference: int) -> list[dict]:
    train, valid = _split(va.load_bundled("breast_cancer"), (0.6, 0.4))
    rows = []
    for game in ("frequency", "zero"):
        options = {"degenerate": game}
        start = time.perf_counter()
        ref = va.value(train, method="tmc", valid=valid, seed=1, stop=max_draws(reference),
                       progress=False, utility_options=options)
        run = va.value(train, method="tmc", valid=valid, seed=0, stop=max_draws(draws),
                       progress=False, utility_options=options)
        rows.append({"part": "games", "game": game, "draws": draws, "reference": reference,
                     "spearman": float(spearman(run.values, ref.values)),
                     "evaluations": run.extra["evaluations"],
                     "seconds": time.perf_counter() - start})
    return rows


def imbalanced(seed: int = 0) -> list[dict]:
    n, share = 5822, 0.06
    data = va.make_classification(2 * n, 20, separation=0.7, seed=seed)
    y = np.asarray(data.y)
    pos = round(n * share)
    keep = np.concatenate([np.flatnonzero(y == 0)[:n - pos], np.flatnonzero(y == 1)[:pos]])
    train, valid = _split(data.subset(np.sort(keep)), (0.8, 0.2))
    start = time.perf_counter()
    result = va.value(train, method="tmc", valid=valid, seed=seed, progress=False)
    record = result.extra.get("truncation", {})
    return [{"part": "imbalanced", "n_train": train.n, "positives": int(np.sum(train.y)),
             "exact_zeros": float(np.mean(result.values == 0)),
             "evaluations": result.extra["evaluations"], "draws": result.extra["draws"],
             "median_truncation": record.get("median_position"),
             "patience_rule": "truncation_patience" in inspect.signature(
                 va.shapley.tmc_shapley).parameters,
             "seconds": time.perf_counter() - start}]


def digits(out: str) -> list[dict]:
    data = va.load_bundled("digits")
    part, _ = data.split(625 / data.n, 1 - 625 / data.n, seed=0)
    frame = pd.DataFrame(np.asarray(part.x), columns=part.feature_names)
    frame["label"] = np.asarray(part.classes)[np.asarray(part.y)]
    path = os.path.join(out, "digits.csv")
    frame.to_csv(path, index=False)
    values = os.path.join(out, "digits-tmc.csv")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "valuate", "value", path, "--label", "label",
                    "--method", "tmc", "--out", values, "--quiet"], check=True)
    seconds = time.perf_counter() - start
    with open(values + ".json") as f:
        extra = json.load(f)["extra"]
    return [{"part": "digits", "rows": len(frame), "seconds": seconds,
             "evaluations": extra["evaluations"], "draws": extra["draws"],
             "median_truncation": extra.get("truncation", {}).get("median_position")}]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tmc-games")
    parser.add_argument("--parts", nargs="+", default=["games", "imbalanced", "digits"])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--reference", type=int, default=800)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for name in args.parts:
        part = (games(args.draws, args.reference) if name == "games" else
                imbalanced() if name == "imbalanced" else digits(args.out))
        for row in part:
            print(json.dumps(row), flush=True)
        rows += part
    with open(os.path.join(args.out, "tmc_games.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
