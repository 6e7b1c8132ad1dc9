"""Data-rater benchmark (issue 16): noisy labels on training and new rows, top rows, transfer, cost.

Run `python -m experiments.bench_rater [--tasks ...] [--seeds ...] [--tmc-max-rows N]
[--out results]`. The tasks, seeds and splits of `bench_metalearner` (its `TASKS`, label
noise `NOISE`, new rows = the test split with the task's noise under the seed stream 1 of
`_seed`). For each task and seed:

* a `DataRater` (defaults, seeded) fitted with a logistic-regression target and with an
  MLP target (hidden 64, the utility's solver), timed with JAX's caches cleared;
* noisy-label F1 (flag the k lowest, k = flipped rows) and AUROC on the training rows and on
  the new rows (neither the targets nor the raters saw them), beside: KNN-Shapley and Data-OOB
  (256 bootstrap models) run on training + new rows (what valuing a new row costs them),
  10-NN label agreement, the imitation meta-model (`MetaValuator(members=4, steps=1000)`
  fitted to the training rows' values of that Data-OOB run; its training-row scores are
  in-sample) and
  DVRL where its environment exists (`dvrl.py`, else the reason is recorded);
* top rows: test accuracy (the clean test split) of the logistic target trained on the
  50 / 70 / 90 % highest-valued training rows, by the rater (each target), Data-OOB and
  10-NN agreement, and on every row;
* transfer: each target's rater applied to the other (`DataRater.for_target`) and the share
  of the native rater's AUROC above chance it keeps, `(auc_moved - 0.5) / (auc_native -
  0.5)`, on training and on new rows;
* cost (first seed only): against a 200-permutation TMC-Shapley run on the same logistic
  task (a fresh utility, so it pays its own set-up as the rater does), measured when the
  task has at most `--tmc-max-rows` training rows; above, a `--tmc-short`-permutation run
  is timed cold (compilation included once) and the remaining permutations are charged at
  the rate of a second, warm run of the same length (labelled an estimate; `tmc200_cost`).
  JAX's persistent compilation cache is off for the whole run (`VALUATE_COMPILE_CACHE=off`):
  both pay their compilation, as a first-time user does. `--cost-only N` runs only this
  comparison (the same TMC rule), N alternations per task, and writes
  `bench_rater_cost.csv`.

`--stability` runs only the stability check instead: for each task and split seed
(`--seeds`), `DataRater` fits with each of `--rater-seeds` on the SAME split (the rater's seed
drives its features' folds and bootstraps, initialisations and masks), so the AUROC's sd over
rater seeds is the method's own instability; beside it, the sd over split seeds of the rater
(rater seed = split seed, the normal mode's protocol), of 10-NN label agreement and of
KNN-Shapley (on training + new rows, as above), and the Hanley & McNeil (1982) standard error
of one AUROC on each row set (its sampling noise). Writes `bench_rater_stability.csv` (one
row per task, split seed, rater seed, target, rows and method) and
`bench_rater_stability.md`.

Writes `bench_rater_scores.csv` (task, seed, rows, method, f1, auroc),
`bench_rater_top_rows.csv`, `bench_rater_runs.csv` (per task and seed: seconds, transfer),
`bench_rater_summary.md` (the tables and each target met / missed) and `bench_rater.json` to
`--out`.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import jax
import numpy as np
import pandas as pd

from metalearner import DataRater, MetaValuator
from valuation import (
    ValuationResult,
    logistic_regression,
    make_classification,
    make_utility,
    mlp,
)
from valuation.api import value
from valuation.compile_cache import ENV as COMPILE_CACHE_ENV
from valuation.evaluate.measure import measure
from valuation.evaluate.noisy_labels import (
    detection_auroc,
    detection_f1,
    knn_label_agreement,
)
from valuation.results import package_versions, write_json, write_text
from valuation.shapley import max_draws
from valuation.tasks import make_task

from .bench_metalearner import NOISE, TASKS, _cold, _concat, _seed
from .dvrl import dvrl_values
from .meta_report import markdown

__all__ = ["KEPT", "bench_task", "hanley_mcneil_se", "main", "stability_task", "summarize",
           "summarize_stability"]

KEPT = (0.5, 0.7, 0.9)  # shares of training rows kept, highest values first
OOB_BAGS = 256
IMITATION = MetaValuator(members=4, steps=1000)
TARGETS = ("logreg", "mlp")


def _target(name: str, n_classes: int):
    return logistic_regression(n_classes) if name == "logreg" else mlp(n_classes, (64,))


def _top_rows_accuracy(utility, test, ranked: dict[str, np.ndarray], *, key) -> list[dict]:
    """Test accuracy of `utility`'s target trained on each method's top `KEPT` rows, plus on
    every row (one batched fit)."""
    n = utility.n
    rows, masks = [{"method": "all_rows", "kept": 1.0}], [np.ones(n, np.float32)]
    for method, values in ranked.items():
        order = np.argsort(-np.asarray(values, float), kind="stable")
        for share in KEPT:
            mask = np.zeros(n, np.float32)
            mask[order[: round(share * n)]] = 1.0
            rows.append({"method": method, "kept": share})
            masks.append(mask)
    probs = np.asarray(utility.predict_proba(utility.fit(np.stack(masks), key=key), test.x))
    hits = probs.argmax(-1) == np.asarray(test.y)[None, :]
    return [{**row, "test_accuracy": float(acc)} for row, acc in zip(rows, hits.mean(1))]


def bench_task(name: str, seed: int, *, targets: tuple[str, ...] = TARGETS,
               tmc_max_rows: int, tmc_short: int, timed: bool,
               echo=print) -> tuple[list[dict], list[dict], dict]:
    """Scores, top-rows accuracies and one run record for a task and split seed; raters
    for `targets` only (transfer needs both)."""
    task = make_task(name, noise=NOISE.get(name, 0.1), seed=seed)
    train, valid = task.train, task.valid
    new, new_noisy = task.flip(task.test, seed=_seed(seed, 1))
    full = _concat(train, new)
    noisy = {"train": task.noisy, "new": new_noisy}
    k = train.n_classes
    utilities = {t: make_utility(_target(t, k), train, valid) for t in TARGETS}
    rated = [t for t in TARGETS if t in targets]
    u = utilities["logreg"]
    run = {"task": name, "seed": seed, "n_train": train.n, "n_new": new.n}
    values: dict[str, dict[str, np.ndarray]] = {}  # method -> rows -> values

    raters = {}
    for t in rated:
        raters[t], cost = _cold(DataRater(seed=seed).fit, utilities[t])
        run[f"rater_{t}_s"] = cost.seconds
        values[f"rater_{t}"] = {"train": raters[t].value().values,
                                "new": raters[t].predict(new).values}
    for source, dest in _pairs(rated):
        moved = raters[source].for_target(utilities[dest])
        values[f"rater_{source}_on_{dest}"] = {"train": moved.value().values,
                                               "new": moved.predict(new).values}

    full_u = make_utility(_target("logreg", k), full, valid)
    n = train.n
    knn = value(full_u, method="knn", progress=False).values
    values["knn_shapley"] = {"train": knn[:n], "new": knn[n:]}
    oob = value(full_u, method="oob", seed=seed, stop=max_draws(OOB_BAGS), progress=False)
    values["data_oob"] = {"train": oob.values[:n], "new": oob.values[n:]}
    values["knn10_agreement"] = {
        "train": knn_label_agreement(train.x, train.y),
        "new": knn_label_agreement(new.x, new.y, reference=(train.x, train.y))}
    imitation = IMITATION.fit(u, ValuationResult(
        values=oob.values[:n], stderr=oob.stderr[:n], counts=oob.counts[:n], ids=train.ids,
        method=oob.method))
    values["imitation_meta"] = {"train": imitation.predict(train).values,
                                "new": imitation.predict(new).values}
    dvrl = dvrl_values(full, valid, seed=seed)
    if isinstance(dvrl, str):
        run["dvrl"] = dvrl
    else:
        values["dvrl"] = {"train": dvrl[0][:n], "new": dvrl[0][n:]}
        run["dvrl"], run["dvrl_s"] = "ran", dvrl[1]  # OpenDataVal's own training time

    scores = [{"task": name, "seed": seed, "rows": rows, "method": method,
               "f1": detection_f1(v, noisy[rows]), "auroc": detection_auroc(v, noisy[rows])}
              for method, by_rows in values.items() for rows, v in by_rows.items()]
    got = {(s["method"], s["rows"]): s["auroc"] for s in scores}
    for source, dest in _pairs(rated):
        for rows in ("train", "new"):
            native = got[f"rater_{dest}", rows]
            run[f"kept_{source}_to_{dest}_{rows}"] = (
                (got[f"rater_{source}_on_{dest}", rows] - 0.5) / (native - 0.5))

    ranked = {m: values[m]["train"] for m in
              (*(f"rater_{t}" for t in rated), "data_oob", "knn10_agreement")}
    top = [{"task": name, "seed": seed, **row} for row in _top_rows_accuracy(
        u, task.test, ranked, key=jax.random.PRNGKey(_seed(seed, 6)))]

    if timed:
        # a fresh utility: its one-time set-up (the full-data fit) is not inherited from
        # the raters' fits, as the rater pays its own
        run.update(tmc200_cost(make_utility(_target("logreg", k), train, valid), seed,
                               max_rows=tmc_max_rows, short=tmc_short))
    echo(f"{name} seed {seed}: AUROC train/new " + "; ".join(
        f"{m} {got[m, 'train']:.3f}/{got[m, 'new']:.3f}"
        for m in (*(f"rater_{t}" for t in rated), "knn10_agreement")), flush=True)
    return scores, top, run


def tmc200_cost(utility, seed: int, *, max_rows: int, short: int) -> dict:
    """Wall seconds of a 200-permutation TMC-Shapley run on `utility`, JAX's caches cleared:
    measured when it has at most `max_rows` training rows; above, a `short`-permutation run
    timed cold (compilation included once) plus the other `200 - short` permutations at the
    rate of a second, warm run of the same length (an estimate).

    Returns:
      `{"tmc200_s", "tmc200_measured", "tmc_permutations_run"}`.
    """
    measured = utility.n <= max_rows
    draws = 200 if measured else short
    _, cold = _cold(value, utility, method="tmc", seed=seed, stop=max_draws(draws),
                    progress=False)
    seconds = cold.seconds
    if not measured:
        _, warm = measure(value, utility, method="tmc", seed=seed + 1,
                          stop=max_draws(draws), progress=False)
        seconds += warm.seconds * (200 - draws) / draws
    return {"tmc200_s": seconds, "tmc200_measured": measured, "tmc_permutations_run": draws}


def warm_up() -> None:
    """Pay the process's one-time costs (backend start, lazy imports, first dispatches) on
    a tiny task before anything is timed: otherwise the first timed fit carries them alone."""
    train, valid = make_classification(80, 3, seed=0).split(0.6, 0.4, seed=0)
    u = make_utility(_target("logreg", train.n_classes), train, valid)
    DataRater(members=2, outer_steps=2, inner_steps=1, inner_models=2, k=5, bags=4).fit(u)
    value(u, method="tmc", seed=0, stop=max_draws(2), progress=False)


def cost_task(name: str, seed: int, *, repeats: int, tmc_max_rows: int, tmc_short: int,
              echo=print) -> list[dict]:
    """The cost target alone: `repeats` alternations of a logistic-target rater fit and a
    200-permutation TMC-Shapley run (`tmc200_cost`: estimated above `tmc_max_rows` rows),
    each on a fresh utility with JAX's caches cleared."""
    task = make_task(name, noise=NOISE.get(name, 0.1), seed=seed)
    rows = []
    for repeat in range(repeats):
        def fresh():
            return make_utility(_target("logreg", task.train.n_classes), task.train,
                                task.valid)

        row = {"task": name, "seed": seed, "n_train": task.train.n, "repeat": repeat,
               "rater_logreg_s": _cold(DataRater(seed=seed).fit, fresh())[1].seconds,
               **tmc200_cost(fresh(), seed, max_rows=tmc_max_rows, short=tmc_short),
               "load_1min": os.getloadavg()[0]}
        estimated = "" if row["tmc200_measured"] else " (estimated)"
        echo(f"{name} seed {seed} repeat {repeat}: rater {row['rater_logreg_s']:.1f} s, "
             f"TMC-200 {row['tmc200_s']:.1f} s{estimated} (load {row['load_1min']:.1f})",
             flush=True)
        rows.append(row)
    return rows


def hanley_mcneil_se(auroc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of one AUROC `auroc` with `n_pos` positive and `n_neg` negative rows
    (Hanley & McNeil 1982, eq. 2, with Q1 = A / (2 - A), Q2 = 2A^2 / (1 + A))."""
    a = float(auroc)
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    var = (a * (1.0 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (
        n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def stability_task(name: str, seed: int, *, rater_seeds: tuple[int, ...],
                   targets: tuple[str, ...], echo=print) -> list[dict]:
    """One split (`seed`) of task `name`: a `DataRater` (defaults) per rater seed and
    target, plus 10-NN agreement and KNN-Shapley; AUROC and F1 on training and new rows."""
    task = make_task(name, noise=NOISE.get(name, 0.1), seed=seed)
    train, valid = task.train, task.valid
    new, new_noisy = task.flip(task.test, seed=_seed(seed, 1))
    noisy = {"train": task.noisy, "new": new_noisy}
    k = train.n_classes
    values: list[tuple[str, str, int, dict]] = []  # (method, target, rater seed, by rows)
    for t in targets:
        utility = make_utility(_target(t, k), train, valid)
        for r in rater_seeds:
            start = time.perf_counter()
            rater = DataRater(seed=r).fit(utility)
            values.append((f"rater_{t}", t, r, {"train": rater.value().values,
                                                 "new": rater.predict(new).values,
                                                 "seconds": time.perf_counter() - start}))
    full = _concat(train, new)
    knn = value(make_utility(_target("logreg", k), full, valid), method="knn",
                progress=False).values
    n = train.n
    values.append(("knn_shapley", "-", -1, {"train": knn[:n], "new": knn[n:]}))
    values.append(("knn10_agreement", "-", -1, {
        "train": knn_label_agreement(train.x, train.y),
        "new": knn_label_agreement(new.x, new.y, reference=(train.x, train.y))}))
    out = []
    for method, target, r, by_rows in values:
        for rows in ("train", "new"):
            out.append({"task": name, "split_seed": seed, "rater_seed": r, "target": target,
                        "rows": rows, "method": method,
                        "auroc": detection_auroc(by_rows[rows], noisy[rows]),
                        "f1": detection_f1(by_rows[rows], noisy[rows]),
                        "n_pos": int(noisy[rows].sum()),
                        "n_neg": int((~noisy[rows]).sum()),
                        "seconds": by_rows.get("seconds", float("nan"))})
    got = pd.DataFrame(out)
    for t in targets:
        part = got[got["method"] == f"rater_{t}"]
        echo(f"{name} split {seed} rater_{t}: AUROC train " + " / ".join(
            f"{a:.3f}" for a in part[part["rows"] == "train"]["auroc"]) + ", new " + " / ".join(
            f"{a:.3f}" for a in part[part["rows"] == "new"]["auroc"]), flush=True)
    return out


def summarize_stability(rows: pd.DataFrame) -> str:
    """Per task, target and row set: the rater's AUROC sd over rater seeds on one split
    (mean and max over splits), its sd over split seeds (rater seed = split seed), the
    baselines' sd over split seeds and the Hanley-McNeil SE of one AUROC (mean over splits,
    at the rater's AUROC); markdown, with the own-seed target (<= 0.02) met / missed."""
    out = []
    # a split's baselines do not depend on the target: one copy per split (combined runs)
    baselines = rows[rows["rater_seed"] < 0].drop_duplicates(
        ["task", "split_seed", "rows", "method"])
    raters = rows[rows["rater_seed"] >= 0]
    for (task, target, rows_name), part in raters.groupby(["task", "target", "rows"]):
        own = part.groupby("split_seed")["auroc"].std()
        diagonal = part[part["rater_seed"] == part["split_seed"]].groupby("split_seed")["auroc"]
        by_split = part.groupby("split_seed").agg(auroc=("auroc", "mean"), n_pos=("n_pos", "first"),
                                                  n_neg=("n_neg", "first"))
        se = [hanley_mcneil_se(r.auroc, r.n_pos, r.n_neg) for r in by_split.itertuples()]
        base = baselines[(baselines["task"] == task) & (baselines["rows"] == rows_name)]
        base_sd = base.groupby("method")["auroc"].std()
        out.append({"task": task, "target": target, "rows": rows_name,
                    "splits": len(own), "rater_seeds": int(part.groupby("split_seed").size().min()),
                    "auroc_mean": part["auroc"].mean(),
                    "sd_rater_seeds_mean": own.mean(), "sd_rater_seeds_max": own.max(),
                    "sd_split_seeds_rater": diagonal.first().std(),
                    "sd_split_seeds_rater_avg": by_split["auroc"].std(),
                    "sd_split_seeds_knn10": base_sd.get("knn10_agreement", float("nan")),
                    "sd_split_seeds_knn_shapley": base_sd.get("knn_shapley", float("nan")),
                    "hanley_mcneil_se": float(np.mean(se)),
                    "own_seed_target_met": bool(own.max() <= 0.02)})
    table = pd.DataFrame(out).set_index(["task", "target", "rows"])
    return ("### Stability: AUROC sd over rater seeds on one split against sd over split "
            "seeds\n\n" + markdown(table, 4) + "\n")


def _pairs(rated: list[str]) -> list[tuple[str, str]]:
    """(source, destination) target pairs of the transfer, when both raters exist."""
    return [("logreg", "mlp"), ("mlp", "logreg")] if len(rated) == 2 else []


def summarize(scores: pd.DataFrame, top: pd.DataFrame, runs: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Markdown tables and the issue's targets (met / missed, with the numbers)."""
    keys = ["task", "rows", "method"]
    table = scores.groupby(keys)[["f1", "auroc"]].mean().assign(
        auroc_sd=scores.groupby(keys)["auroc"].std(),
        seeds=scores.groupby(keys)["auroc"].size()).reset_index()
    parts = []
    for rows in ("train", "new"):
        part = table[table["rows"] == rows].set_index(["task", "method"])
        parts.append(f"### {rows} rows: noisy-label AUROC, its sd over seeds, F1 (means)\n\n"
                     f"{markdown(part[['auroc', 'auroc_sd', 'f1', 'seeds']])}")
    acc = top.groupby(["task", "method", "kept"])["test_accuracy"].mean().unstack("kept")
    parts.append(f"### Test accuracy of the logistic target on the top rows (mean over "
                 f"seeds; columns: share kept)\n\n{markdown(acc)}")
    kept = [c for c in runs.columns if c.startswith("kept_")]
    if kept:
        transfer = runs.groupby("task")[kept].agg(["mean", "min"])
        transfer.columns = [f"{c} ({s})" for c, s in transfer.columns]
        parts.append(f"### Transfer: share of the native AUROC above chance kept\n\n"
                     f"{markdown(transfer.T, 2)}")
    cost_cols = [c for c in ("rater_logreg_s", "rater_mlp_s", "dvrl_s", "tmc200_s",
                             "tmc200_measured", "tmc_permutations_run") if c in runs.columns]
    parts.append(f"### Cost, wall seconds, JAX caches cleared\n\n"
                 f"{markdown(runs.set_index(['task', 'seed'])[cost_cols], 1)}")
    targets = _targets(table, runs)
    parts.append(f"### Targets\n\n{markdown(targets.set_index('target'))}")
    return "\n\n".join(parts) + "\n", targets


def _targets(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    new = table[table["rows"] == "new"].set_index(["task", "method"])
    methods = set(new.index.get_level_values("method"))
    rivals = [m for m in ("dvrl", "knn_shapley", "knn10_agreement") if m in methods]
    out = []
    for t in TARGETS:
        rater = f"rater_{t}"
        if rater not in methods:
            continue
        tasks = sorted({task for task, m in new.index if m == rater})
        wins = [task for task in tasks
                if new.loc[(task, rater), "f1"] >= max(new.loc[(task, m), "f1"] for m in rivals)]
        out.append({"target": f"new-row F1 >= best of {'/'.join(rivals)} on >= 4 of 5 tasks "
                              f"({t} rater)",
                    "met": len(wins) >= 4,
                    "numbers": f"{len(wins)} of {len(tasks)} tasks run: {wins}"})
        sds = table[table["method"] == rater].set_index(["rows", "task"])["auroc_sd"]
        out.append({"target": f"AUROC sd over seeds <= 0.02 on every task ({t} rater)",
                    "met": bool((sds <= 0.02).all()),
                    "numbers": "; ".join(f"{r} {task}: {v:.3f}" for (r, task), v in sds.items())})
    if "tmc200_s" in runs.columns:
        timed = runs.dropna(subset=["tmc200_s"])
        out.append({"target": "rater fit (logistic target) <= TMC-200 (same utility)",
                    "met": bool((timed["rater_logreg_s"] <= timed["tmc200_s"]).all()),
                    "numbers": "; ".join(
                        f"{r.task}: {r.rater_logreg_s:.1f} s vs {r.tmc200_s:.1f} s"
                        f"{'' if r.tmc200_measured else ' (estimated)'}"
                        for r in timed.itertuples())})
    for source, dest in _pairs(list(TARGETS)):
        cols = [f"kept_{source}_to_{dest}_{rows}" for rows in ("train", "new")]
        if not set(cols) <= set(runs.columns):
            continue
        by_task = runs.dropna(subset=cols).groupby("task")[cols].mean()
        out.append({"target": f"transfer {source} -> {dest} keeps >= 90 % (mean per task)",
                    "met": bool((by_task >= 0.9).all().all()),
                    "numbers": "; ".join(f"{task}: {a:.2f} train / {b:.2f} new"
                                         for task, (a, b) in by_task.iterrows())})
    return pd.DataFrame(out)


def _write(out: str, tables: dict[str, pd.DataFrame], config: dict) -> None:
    """The tables, the summary and the JSON under `out`; prints the summary."""
    summary, targets = summarize(tables["scores"], tables["top_rows"], tables["runs"])
    print(summary)
    os.makedirs(out, exist_ok=True)
    for stem, table in tables.items():
        write_text(os.path.join(out, f"bench_rater_{stem}.csv"), table.to_csv(index=False))
    write_text(os.path.join(out, "bench_rater_summary.md"), summary)
    write_json(os.path.join(out, "bench_rater.json"),
               {**config, "targets": targets.to_dict("records")})


STEMS = ("scores", "top_rows", "runs")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS,
                        help="fit raters for these target models (transfer needs both)")
    parser.add_argument("--tmc-max-rows", type=int, default=400,
                        help="measure a full 200-permutation TMC run up to this many rows")
    parser.add_argument("--tmc-short", type=int, default=16,
                        help="permutations timed (and scaled) on larger tasks")
    parser.add_argument("--cost-only", type=int, metavar="REPEATS", default=0,
                        help="run only the cost comparison, REPEATS alternations per task "
                             "(first seed), and write bench_rater_cost.csv")
    parser.add_argument("--stability", action="store_true",
                        help="run only the stability check: each of --rater-seeds on every "
                             "split seed; writes bench_rater_stability.csv / .md")
    parser.add_argument("--rater-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--combine", nargs="+", metavar="DIR",
                        help="run nothing: report the tables of earlier runs in these folders")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.stability:
        _stability(args)
        return
    if args.combine:
        tables = {stem: pd.concat([pd.read_csv(os.path.join(d, f"bench_rater_{stem}.csv"))
                                   for d in args.combine], ignore_index=True)
                  for stem in STEMS}
        _write(args.out, tables, {"combined": [os.path.abspath(d) for d in args.combine]})
        return
    # Seconds are a first-time user's: no compiled program read back from disk (api.value
    # would otherwise switch JAX's persistent cache on, and TMC would reuse earlier runs').
    os.environ[COMPILE_CACHE_ENV] = "off"
    warm_up()
    if args.cost_only:
        cost = pd.DataFrame([row for name in args.tasks for row in cost_task(
            name, args.seeds[0], repeats=args.cost_only, tmc_max_rows=args.tmc_max_rows,
            tmc_short=args.tmc_short)])
        print(markdown(cost.set_index(["task", "repeat"]), 1))
        os.makedirs(args.out, exist_ok=True)
        write_text(os.path.join(args.out, "bench_rater_cost.csv"), cost.to_csv(index=False))
        return
    start = time.perf_counter()
    rows: dict[str, list] = {stem: [] for stem in STEMS}
    config = {"tasks": args.tasks, "seeds": args.seeds, "targets": args.targets,
              "noise": NOISE, "oob_bags": OOB_BAGS, "rater": DataRater().config(),
              "imitation": IMITATION.config(), "tmc_max_rows": args.tmc_max_rows,
              "tmc_short": args.tmc_short, "versions": package_versions()}
    for name in args.tasks:
        for seed in args.seeds:
            s, t, r = bench_task(name, seed, targets=tuple(args.targets),
                                 tmc_max_rows=args.tmc_max_rows, tmc_short=args.tmc_short,
                                 timed=seed == args.seeds[0])
            rows["scores"] += s
            rows["top_rows"] += t
            rows["runs"].append(r)
            # after every task and seed: a cut run keeps what it measured
            _write(args.out, {stem: pd.DataFrame(v) for stem, v in rows.items()},
                   {**config, "seconds": time.perf_counter() - start})


def _stability(args) -> None:
    """`--stability`: run (or, with `--combine`, read back) and write the stability table."""
    if args.combine:
        rows = pd.concat([pd.read_csv(os.path.join(d, "bench_rater_stability.csv"))
                          for d in args.combine], ignore_index=True)
    else:
        rows = []
        for name in args.tasks:
            for seed in args.seeds:
                rows += stability_task(name, seed, rater_seeds=tuple(args.rater_seeds),
                                       targets=tuple(args.targets))
                _write_stability(args.out, pd.DataFrame(rows))  # a cut run keeps its rows
        rows = pd.DataFrame(rows)
    print(_write_stability(args.out, rows))


def _write_stability(out: str, rows: pd.DataFrame) -> str:
    summary = summarize_stability(rows)
    os.makedirs(out, exist_ok=True)
    write_text(os.path.join(out, "bench_rater_stability.csv"), rows.to_csv(index=False))
    write_text(os.path.join(out, "bench_rater_stability.md"), summary)
    return summary


if __name__ == "__main__":
    main()
