"""Active learning from predicted values against random, entropy and margin sampling.

Run `python -m experiments.bench_acquire [--tiny] [--tasks ...] [--seeds 0 1] [--noise 0.2]
[--out results/acquire]`. For each task (`valuation.tasks`; default breast_cancer,
synthetic_1k, synthetic_1k_cyclic, digits), pool kind and seed:

* the pool is the task's training split; "clean" reveals each acquired row's true label,
  "noisy" a label flipped with probability `--noise` (the task's own seeded flips, fixed
  before the loop, so every strategy meets the same flipped rows);
* the loop starts from a stratified, seeded 5 % of the pool, acquires `--batch` of the pool
  per round (default 5 %) and stops at `--stop` (default 50 %); after each round the target
  (L2 logistic regression, the engine's `l2=1`, Newton's method on the labelled rows) is
  refitted and scored on the task's test split;
* strategies: random; entropy and margin sampling (the batch = the top uncertainties of the
  target refitted on the labelled rows); value (the meta-model refitted every round on the
  labelled rows: KNN-Shapley teacher on them, `MetaValuator` with the settings `META`, then
  `metalearner.acquire_batch`: predicted value once labelled mixed with entropy at each
  `--weights` value, harmful rows last, the diversity guard on);
* "+drop" tracks: every round the teacher (KNN-Shapley) also values the labelled rows, and
  the "<strategy>+drop" curve is the target refitted without those it values below 0 (the
  same acquisitions; only the training set of the scored target differs);
* reach: the fewest labels whose test accuracy is within 0.5 point of the full pool's (the
  target trained on every pool row with the pool's labels, clean or noisy), "never" within
  the budget; and the saving of value-driven acquisition against entropy sampling.

Writes `bench_acquire.csv` (one row per task, pool, strategy, seed and round),
`bench_acquire_reach.csv`, `bench_acquire.md`, `bench_acquire.json` and one learning-curve
PNG per task and pool, `bench_acquire_<task>_<pool>.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from metalearner import MetaValuator, acquire_batch
from valuation import fit_logistic_newton, logistic_regression, make_utility
from valuation.acquisition import uncertainty
from valuation.api import value
from valuation.results import package_versions, write_json, write_text
from valuation.tasks import make_task

__all__ = ["main", "reach", "simulate"]

TASKS = ("breast_cancer", "synthetic_1k", "synthetic_1k_cyclic", "digits")
# Every default group but "bagging" (its bootstrap refits cost one more compiled program
# per round; the loop refits the meta-model every round).
META = MetaValuator(members=4, steps=400, k=5, groups=("model", "gradient", "neighbours",
                                                      "label"))
TOLERANCE = 0.005  # accuracy points of the full pool's accuracy that count as reached


@functools.partial(jax.jit, static_argnames=("n_classes",))
def _fit(x, y, weights, *, n_classes):
    """The target on the rows with weight 1 (the others weigh 0): L2 logistic regression."""
    return fit_logistic_newton(x, y, weights[None], n_classes=n_classes, l2=1.0)


def _proba(model, params, x):
    return np.asarray(jax.nn.softmax(model.apply(jax.tree_util.tree_map(
        lambda a: a[0], params), jnp.asarray(x))), np.float64)


def _start(y: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A stratified, seeded `share` of the rows (at least 2 per class): boolean mask."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        mask[rng.choice(rows, max(2, round(share * len(rows))), replace=False)] = True
    return mask


def simulate(task_name: str, *, noisy: bool, strategy: str, seed: int, noise: float,
             weight: float = 0.5, start: float = 0.05, batch: float = 0.05,
             stop: float = 0.5) -> tuple[list[dict], float]:
    """One learning curve: `[{labels, accuracy, seconds}]` per round, and the full pool's
    test accuracy."""
    task = make_task(task_name, noise=noise if noisy else 0.0, seed=seed)
    clean = make_task(task_name, noise=0.0, seed=seed).train
    pool = task.train  # revealed labels: flipped with the task's seeded draw when noisy
    k = pool.n_classes
    model = logistic_regression(k)
    fit = functools.partial(_fit, jnp.asarray(pool.x), jnp.asarray(pool.y), n_classes=k)

    def accuracy(mask):
        params = fit(jnp.asarray(mask, jnp.float32))
        return float((_proba(model, params, task.test.x).argmax(1) == task.test.y).mean()), \
            params

    full, _ = accuracy(np.ones(pool.n, bool))
    labelled = _start(clean.y, start, seed)
    size, limit = max(1, round(batch * pool.n)), round(stop * pool.n)
    rng = np.random.default_rng(seed)
    curve = []
    while True:
        began = time.perf_counter()
        acc, params = accuracy(labelled)
        # The teacher on the labelled rows: its harmful rows (value < 0) left out is the
        # "+drop" track; the value strategy's meta-model learns from the same values.
        known = np.flatnonzero(labelled)
        utility = make_utility(model, pool.subset(known), task.valid)
        taught = value(utility, method="knn", seed=seed, progress=False)
        kept = labelled.copy()
        kept[known[taught.values < 0]] = False
        curve.append({"round": len(curve), "labels": int(labelled.sum()), "accuracy": acc,
                      "accuracy_drop": accuracy(kept)[0],
                      "flipped_labelled": int(task.noisy[labelled].sum()),
                      "flipped_kept": int(task.noisy[kept].sum())})
        if labelled.sum() >= limit:
            break
        rest = np.flatnonzero(~labelled)
        take = min(size, len(rest))
        if strategy == "random":
            picked = rng.choice(rest, take, replace=False)
        elif strategy in ("entropy", "margin"):
            doubt = uncertainty(_proba(model, params, pool.x[rest]), kind=strategy)
            picked = rest[np.argsort(-doubt, kind="stable")[:take]]
        else:
            meta = dataclasses.replace(META, seed=seed).fit(utility, taught)
            plan = acquire_batch(meta, pool.subset(rest), batch=take, weight=weight)
            picked = rest[plan.acquisition.order[:take]]
        labelled[picked] = True
        curve[-1]["seconds"] = time.perf_counter() - began
    return curve, full


def reach(curve: pd.DataFrame, full: float) -> float:
    """Fewest labels whose accuracy is within `TOLERANCE` of `full`; NaN if never."""
    hit = curve.loc[curve["accuracy"] >= full - TOLERANCE, "labels"]
    return float(hit.min()) if len(hit) else float("nan")


def _plot(frame: pd.DataFrame, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for (task, pool), part in frame.groupby(["task", "pool"]):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        mean = part.groupby(["strategy", "round"])[["labels", "accuracy"]].mean().reset_index()
        for strategy, line in mean.groupby("strategy"):
            ax.plot(line["labels"], line["accuracy"], marker="o", ms=3, label=strategy)
        full = part["full_accuracy"].mean()
        ax.axhline(full, color="k", lw=0.8, ls="--", label="full pool")
        ax.axhspan(full - TOLERANCE, full + TOLERANCE, color="k", alpha=0.08)
        ax.set(xlabel="labels", ylabel="test accuracy", title=f"{task}, {pool} pool")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out, f"bench_acquire_{task}_{pool}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--weights", nargs="+", type=float, default=[0.5, 0.8])
    parser.add_argument("--batch", type=float, default=0.05)
    parser.add_argument("--stop", type=float, default=0.5)
    parser.add_argument("--pools", nargs="+", default=["clean", "noisy"])
    parser.add_argument("--strategies", nargs="+",
                        default=["random", "entropy", "margin", "value"])
    parser.add_argument("--tiny", action="store_true", help="one task, one pool, to 20 %%")
    parser.add_argument("--out", default="results/acquire")
    parser.add_argument("--from-csv", help="only write the tables and plots of a finished "
                                           "or partial bench_acquire.csv")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                        "valuate-jax-cache"),
                        help="JAX's persistent compilation cache: the loop's shapes repeat "
                             "across pools, weights and strategies")
    args = parser.parse_args(argv)
    jax.config.update("jax_compilation_cache_dir", args.cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if args.tiny:
        args.tasks, args.pools, args.stop = args.tasks[:1], args.pools[:1], 0.2
    os.makedirs(args.out, exist_ok=True)
    if args.from_csv:
        return _write_report(pd.read_csv(args.from_csv), args)
    rows = []
    for task in args.tasks:
        for pool in args.pools:
            for seed in args.seeds:
                for strategy in args.strategies:
                    for weight in args.weights if strategy == "value" else [None]:
                        name = strategy if weight is None else f"value_w{weight:g}"
                        curve, full = simulate(task, noisy=pool == "noisy",
                                               strategy=strategy, seed=seed,
                                               noise=args.noise, weight=weight or 0.0,
                                               batch=args.batch, stop=args.stop)
                        for track, column in ((name, "accuracy"),
                                              (f"{name}+drop", "accuracy_drop")):
                            rows += [{"task": task, "pool": pool, "strategy": track,
                                      "seed": seed, "full_accuracy": full, **point,
                                      "accuracy": point[column]} for point in curve]
                        write_text(os.path.join(args.out, "bench_acquire.csv"),
                                   pd.DataFrame(rows).to_csv(index=False))  # so far
                        print(f"{task:<20} {pool:<5} {name:<12} seed {seed}: "
                              f"{curve[-1]['labels']} labels, acc {curve[-1]['accuracy']:.4f}"
                              f" (full {full:.4f})", flush=True)
    _write_report(pd.DataFrame(rows), args)


def _write_report(frame: pd.DataFrame, args: argparse.Namespace) -> None:
    reached = _reach_table(frame)
    report = _markdown(reached)
    write_text(os.path.join(args.out, "bench_acquire.csv"), frame.to_csv(index=False))
    write_text(os.path.join(args.out, "bench_acquire_reach.csv"), reached.to_csv(index=False))
    write_text(os.path.join(args.out, "bench_acquire.md"), report)
    write_json(os.path.join(args.out, "bench_acquire.json"),
               {"settings": vars(args), "meta": META.config(), "versions": package_versions(),
                "plots": _plot(frame, args.out)})
    print(report)


def _reach_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task, pool and strategy: labels to reach the full pool's accuracy (mean curve over
    seeds), the final accuracy, and the area under the curve (mean accuracy over rounds)."""
    out = []
    for (task, pool, strategy), part in frame.groupby(["task", "pool", "strategy"]):
        mean = part.groupby("round")[["labels", "accuracy"]].mean()
        full = part["full_accuracy"].mean()
        out.append({"task": task, "pool": pool, "strategy": strategy, "full_accuracy": full,
                    "labels_to_full": reach(mean, full),
                    "final_accuracy": mean["accuracy"].iloc[-1],
                    "mean_accuracy": mean["accuracy"].mean(),
                    "seeds": part["seed"].nunique()})
    return pd.DataFrame(out)


def _markdown(reached: pd.DataFrame) -> str:
    lines = [("| task | pool | strategy | labels to full-pool acc. (within 0.5 pt) | final "
              "acc. | mean acc. over rounds | full-pool acc. |"), "|---|---|---|---|---|---|---|"]
    for r in reached.itertuples():
        labels = "never" if np.isnan(r.labels_to_full) else f"{r.labels_to_full:.0f}"
        lines.append(f"| {r.task} | {r.pool} | {r.strategy} | {labels} | "
                     f"{r.final_accuracy:.4f} | {r.mean_accuracy:.4f} | {r.full_accuracy:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
