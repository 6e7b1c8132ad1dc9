"""Meta-learner benchmark, end to end: what a user gets for rows the teacher never valued.

Run `python -m experiments.bench_metalearner [--tiny] [--tasks ...] [--seeds ...]
[--teachers ...] [--out results]`. For each task (`experiments.tasks`: breast_cancer, wine,
digits, synthetic_3k with 2,004 training rows, synthetic_1k_cyclic with 20 % c -> c + 1
label noise; the others 10 % uniform flips), split seed and teacher, with a
logistic-regression target scored on accuracy:

* new rows: the task's test split with the task's label noise (own seed), never trained on
  and never valued; the full set = training rows + new rows, what the teacher would have to
  value to value the new rows.
* reference: the teacher on the full set, twice (seeds `t0`, `t1`); quality is Spearman to
  `t0`, and the ceiling is `sqrt(rho(t0, t1))` (with independent noise in both runs the best
  reachable correlation with `t0`), both on the same rows.
* the pipeline, as a user runs it: `learn_values(train, valid, teacher=..., fraction=...)`
  (teacher on a stratified pool, meta-model, predictions for the rest) then
  `meta.predict(new rows)`; and the command line (`cli_chain.py`: `valuate value pool.csv` ->
  `fit-meta` -> `predict`, subprocesses; its target trains on the pool alone).
* scored on (i) training rows outside the pool ("outside") and (ii) the new rows ("new"):
  Spearman to `t0`, noisy-label F1 (flag the k lowest, k = flipped rows) and AUROC, for the
  meta-model (API and CLI), the teacher itself (`t0`: its F1 and AUROC), the teacher on the
  full set at the compute of the whole API pipeline (when the pipeline costs as much as the
  full teacher or more, the full-budget run `t1` stands in: it costs less than the
  pipeline), the raw single features (`raw_scores.py`), KNN-Shapley on the full set, DVRL
  (`dvrl.py`, skipped with its reason when its environment is absent), random, and the
  meta-model without the "bagging" and without the "neighbours" feature groups. The CLI
  chain and the two ablations run on the `--detail-seeds` only (default: the first seed;
  they triple the run time), so their columns average fewer seeds.
* cost, compilation included (JAX's caches cleared before each timed stage): the API
  pipeline (teacher on the pool + meta fit + predictions, one `learn_values` call, plus
  predicting the new rows) and the CLI chain (three processes), each against the teacher on
  the full set; predicting the new rows against valuing them with the teacher (the full-set
  run).

Budgets (utility evaluations = target models trained): Data-OOB 256 bootstrap models,
TMC-Shapley 8 permutations' worth (`8 * rows` evaluations, truncation stretches them over
more permutations), MSR-Banzhaf 1,024 coalitions, the same on the pool as on the full set;
`--tiny` divides them (the slow test). TMC is not run on digits (10 classes trained by
gradient descent: beyond a 2-core CPU budget) and Banzhaf only on tasks of 2,000 training rows or
more (it is there for the cost target). The pool is half the training set below 1,000
training rows and a quarter above. The meta-model: `MetaValuator(members=4, steps=1000)`
(the CLI: `--members 4 --steps 1000`), its other settings the defaults.

Prints per-row-set tables and whether each target of issue 11 is met, and writes
`bench_metalearner_scores.csv` (task, seed, teacher, rows, method, spearman, f1, auroc),
`bench_metalearner_costs.csv`, `bench_metalearner_summary.md` and
`bench_metalearner.json` to `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable

import jax
import numpy as np
import pandas as pd

from metalearner import MetaValuator, learn_values
from valuation import Dataset, logistic_regression, make_utility
from valuation.api import value
from valuation.evaluate.measure import measure
from valuation.evaluate.noisy_labels import detection_auroc, detection_f1
from valuation.evaluate.rank_correlation import spearman
from valuation.results import package_versions, write_json, write_text
from valuation.shapley import max_evaluations
from valuation.tasks import make_task

from .cli_chain import run_chain
from .dvrl import dvrl_values
from .meta_report import check_targets, markdown_tables
from .raw_scores import RAW_SCORES, raw_scores

__all__ = ["BUDGETS", "TASKS", "bench_task", "main"]

TASKS = ("breast_cancer", "wine", "digits", "synthetic_3k", "synthetic_1k_cyclic")
NOISE = {"synthetic_1k_cyclic": 0.2}  # every other task: 10 % uniform flips
TEACHERS = ("oob", "tmc", "banzhaf")
# Draws per teacher run (bootstrap models, permutations, coalitions) and per update.
BUDGETS = {"oob": 256, "tmc": 8, "banzhaf": 1024}
TINY = {"oob": 64, "tmc": 1, "banzhaf": 256}
BATCH = {"oob": 64, "tmc": 4, "banzhaf": 256}
META = MetaValuator(members=4, steps=1000)
ABLATED = ("bagging", "neighbours")  # feature groups left out, one at a time


def _seed(seed: int, stream: int) -> int:
    """An independent int seed for `stream` of split seed `seed` (no arithmetic on seeds)."""
    return int(np.random.SeedSequence((seed, stream)).generate_state(1)[0] >> 1)


def _evaluations(teacher: str, draws: int, rows: int) -> int:
    """Utility evaluations for `draws` of `teacher` on a game of `rows` rows."""
    return draws * rows if teacher == "tmc" else draws


def _skip(name: str, teacher: str, n_train: int) -> str | None:
    if teacher == "tmc" and name == "digits":
        return "TMC on digits: 10 classes by gradient descent, beyond a 2-core CPU budget"
    if teacher == "banzhaf" and n_train < 2000:
        return "Banzhaf only where the cost target applies (n >= 2,000)"
    return None


def _concat(a: Dataset, b: Dataset) -> Dataset:
    return a.replace(x=np.concatenate([a.x, b.x]), y=np.concatenate([a.y, b.y]),
                     ids=np.concatenate([a.ids, b.ids]))


def _cold(fn: Callable, *args, **kwargs):
    """`measure(fn, ...)` with JAX's compilation caches cleared first: compiling counts."""
    jax.clear_caches()
    return measure(fn, *args, **kwargs)


def _scores(methods: dict[str, dict[str, np.ndarray]], rows: dict[str, dict],
            reference: dict[str, np.ndarray]) -> list[dict]:
    """Long rows (rows, method, spearman to the reference, F1, AUROC) for every method."""
    out = []
    for method, by_rows in methods.items():
        for name, values in by_rows.items():
            noisy = rows[name]["noisy"]
            out.append({"rows": name, "method": method,
                        "spearman": spearman(values, reference[name]),
                        "f1": detection_f1(values, noisy),
                        "auroc": detection_auroc(values, noisy)})
    return out


def bench_task(name: str, seed: int, teachers: tuple[str, ...], *, budgets: dict,
               meta: MetaValuator, folder: str, detail: bool = True,
               echo=print) -> tuple[list[dict], list[dict]]:
    """Scores and costs for one task and split seed, every teacher (module docstring);
    the CLI chain and the ablations only with `detail`."""
    task = make_task(name, noise=NOISE.get(name, 0.1), seed=seed)
    train, valid = task.train, task.valid
    new, new_noisy = task.flip(task.test, seed=_seed(seed, 1))
    full = _concat(train, new)
    model = logistic_regression(train.n_classes)
    utility, full_utility = (make_utility(model, data, valid) for data in (train, full))
    fraction = 0.5 if train.n < 1000 else 0.25
    pool, rest = train.split(fraction, 1.0 - fraction, seed=seed)  # learn_values' split
    at = pd.Index(full.ids)
    rows = {"outside": {"ids": rest.ids, "noisy": task.noisy[at.get_indexer(rest.ids)]},
            "new": {"ids": new.ids, "noisy": new_noisy}}

    def on_rows(values: np.ndarray, ids: np.ndarray = full.ids) -> dict[str, np.ndarray]:
        """Values by id (compared as text: the CLI's tables give ids back as text) on each
        row set."""
        series = pd.Series(np.asarray(values, float), index=np.asarray(ids).astype(str))
        return {r: series.reindex(spec["ids"].astype(str)).to_numpy()
                for r, spec in rows.items()}

    baselines = {}
    raw = raw_scores(utility, new, key=jax.random.PRNGKey(_seed(seed, 2)))
    for score in RAW_SCORES:
        baselines[score] = on_rows(np.concatenate(raw[score]))
    knn = value(full_utility, method="knn", progress=False)
    baselines["knn_shapley"] = on_rows(knn.values)
    dvrl = dvrl_values(full, valid, seed=seed)
    if not isinstance(dvrl, str):
        baselines["dvrl"] = on_rows(dvrl[0])
    baselines["random"] = on_rows(np.asarray(
        jax.random.uniform(jax.random.PRNGKey(_seed(seed, 3)), (full.n,))))
    scores, costs = [], []
    for teacher in teachers:
        reason = _skip(name, teacher, train.n)
        if reason:
            echo(f"{name} seed {seed} {teacher}: skipped ({reason})")
            continue
        draws, batch = budgets[teacher], BATCH[teacher]
        full_budget = _evaluations(teacher, draws, full.n)
        pool_budget = _evaluations(teacher, draws, pool.n)

        def run(seed_, budget, data=full_utility, teacher=teacher, batch=batch):
            return value(data, method=teacher, seed=seed_, stop=max_evaluations(budget),
                         progress=False, batch=batch)

        t0, full_cost = _cold(run, seed, full_budget)
        t1 = run(_seed(seed, 4), full_budget)
        learned, learn_cost = _cold(learn_values, utility, teacher=teacher,
                                    fraction=fraction, seed=seed, meta=meta,
                                    stop=max_evaluations(pool_budget), progress=False,
                                    batch=batch)
        predicted_new, new_cost = measure(learned.meta.predict, new)
        _, warm_cost = measure(learned.meta.predict, new)
        pipeline_s = learn_cost.seconds + new_cost.seconds
        share = pipeline_s / full_cost.seconds
        if share < 1.0:
            equal, equal_cost = _cold(run, _seed(seed, 5),
                                      max(int(full_budget * share), batch))
        else:
            equal, equal_cost = t1, full_cost
        methods = {
            "meta": on_rows(np.concatenate([learned.predicted.values, predicted_new.values]),
                            np.concatenate([learned.predicted.ids, predicted_new.ids])),
            "teacher_t0": on_rows(t0.values),
            "teacher_equal_compute": on_rows(equal.values),
        }
        cli_s = {"value_s": np.nan, "fit_s": np.nan, "predict_s": np.nan}
        if detail:
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                cli, cli_s = run_chain(pool, valid, _concat(rest, new), method=teacher,
                                       budget=pool_budget, batch=batch, seed=seed,
                                       members=meta.members, steps=meta.steps, folder=tmp)
            methods["meta_cli"] = on_rows(cli.to_numpy(), cli.index.to_numpy())
            for group in ABLATED:
                ablated = dataclasses.replace(
                    meta, groups=tuple(g for g in learned.meta.groups if g != group)
                ).fit(utility, learned.teacher)
                methods[f"meta_without_{group}"] = on_rows(
                    np.concatenate([ablated.predict(rest).values, ablated.predict(new).values]),
                    np.concatenate([rest.ids, new.ids]))
        methods.update(baselines)
        reference = on_rows(t0.values)
        second = on_rows(t1.values)
        head = {"task": name, "seed": seed, "teacher": teacher, "n_train": train.n,
                "n_pool": pool.n, "n_new": new.n}
        found = _scores(methods, rows, reference)
        found += [{"rows": r, "method": "ceiling",
                   "spearman": float(np.sqrt(max(spearman(reference[r], second[r]), 0.0)))}
                  for r in rows]
        scores += [{**head, **row} for row in found]
        cost = {**head, "teacher_full_s": full_cost.seconds,
                "teacher_full_evaluations": t0.extra["evaluations"],
                "teacher_pool_evaluations": learned.teacher.extra["evaluations"],
                "teacher_pool_s": learned.teacher.extra["seconds"],
                "learn_values_s": learn_cost.seconds, "predict_new_s": new_cost.seconds,
                "predict_new_warm_s": warm_cost.seconds, "pipeline_s": pipeline_s,
                "equal_compute_evaluations": equal.extra["evaluations"],
                "equal_compute_s": equal_cost.seconds,
                "equal_compute_is_full": share >= 1.0,
                "cli_value_s": cli_s["value_s"], "cli_fit_s": cli_s["fit_s"],
                "cli_predict_s": cli_s["predict_s"], "cli_s": sum(cli_s.values()),
                "dvrl": dvrl if isinstance(dvrl, str) else "ran"}
        cost["cost_ratio"] = pipeline_s / full_cost.seconds
        cost["cli_cost_ratio"] = cost["cli_s"] / full_cost.seconds
        cost["predict_speedup"] = full_cost.seconds / new_cost.seconds
        cost["predict_speedup_warm"] = full_cost.seconds / warm_cost.seconds
        costs.append(cost)
        got = {(s["rows"], s["method"]): s for s in found}
        echo(f"{name} seed {seed} {teacher}: new rows rho meta {got['new', 'meta']['spearman']:.3f}"
             f" (ceiling {got['new', 'ceiling']['spearman']:.3f}), F1 meta "
             f"{got['new', 'meta']['f1']:.3f} teacher {got['new', 'teacher_t0']['f1']:.3f} knn10 "
             f"{got['new', 'knn10_agreement']['f1']:.3f}; cost {cost['cost_ratio']:.2f} of "
             f"the full teacher ({full_cost.seconds:.1f} s), predict "
             f"{cost['predict_speedup']:.0f}x cheaper")
    return scores, costs


def report(scores: pd.DataFrame, costs: pd.DataFrame, out: str, config: dict) -> None:
    """Print the report and write the tables, the markdown and the JSON to `out`."""
    detail = sorted({int(x) for x in costs.loc[costs["cli_s"].notna(), "seed"]})
    skipped = sorted(set(costs["dvrl"]) - {"ran"})
    targets = check_targets(scores, costs)
    note = (f"CLI chain (meta_cli, cli_*) and ablations (meta_without_*): seeds {detail} "
            f"only. DVRL: {'; '.join(skipped) if skipped else 'ran'}.")
    summary = markdown_tables(scores, costs, targets, note=note)
    print(summary)
    os.makedirs(out, exist_ok=True)
    for stem, table in (("scores", scores), ("costs", costs), ("targets", targets)):
        write_text(os.path.join(out, f"bench_metalearner_{stem}.csv"), table.to_csv(index=False))
    write_text(os.path.join(out, "bench_metalearner_summary.md"), summary)
    write_json(os.path.join(out, "bench_metalearner.json"),
               {"config": config, "targets": targets.to_dict("records")})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=TEACHERS)
    parser.add_argument("--detail-seeds", nargs="*", type=int, default=None,
                        help="seeds with the CLI chain and the ablations (default: the first)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny budgets and meta-model (the slow test)")
    parser.add_argument("--combine", nargs="+", metavar="DIR",
                        help="run nothing: report the tables of earlier runs (e.g. task "
                             "subsets run side by side) written to these folders")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.combine:
        tables = [[pd.read_csv(os.path.join(d, f"bench_metalearner_{stem}.csv"))
                   for d in args.combine] for stem in ("scores", "costs")]
        report(*(pd.concat(t, ignore_index=True) for t in tables), args.out,
               {"combined": [os.path.abspath(d) for d in args.combine]})
        return
    budgets = TINY if args.tiny else BUDGETS
    meta = MetaValuator(members=2, steps=100, bags=8, epochs=2) if args.tiny else META
    detail = args.seeds[:1] if args.detail_seeds is None else args.detail_seeds
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    scores, costs = [], []
    for name in args.tasks:
        for seed in args.seeds:
            s, c = bench_task(name, seed, tuple(args.teachers), budgets=budgets, meta=meta,
                              folder=args.out, detail=seed in detail)
            scores += s
            costs += c
    report(pd.DataFrame(scores), pd.DataFrame(costs), args.out, {
        "tasks": args.tasks, "seeds": args.seeds, "teachers": args.teachers,
        "budgets": budgets, "batch": BATCH, "noise": NOISE, "tiny": args.tiny,
        "detail_seeds": detail, "meta": meta.config(), "target": "logistic_regression",
        "metric": "accuracy", "seconds": time.perf_counter() - start,
        "versions": package_versions()})


if __name__ == "__main__":
    main()
