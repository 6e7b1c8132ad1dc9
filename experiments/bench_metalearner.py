"""Meta-learner benchmark: learn a teacher's values on half the training set, predict the rest.

Run `python -m experiments.bench_metalearner [--quick]`. For breast_cancer, digits (capped
at 300 training rows) and two synthetic tasks of 600 and 6,000 training rows (no TMC on the
larger), all from `experiments.tasks` with 10 % flipped training labels and a
logistic-regression target, for each split / label-noise seed (default 0, 1, 2) and each
teacher in turn (TMC-Shapley, MSR-Banzhaf, Data-OOB via `valuation.api.value`):

* the teacher values the whole training set twice (seeds `s` and `s + 1000`);
* a `MetaValuator` is fitted to the first run's values of a stratified half (the pool) and
  predicts the other half (the unseen samples; they are in the target's training set, as the
  teacher's values are defined for them);
* reported on the unseen half: Spearman of the predictions to the teacher and to its
  independent second run, the teacher's seed-to-seed Spearman (the ceiling), noisy-label
  detection F1 / AUROC from predictions, from the teacher, from KNN-Shapley, from the
  10-nearest-neighbour label-agreement baseline and from DVRL (OpenDataVal, in its own
  environment: `experiments/dvrl.py`; skipped with a reason when absent), and the wall time
  of predicting against the teacher's (both warm: the teacher's second run, a second predict
  call), the teacher's in full and pro-rated to the unseen half (the teacher cannot value
  half the samples of a game for less than its whole cost, so the pro-rated figure flatters
  it);
* on new rows (the task's test split, 10 % of labels flipped, never trained on by the
  target nor valued by the teacher): noisy-label detection from the meta-model's
  predictions against 10-NN label agreement with the training set (the teacher, KNN-Shapley
  and DVRL would have to be rerun to value them).

`summarise` averages the rows over seeds and counts, per task and teacher, the seeds on which
the meta-model's AUROC beats each baseline's. Two further tables: per-target-model values
(Data-OOB for logistic regression vs an MLP on breast_cancer: how different the values are
and which meta-model predicts which), and transfer (leave one task out of several data set x
target model tasks, model-agnostic features: zero-shot, few-shot with 20 valued samples, and
from-scratch on those 20).

Writes `results/bench_metalearner.csv` (one row per task, seed and teacher),
`results/bench_metalearner_summary.csv`, `results/bench_metalearner_targets.csv`,
`results/bench_metalearner_transfer.csv` and `results/bench_metalearner.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Sequence

import jax
import numpy as np
import pandas as pd

from metalearner.features import GROUPS, MODEL_AGNOSTIC
from metalearner.predictor import MetaValuator
from metalearner.transfer import fine_tune, fit_tasks, make_task, predict_ranks
from valuation import logistic_regression, make_utility, mlp
from valuation.api import value
from valuation.results import atomic_write, package_versions, write_json
from valuation.shapley import max_draws

from .dvrl import RL_EPOCHS, dvrl_values
from .measure import measure
from .noisy_labels import detection_auroc, detection_f1, knn_label_agreement
from .rank_correlation import spearman
from .tasks import make_task as make_bench_task

__all__ = ["bench_targets", "bench_task", "bench_transfer", "main", "summarise"]

TEACHERS = ("tmc", "banzhaf", "oob")


def _task(name: str, cap: int | None, seed: int = 0):
    """`(train, valid, noisy, test)`: the benchmark task, training rows capped at `cap`."""
    task = make_bench_task(name, noise=0.1, seed=seed)
    train, noisy = task.train, task.noisy
    if cap is not None and train.n > cap:  # keep the first `cap` rows (already shuffled)
        train, noisy = train.subset(np.arange(cap)), noisy[:cap]
    return train, task.valid, noisy, task.test


def _detection(prefix: str, values: np.ndarray, noisy: np.ndarray) -> dict:
    return {
        f"{prefix}_f1": detection_f1(values, noisy),
        f"{prefix}_auroc": detection_auroc(values, noisy),
    }


def bench_task(
    name: str,
    teachers: Sequence[str],
    *,
    seed: int,
    budgets: dict,
    cap: int | None,
    meta: MetaValuator,
    dvrl_epochs: int,
    echo=print,
) -> list[dict]:
    """Rows for one task and split seed, one per teacher (see the module docstring).

    The baselines that do not depend on the teacher (KNN-Shapley, 10-NN label agreement,
    DVRL) are computed once per task and seed and repeated on every row.
    """
    train, valid, noisy, test = _task(name, cap, seed)
    utility = make_utility(logistic_regression(train.n_classes), train, valid)
    pool, unseen = train.split(0.5, 0.5, seed=seed)
    where = pd.Index(train.ids).get_indexer(unseen.ids)
    noisy_unseen = noisy[where]
    baselines = {"n_train": train.n, "n_unseen": unseen.n, "n_noisy_unseen": int(noisy_unseen.sum())}
    knn = value(utility, method="knn", seed=seed, progress=False).values
    baselines.update(_detection("knn_shapley", knn[where], noisy_unseen))
    agreement = knn_label_agreement(train.x, train.y)
    baselines.update(_detection("knn10_agreement", agreement[where], noisy_unseen))
    # Rows the target never trained on: the test split, 10 % of its labels flipped.
    new, new_noisy = test.flip_labels(0.1, seed=seed + 1)
    new_agreement = knn_label_agreement(new.x, new.y, reference=(train.x, train.y))
    baselines.update(_detection("new_knn10_agreement", new_agreement, new_noisy))
    dvrl = dvrl_values(train, valid, seed=seed, rl_epochs=dvrl_epochs) if dvrl_epochs else (
        "skipped: --dvrl-epochs 0")
    if isinstance(dvrl, str):
        baselines.update({"dvrl_f1": np.nan, "dvrl_auroc": np.nan, "dvrl": dvrl})
    else:
        baselines.update(_detection("dvrl", dvrl[0][where], noisy_unseen))
        baselines.update({"dvrl_s": dvrl[1], "dvrl": f"opendataval DVRL, {dvrl_epochs} RL epochs"})
    rows = []
    for teacher in teachers:
        # TMC costs about n fits per permutation: beyond a CPU budget on digits (10 classes,
        # gradient-descent training) and on thousands of rows.
        if teacher == "tmc" and budgets["tmc"] > 10 and (name == "digits" or train.n > 1000):
            continue
        stop = max_draws(budgets[teacher])
        r0 = value(utility, method=teacher, seed=seed, stop=stop, progress=False)
        # Timed: a second, independent run, compiled by the first (both sides timed warm).
        r1, cost = measure(
            value, utility, method=teacher, seed=seed + 1000, stop=stop, progress=False
        )
        fitted, fit_cost = measure(meta.fit, utility, r0.align(pool.ids))
        fitted.predict(unseen)  # compile once; the timed call below is the steady state
        pred, predict_cost = measure(fitted.predict, unseen)
        t0, t1 = r0.values[where], r1.values[where]
        row = {"task": name, "seed": seed, "teacher": r0.method, "budget": budgets[teacher]}
        row.update(baselines)
        row.update(
            {
                "spearman_pred_teacher": spearman(pred.values, t0),
                "spearman_pred_teacher_seed1": spearman(pred.values, t1),
                "spearman_teacher_seeds": spearman(t0, t1),
            }
        )
        row["ratio_to_ceiling"] = row["spearman_pred_teacher"] / row["spearman_teacher_seeds"]
        row.update(_detection("pred", pred.values, noisy_unseen))
        row.update(_detection("teacher", t0, noisy_unseen))
        row.update(_detection("new_pred", fitted.predict(new).values, new_noisy))
        row.update(
            {
                "teacher_s": cost.seconds,
                "teacher_s_prorated": cost.seconds * unseen.n / train.n,
                "meta_fit_s": fit_cost.seconds,
                "predict_s": predict_cost.seconds,
            }
        )
        row["speedup"] = row["teacher_s"] / row["predict_s"]
        row["speedup_prorated"] = row["teacher_s_prorated"] / row["predict_s"]
        echo(
            f"{name:14s} seed {seed} {r0.method:12s} rho(pred, teacher) "
            f"{row['spearman_pred_teacher']:.3f} ceiling {row['spearman_teacher_seeds']:.3f} | "
            f"AUROC pred {row['pred_auroc']:.3f} teacher {row['teacher_auroc']:.3f} "
            f"knn10 {row['knn10_agreement_auroc']:.3f} knn-shapley "
            f"{row['knn_shapley_auroc']:.3f} dvrl {row['dvrl_auroc']:.3f} | teacher "
            f"{cost.seconds:.2f} s, predict {predict_cost.seconds * 1e3:.2f} ms"
        )
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> pd.DataFrame:
    """Mean over split seeds per task and teacher, with how often the meta-model's AUROC
    beats each baseline's on the same unseen samples."""
    table = pd.DataFrame(rows)
    metrics = [
        "spearman_pred_teacher", "spearman_teacher_seeds", "ratio_to_ceiling",
        "pred_f1", "teacher_f1", "knn_shapley_f1", "knn10_agreement_f1", "dvrl_f1",
        "pred_auroc", "teacher_auroc", "knn_shapley_auroc", "knn10_agreement_auroc",
        "dvrl_auroc", "new_pred_f1", "new_knn10_agreement_f1", "new_pred_auroc",
        "new_knn10_agreement_auroc", "teacher_s", "predict_s", "speedup", "speedup_prorated",
    ]
    out = table.groupby(["task", "teacher"], sort=False)[metrics].mean()
    out.insert(0, "seeds", table.groupby(["task", "teacher"], sort=False).size())
    pairs = [("pred", base) for base in ("knn_shapley", "knn10_agreement", "dvrl", "teacher")]
    for ours, base in pairs + [("new_pred", "new_knn10_agreement")]:
        wins = table[f"{ours}_auroc"] > table[f"{base}_auroc"]
        out[f"auroc_wins_{ours}_vs_{base}"] = wins.groupby([table["task"], table["teacher"]],
                                                           sort=False).sum()
    return out.reset_index()


def bench_targets(*, budget: int, meta: MetaValuator, echo=print) -> list[dict]:
    """Data-OOB values of breast_cancer for logistic regression vs an MLP, and which
    meta-model predicts which."""
    train, valid, _, _ = _task("breast_cancer", None)
    models = {"logreg": logistic_regression(2), "mlp": mlp(2, hidden=(32,))}
    values, metas = {}, {}
    pool, unseen = train.split(0.5, 0.5, seed=0)
    where = pd.Index(train.ids).get_indexer(unseen.ids)
    for label, model in models.items():
        utility = make_utility(model, train, valid)
        values[label] = value(
            utility, method="oob", seed=0, stop=max_draws(budget), progress=False
        )
        metas[label] = meta.fit(utility, values[label].align(pool.ids)).predict(unseen)
    rows = []
    for fitted in models:
        for truth in models:
            rows.append(
                {
                    "meta_for": fitted,
                    "compared_with": truth,
                    "spearman_unseen": spearman(
                        metas[fitted].values, values[truth].values[where]
                    ),
                }
            )
    rows.append(
        {
            "meta_for": "teacher logreg",
            "compared_with": "teacher mlp",
            "spearman_unseen": spearman(
                values["logreg"].values[where], values["mlp"].values[where]
            ),
        }
    )
    for r in rows:
        echo(
            f"targets: {r['meta_for']:>14s} vs {r['compared_with']:<11s} "
            f"rho {r['spearman_unseen']:.3f}"
        )
    return rows


def bench_transfer(
    *, budget: int, cap: int | None, shots: int, meta: MetaValuator, echo=print
) -> list[dict]:
    """Leave-one-task-out transfer on model-agnostic features with Data-OOB teachers."""
    specs = [
        ("breast_cancer", "logreg"),
        ("wine", "logreg"),
        ("synthetic_1k", "logreg"),
        ("digits", "logreg"),
        ("breast_cancer", "mlp"),
    ]
    tasks = []
    options = {
        "members": meta.members,
        "hidden": meta.hidden,
        "steps": meta.steps,
        "learning_rate": meta.learning_rate,
        "weight_decay": meta.weight_decay,
    }
    for i, (name, kind) in enumerate(specs):
        train, valid, noisy, _ = _task(name, cap)
        model = (
            logistic_regression(train.n_classes)
            if kind == "logreg"
            else mlp(train.n_classes, hidden=(32,))
        )
        utility = make_utility(model, train, valid)
        task = make_task(
            utility,
            name=f"{name}/{kind}",
            key=jax.random.PRNGKey(i),
            k=meta.k,
            groups=MODEL_AGNOSTIC,
            epochs=meta.epochs,
        )
        teacher = value(
            utility, method="oob", seed=0, stop=max_draws(budget), progress=False
        )
        tasks.append((task, teacher, noisy, train))
    rows = []
    for i, (task, teacher, noisy, train) in enumerate(tasks):
        others = [(t, v) for j, (t, v, _, _) in enumerate(tasks) if j != i]
        ensemble = fit_tasks(others, key=jax.random.PRNGKey(100 + i), **options)
        zero, _ = predict_ranks(ensemble, task)
        order = np.asarray(jax.random.permutation(jax.random.PRNGKey(200 + i), train.n))
        few, rest = order[:shots], order[shots:]
        tuned = fine_tune(
            ensemble,
            task,
            teacher[few],
            key=jax.random.PRNGKey(300 + i),
            steps=meta.steps,
        )
        scratch = fit_tasks(
            [(task, teacher[few])], key=jax.random.PRNGKey(400 + i), **options
        )
        row = {
            "task": task.name,
            "n_train": train.n,
            "zero_shot_spearman": spearman(zero, teacher.values),
            "zero_shot_f1": detection_f1(zero, noisy),
            "teacher_f1": detection_f1(teacher.values, noisy),
            "knn10_agreement_f1": detection_f1(knn_label_agreement(train.x, train.y), noisy),
            "shots": shots,
            "zero_shot_spearman_rest": spearman(zero[rest], teacher.values[rest]),
            "few_shot_spearman_rest": spearman(
                predict_ranks(tuned, task, rest)[0], teacher.values[rest]
            ),
            "scratch_spearman_rest": spearman(
                predict_ranks(scratch, task, rest)[0], teacher.values[rest]
            ),
        }
        echo(
            f"transfer {task.name:22s} zero-shot rho {row['zero_shot_spearman']:.3f} "
            f"F1 {row['zero_shot_f1']:.3f} (teacher {row['teacher_f1']:.3f}) | on the rest: "
            f"zero {row['zero_shot_spearman_rest']:.3f} few {row['few_shot_spearman_rest']:.3f}"
            f" scratch {row['scratch_spearman_rest']:.3f}"
        )
        rows.append(row)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small teacher budgets, capped training sets, small meta-model, one seed",
    )
    parser.add_argument("--tasks", nargs="*",
                        default=["breast_cancer", "digits", "synthetic_1k", "synthetic_10k"])
    parser.add_argument("--teachers", nargs="*", default=list(TEACHERS))
    parser.add_argument("--seeds", nargs="*", type=int, default=None,
                        help="split / label-noise seeds (default 0 1 2; 0 with --quick)")
    parser.add_argument("--dvrl-epochs", type=int, default=None,
                        help=f"DVRL's RL epochs via OpenDataVal (0: skip; default {RL_EPOCHS}, "
                        "200 with --quick); needs experiments/dvrl.py's separate environment")
    parser.add_argument("--groups", nargs="*", default=None, choices=GROUPS,
                        help="the meta-model's feature groups (default: all)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["targets", "transfer"])
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    if args.quick:
        budgets, cap, seeds, dvrl_epochs = {"tmc": 10, "banzhaf": 500, "oob": 100}, 200, [0], 200
        meta = MetaValuator(members=4, hidden=(32, 32), steps=500, epochs=10)
    else:
        # Sized for a 2-core CPU (about an hour); raise them on a bigger machine.
        budgets, cap, seeds = {"tmc": 200, "banzhaf": 5000, "oob": 800}, 300, [0, 1, 2]
        dvrl_epochs = RL_EPOCHS
        meta = MetaValuator()
    if args.groups is not None:
        meta = dataclasses.replace(meta, groups=tuple(args.groups))
    seeds = args.seeds if args.seeds is not None else seeds
    dvrl_epochs = args.dvrl_epochs if args.dvrl_epochs is not None else dvrl_epochs
    start = time.perf_counter()
    rows = [
        row
        for name in args.tasks
        for seed in seeds
        for row in bench_task(name, args.teachers, seed=seed, budgets=budgets,
                              cap=cap if name == "digits" else None, meta=meta,
                              dvrl_epochs=dvrl_epochs)
    ]
    summary = summarise(rows)
    targets = [] if "targets" in args.skip else bench_targets(budget=budgets["oob"], meta=meta)
    transfer = (
        []
        if "transfer" in args.skip
        else bench_transfer(budget=budgets["oob"], cap=cap, shots=20, meta=meta)
    )
    with pd.option_context("display.width", 250, "display.precision", 3,
                           "display.max_columns", 60):
        for table in (summary, pd.DataFrame(targets), pd.DataFrame(transfer)):
            if len(table):
                print(table.to_string(index=False))
    os.makedirs(args.out, exist_ok=True)
    for suffix, table in (("", pd.DataFrame(rows)), ("_summary", summary),
                          ("_targets", pd.DataFrame(targets)),
                          ("_transfer", pd.DataFrame(transfer))):
        path = os.path.join(args.out, f"bench_metalearner{suffix}.csv")
        atomic_write(path, lambda tmp, t=table: t.to_csv(tmp, index=False))
    write_json(
        os.path.join(args.out, "bench_metalearner.json"),
        {
            "config": {
                "quick": args.quick,
                "budgets": budgets,
                "digits_cap": cap,
                "seeds": seeds,
                "dvrl_epochs": dvrl_epochs,
                "meta": meta.config(),
                "noise": 0.1,
                "target": "logistic_regression",
                "metric": "accuracy",
                "seconds": time.perf_counter() - start,
                "versions": package_versions(),
            },
            "teachers": rows,
            "summary": summary.to_dict("records"),
            "targets": targets,
            "transfer": transfer,
        },
    )


if __name__ == "__main__":
    main()
