"""Benchmark of the learning-dynamics family: recording cost and noisy-label detection.

Run `python -m experiments.bench_dynamics [--quick]`. For breast_cancer, digits and
synthetic_1k (`experiments.tasks`, 10 % of the training labels flipped) and a
target model (`--model logreg`, the default, or `--model mlp`, one hidden layer of 64 units)
trained with mini-batch Adam (batch 64, 30 epochs, 3 seeds), it reports

* the cost of recording: wall time of training the `seeds` runs (one `vmap`) without the
  recorder, and of `dynamics.record` (the same training keeping per-epoch checkpoints, plus
  the per-sample pass over them), each the median of 3 (`--quick`) or 7 warm runs, the
  three interleaved; overhead = recorded / plain - 1 (target <= 30 %);
* noisy-label detection (F1 of flagging the k lowest values, k = flipped labels, and AUROC)
  of every dynamics signal from that one recording, of AUM with threshold samples (its own
  two training runs; with the paper's 99th-percentile cut-off and with the median, and how
  many samples each cut-off flags), next to random flagging, the 10-nearest-neighbour
  label-agreement baseline (share of a sample's 10 nearest training neighbours sharing its
  label, input space) and the Shapley family's KNN-Shapley and Data-OOB (`valuation.api.value`).

Writes `results/bench_dynamics_<model>_cost.csv`, `results/bench_dynamics_<model>_detection.csv`
and `results/bench_dynamics_<model>.json` (both tables and the settings).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from valuation import logistic_regression, mlp
from valuation.api import value
from valuation.dynamics import SIGNAL_NAMES, aum_threshold_values, record, signal_values
from valuation.dynamics.record import train_checkpoints
from valuation.evaluate.noisy_labels import (
    detection_auroc,
    detection_f1,
    knn_label_agreement,
    random_f1,
)
from valuation.results import atomic_write, write_json
from valuation.shapley.stopping import max_draws
from valuation.tasks import make_task
from valuation.training import fit

TASKS = ("breast_cancer", "digits", "synthetic_1k")
MODELS = {"logreg": logistic_regression, "mlp": lambda k: mlp(k, hidden=(64,))}


def _interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median warm wall time of each function, the calls interleaved so that the load of a
    shared machine hits all of them alike."""
    for fn in fns.values():
        jax.block_until_ready(fn())  # compile and warm up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def _plain_training(model, train, keys, settings):
    """The same training as `record` without checkpoints or statistics (recorder off)."""
    x, y = jnp.asarray(train.x), jnp.asarray(train.y)
    ones = jnp.ones(train.n, jnp.float32)
    steps = settings["epochs"] * -(-train.n // settings["batch_size"])

    @jax.jit
    def run(keys):
        return jax.vmap(lambda k: fit(model, x, y, ones, key=k, steps=steps,
                                      batch_size=settings["batch_size"]))(keys)

    return lambda: run(keys)


def recording_cost(name: str, *, model_name: str, seeds: int, epochs: int, batch_size: int,
                   repeats: int, echo=print) -> dict:
    """Warm wall time of training without and with the recorder (see the module docstring)."""
    task = make_task(name, noise=0.1, seed=0)
    train, valid = task.train, task.valid
    model = MODELS[model_name](train.n_classes)
    settings = {"epochs": epochs, "batch_size": batch_size}
    key = jax.random.PRNGKey(0)

    keys = jax.random.split(key, seeds)
    medians = _interleaved_medians({
        "plain_s": _plain_training(model, train, keys, settings),
        "train_with_checkpoints_s": lambda: train_checkpoints(model, train.x, train.y, keys,
                                                              **settings),
        "record_s": lambda: record(model, train, key=key, valid=valid, seeds=seeds,
                                   **settings),
    }, repeats)
    cost = {"task": name, "model": model_name, "n_train": train.n, "d": train.d, "classes": train.n_classes,
            "seeds": seeds, "epochs": epochs, **medians,
            "overhead": medians["record_s"] / medians["plain_s"] - 1.0}
    echo(f"{name}: plain {medians['plain_s']:.3f}s, with checkpoints "
         f"{medians['train_with_checkpoints_s']:.3f}s, record {medians['record_s']:.3f}s, "
         f"overhead {cost['overhead']:+.1%}")
    return cost


def detection(name: str, *, model_name: str, seeds: int, epochs: int, batch_size: int,
              oob_models: int) -> list[dict]:
    """Noisy-label F1 / AUROC per method; seconds are first calls (compilation included)."""
    task = make_task(name, noise=0.1, seed=0)
    train, valid, noisy = task.train, task.valid, task.noisy
    model = MODELS[model_name](train.n_classes)
    settings = {"epochs": epochs, "batch_size": batch_size}
    key = jax.random.PRNGKey(0)
    rows = []

    def add(method, values, seconds):
        rows.append({"task": name, "model": model_name, "method": method, "f1": detection_f1(values, noisy),
                     "auroc": detection_auroc(values, noisy), "seconds": seconds})

    start = time.perf_counter()
    _, trace = record(model, train, key=key, valid=valid, seeds=seeds, **settings)
    seconds = time.perf_counter() - start
    for signal in SIGNAL_NAMES:
        if signal == "aum_threshold":
            for percentile in (99.0, 50.0):
                start = time.perf_counter()
                r = aum_threshold_values(model, train, key=key, percentile=percentile,
                                         **settings)
                add(f"dynamics_aum_threshold_p{percentile:g}", r.values,
                    time.perf_counter() - start)
                rows[-1]["flagged"] = r.extra["n_flagged"]
                rows[-1]["flagged_noisy"] = int(np.sum((r.values < 0) & noisy))
        else:
            add(f"dynamics_{signal}", signal_values(trace, train.ids, signal).values, seconds)
    rows.append({"task": name, "model": model_name, "method": "random", "f1": random_f1(noisy), "auroc": 0.5,
                 "seconds": 0.0})
    start = time.perf_counter()
    add("knn10_label_agreement", knn_label_agreement(train.x, train.y), time.perf_counter() - start)
    for method, extra in (("knn", {}), ("oob", {"stop": max_draws(oob_models)})):
        start = time.perf_counter()
        r = value(train, model, method=method, valid=valid, seed=0, progress=False, **extra)
        add(r.method, r.values, time.perf_counter() - start)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and OOB models")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--model", choices=sorted(MODELS), default="logreg",
                        help="target model: logistic regression or an MLP with 64 hidden units")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    schedule = {"model_name": args.model, "seeds": 3, "epochs": 30, "batch_size": 64}
    config = {**schedule, "repeats": 3 if args.quick else 7,
              "oob_models": 200 if args.quick else 800}
    costs, rows = [], []
    for name in args.tasks:
        # detection first: its seconds are first calls, compilation included
        rows.extend(detection(name, **schedule, oob_models=config["oob_models"]))
        costs.append(recording_cost(name, **schedule, repeats=config["repeats"]))
    cost_table, detection_table = pd.DataFrame(costs), pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.precision", 3):
        print(cost_table.to_string(index=False))
        print(detection_table.to_string(index=False))
    os.makedirs(args.out, exist_ok=True)
    for suffix, table in (("cost", cost_table), ("detection", detection_table)):
        path = os.path.join(args.out, f"bench_dynamics_{args.model}_{suffix}.csv")
        atomic_write(path, lambda tmp, t=table: t.to_csv(tmp, index=False))
    write_json(os.path.join(args.out, f"bench_dynamics_{args.model}.json"),
               {"config": {**config, "quick": args.quick, "optimizer": "adam(0.05)",
                           "noise": 0.1},
                "cost": costs, "detection": rows})


if __name__ == "__main__":
    main()
