"""Benchmark of selection: train on less data, keep the test accuracy (issue 15).

Run `python -m experiments.bench_select [--quick] [--out results]`. On each noisy task of
`valuation.tasks` (10 % of the training labels flipped; breast_cancer, wine, digits,
synthetic_1k, synthetic_3k; `--quick`: breast_cancer and wine) with logistic regression:

* selection curves, kept fraction (0.1 ... 0.9) against test accuracy, for
  - values: Data-OOB (800 bagged models) and KNN-Shapley (k = 10, scored on the validation
    split), each as "top" (highest-valued first, reliably harmful rows out first) and
    "coverage" (`valuation.selection.coverage_masks`, Zheng et al. 2023);
  - random subsets (10 seeded draws per fraction: mean and standard error);
  - EL2N at epoch 3 of 30 and forgetting counts (3 training runs of `dynamics.record`,
    full-batch Adam), pruned as their papers do: the easiest rows (lowest EL2N, least
    forgotten) out first; "el2n_easy" keeps the easiest rows instead (for reference only);
  every subset of a task trained in one batched utility call and scored on the test split;
* `valuation.select` for each value method: the subset chosen on the validation split
  (`keep` 0.005) and its accuracy on the test split (the confirmation set), which no step of
  valuing or selecting has seen (Data-OOB uses only the training rows; KNN-Shapley and the
  choice use the validation rows).

Targets (issue 15), each printed met or missed with its numbers: (1) a subset of at most 60 %
of the rows within 0.5 point of the full set's test accuracy (or above it), chosen by
`select`; (2) at every prune rate (30/50/70/90 %) at least as accurate as random and EL2N;
(3) no collapse below random at 90 % pruning.

Writes `<out>/bench_select_curves.csv`, `<out>/bench_select_chosen.csv`,
`<out>/bench_select.json` (tables, targets, settings, load) and `<out>/bench_select_<task>.png`.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import pandas as pd

from valuation import logistic_regression, make_utility, select
from valuation.api import value
from valuation.dynamics import record, signal_values
from valuation.evaluate.point_removal import order_masks
from valuation.results import atomic_write, write_json
from valuation.selection import candidate_masks
from valuation.tasks import make_task

TASKS = ("breast_cancer", "wine", "digits", "synthetic_1k", "synthetic_3k")
KEPT = tuple(round(0.1 * i, 1) for i in range(1, 10))
PRUNE_RATES = (0.3, 0.5, 0.7, 0.9)
N_RANDOM = 10
VALUED = ("oob", "knn")
TOL = 0.005


def _task_curves(name: str, *, seed: int) -> tuple[pd.DataFrame, list[dict]]:
    """Every method's selection curve on one task, and `select`'s choice per value method."""
    task = make_task(name, noise=0.1, seed=seed)
    train, k = task.train, task.train.n_classes
    model = logistic_regression(k)
    results = {m: value(train, model, method=m, valid=task.valid, seed=seed, progress=False)
               for m in VALUED}
    _, trace = record(model, train, key=jax.random.PRNGKey(seed), epochs=30, seeds=3)
    el2n = signal_values(trace, train.ids, "el2n").values  # minus EL2N: high = easy
    forget = signal_values(trace, train.ids, "forgetting").values  # minus the count
    rng = np.random.default_rng(seed)
    blocks = {f"{m}_{s}": candidate_masks(results[m], train, KEPT, strategy=s)
              for m in VALUED for s in ("top", "coverage")}
    # Paul et al. 2021 and Toneva et al. 2019 prune the easiest rows: keep the hardest first.
    blocks["el2n"] = order_masks(np.argsort(el2n, kind="stable"), KEPT, remove=False)
    blocks["forgetting"] = order_masks(np.argsort(forget, kind="stable"), KEPT, remove=False)
    blocks["el2n_easy"] = order_masks(np.argsort(-el2n, kind="stable"), KEPT, remove=False)
    blocks["random"] = np.concatenate([order_masks(rng.permutation(train.n), KEPT,
                                                   remove=False) for _ in range(N_RANDOM)])
    blocks["full"] = np.ones((1, train.n), np.float32)
    test_u = make_utility(model, train, task.test)
    scores = test_u(np.concatenate(list(blocks.values())))  # one batch: every subset
    rows, at = [], 0
    for method, masks in blocks.items():
        got = scores[at:at + len(masks)]
        at += len(masks)
        if method == "full":
            rows.append({"task": name, "method": "full", "kept": 1.0, "test_accuracy": got[0],
                         "stderr": 0.0, "noisy_kept": int(task.noisy.sum())})
            continue
        per = got.reshape(-1, len(KEPT))  # (draws, fractions)
        noisy = (masks.reshape(per.shape[0], len(KEPT), -1) @ task.noisy.astype(np.float32)
                 ).mean(axis=0)
        for j, f in enumerate(KEPT):
            rows.append({"task": name, "method": method, "kept": f,
                         "test_accuracy": per[:, j].mean(),
                         "stderr": (per[:, j].std(ddof=1) / np.sqrt(per.shape[0])
                                    if per.shape[0] > 1 else 0.0),
                         "noisy_kept": float(noisy[j])})
    chosen = []
    for m in VALUED:
        pick = select(train, task.valid, results[m], model=model, keep=TOL, confirm=task.test,
                      seed=seed)
        kept = np.isin(train.ids, pick.kept)
        chosen.append({"task": name, "values": m, **pick.summary(),
                       "noisy_kept": int(task.noisy[kept].sum()),
                       "noisy_total": int(task.noisy.sum())})
    return pd.DataFrame(rows), chosen


def _targets(curves: pd.DataFrame, chosen: pd.DataFrame) -> dict:
    """Issue 15's selection targets, each met or missed with the numbers behind it."""
    out: dict = {"subset_le_60pct_within_0.5pt": {}, "beats_random_and_el2n": {},
                 "no_collapse_at_90pct": {}}
    for _, r in chosen.iterrows():
        gap = r["confirmation"] - r["full_confirmation"]
        met = bool(r["fraction"] <= 0.6 + 1e-9 and gap >= -TOL - 1e-9)
        out["subset_le_60pct_within_0.5pt"][f"{r['task']}/{r['values']}"] = {
            "met": met, "fraction": r["fraction"], "strategy": r["strategy"],
            "test_accuracy": r["confirmation"], "stderr": r["confirmation_stderr"],
            "full_test_accuracy": r["full_confirmation"], "gap": gap,
            "gap_stderr": r["gap_stderr"]}
    acc = curves.set_index(["task", "method", "kept"])["test_accuracy"]
    for task in curves["task"].unique():
        for method in (f"{m}_{s}" for m in VALUED for s in ("top", "coverage")):
            fails = []
            for rate in PRUNE_RATES:
                kept = round(1 - rate, 1)
                mine = acc[(task, method, kept)]
                rand, el2n = acc[(task, "random", kept)], acc[(task, "el2n", kept)]
                if mine < rand or mine < el2n:
                    fails.append({"prune": rate, "accuracy": mine, "random": rand,
                                  "el2n": el2n})
            out["beats_random_and_el2n"][f"{task}/{method}"] = {"met": not fails,
                                                                "misses": fails}
            at90 = (acc[(task, method, 0.1)], acc[(task, "random", 0.1)])
            out["no_collapse_at_90pct"][f"{task}/{method}"] = {
                "met": bool(at90[0] >= at90[1]), "accuracy": at90[0], "random": at90[1]}
    return out


def _plot(curves: pd.DataFrame, chosen: pd.DataFrame, task: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = curves[curves["task"] == task]
    full = float(part.loc[part["method"] == "full", "test_accuracy"].iloc[0])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"oob_top": "C0-", "oob_coverage": "C0--", "knn_top": "C1-",
              "knn_coverage": "C1--", "el2n": "C3-", "forgetting": "C4-",
              "el2n_easy": "C3:", "random": "k-"}
    for method, style in styles.items():
        line = part[part["method"] == method]
        ax.plot(line["kept"], line["test_accuracy"], style, marker=".", label=method)
        if method == "random":
            ax.fill_between(line["kept"], line["test_accuracy"] - 2 * line["stderr"],
                            line["test_accuracy"] + 2 * line["stderr"], color="k",
                            alpha=0.15)
    ax.axhspan(full - TOL, full + TOL, color="g", alpha=0.2, label="full set ± 0.5 pt")
    for _, r in chosen[chosen["task"] == task].iterrows():
        ax.plot(r["fraction"], r["confirmation"], "g*", ms=12)
        ax.annotate(f"select ({r['values']})", (r["fraction"], r["confirmation"]),
                    fontsize=7)
    ax.set(xlabel="kept fraction of the training rows", ylabel="test accuracy",
           title=f"{task}: 10 % flipped labels, logistic regression")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="breast_cancer and wine only")
    parser.add_argument("--out", default="results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tasks = TASKS[:2] if args.quick else TASKS
    start, load = time.perf_counter(), os.getloadavg()
    frames, chosen = [], []
    for name in tasks:
        curve, picks = _task_curves(name, seed=args.seed)
        frames.append(curve)
        chosen += picks
        print(f"{name}: done at {time.perf_counter() - start:.0f} s", flush=True)
    curves, chosen = pd.concat(frames, ignore_index=True), pd.DataFrame(chosen)
    targets = _targets(curves, chosen)
    for name, frame in (("curves", curves), ("chosen", chosen)):
        path = os.path.join(args.out, f"bench_select_{name}.csv")
        atomic_write(path, lambda tmp, f=frame: f.to_csv(tmp, index=False))
    for task in tasks:
        _plot(curves, chosen, task, os.path.join(args.out, f"bench_select_{task}.png"))
    write_json(os.path.join(args.out, "bench_select.json"),
               {"targets": targets, "curves": curves.to_dict("records"),
                "chosen": chosen.to_dict("records"),
                "settings": {"tasks": list(tasks), "noise": 0.1, "seed": args.seed,
                             "kept": KEPT, "n_random": N_RANDOM, "keep": TOL},
                "seconds": time.perf_counter() - start, "load_at_start": load,
                "load_at_end": os.getloadavg()})
    table = curves.pivot_table(index=["task", "kept"], columns="method",
                               values="test_accuracy")
    print(table.round(4).to_string())
    print(chosen[["task", "values", "fraction", "strategy", "confirmation",
                  "confirmation_stderr", "full_confirmation", "noisy_kept"]].to_string())
    for target, entries in targets.items():
        met = sum(e["met"] for e in entries.values())
        print(f"{target}: met {met} of {len(entries)}")
        for key, e in entries.items():
            if not e["met"]:
                print(f"  missed {key}: {e}")


if __name__ == "__main__":
    main()
