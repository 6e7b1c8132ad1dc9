"""The benchmark suite behind `valuate bench`: methods x tasks, one tidy results table.

Where it sits: on top of the value families (through `valuation.api.value`), the tasks
(`valuation.tasks`) and the protocols (`noisy_labels`, `point_removal`, `rank_correlation`,
`measure`). For every task and method it records

* noisy-label detection: F1 of flagging the k lowest values (k = flipped labels), AUROC, and
  the random-flagging F1;
* point removal and addition curves on the held-out test split, high-first, low-first and
  random order (the target model retrained for every point, all points in one batch);
* Spearman correlation of the values with a reference run (the preset's reference method
  at its larger budget, under another seed);
* wall time and peak resident memory of the valuation call, and the utility evaluations
  (models trained) it used; a Monte Carlo method spends exactly the preset's budget (a
  permutation method drops the one permutation the budget cuts short).

A "random" method (seeded uniform values) and "knn_agreement" (the share of a sample's 10 nearest
neighbours carrying its label) are the baseline rows of every task.

Outputs in the `out` folder, each written atomically: `results.parquet` and `results.csv`
(tidy: one row per task, method, measure and curve point), `summary.md` (one line per task
and method) and, when matplotlib is installed, `removal_<task>.png` (removal curves) and
`values_<task>.png` (value histograms, noisy vs clean).
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np
import pandas as pd

from valuation import ValuationError, logistic_regression, make_utility
from valuation.api import METHODS, value
from valuation.evaluate.measure import measure
from valuation.evaluate.noisy_labels import (
    detection_auroc,
    detection_f1,
    knn_label_agreement,
    random_f1,
)
from valuation.evaluate.point_removal import curve_summary, curves
from valuation.evaluate.rank_correlation import spearman
from valuation.results import atomic_write, write_text
from valuation.shapley.stopping import max_evaluations
from valuation.tasks import Task, make_task

from .bench_scale import SIZES, run_scale

__all__ = ["PRESETS", "Preset", "run_bench", "summarize"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """A benchmark configuration.

    Attributes:
      tasks: task names (see `valuation.tasks.TASKS`).
      methods: method names of `valuation.api.value`, plus the baselines in `BASELINES`.
      budget: utility evaluations per training sample for each Monte Carlo method (a task
        with n training samples gets `budget * n`, spent exactly): permutation
        methods need about n evaluations per permutation, so a fixed total would starve
        large tasks.
      metric: validation score of the utility ("neg_log_loss": smoother than accuracy, so
        small retraining differences such as leave-one-out's register).
      reference: method of the reference run for rank correlation (None: no reference,
        no rank correlation).
      reference_budget: its budget, per training sample.
      fractions: removal / addition fractions.
      n_random: random orders averaged for the curves' baseline.
    """

    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    budget: float
    metric: str
    reference: str | None
    reference_budget: float
    fractions: tuple[float, ...]
    n_random: int


PRESETS = {
    "quick": Preset(tasks=("breast_cancer",),
                    methods=("random", "knn_agreement", "loo", "oob", "banzhaf", "knn"),
                    budget=1.5, metric="neg_log_loss", reference="banzhaf",
                    reference_budget=6.0,
                    fractions=(0.0, 0.1, 0.2, 0.3), n_random=3),
    "full": Preset(tasks=("wine", "breast_cancer", "digits", "synthetic_1k", "synthetic_10k"),
                   methods=("random", "knn_agreement", "loo", "tmc", "beta", "banzhaf", "oob",
                            "knn"),
                   budget=20.0, metric="neg_log_loss", reference="tmc",
                   reference_budget=80.0,
                   fractions=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5), n_random=5),
    # Cost versus size: methods whose cost does not grow with a per-sample budget.
    "scale-tasks": Preset(tasks=("synthetic_1k", "synthetic_10k", "synthetic_100k"),
                    methods=("random", "knn", "oob"), budget=0.005, metric="neg_log_loss",
                    reference=None, reference_budget=0.0,
                    fractions=(0.0, 0.1, 0.2, 0.3), n_random=3),
}


BASELINES = {
    "random": lambda task, seed: np.asarray(
        jax.random.uniform(jax.random.PRNGKey(seed), (task.train.n,))),
    "knn_agreement": lambda task, seed: knn_label_agreement(task.train.x, task.train.y),
}


def _value(task: Task, method: str, *, budget: float, metric: str,
           seed: int) -> tuple[np.ndarray, int]:
    """Values of the task's training samples (training order) and utility evaluations."""
    if method in BASELINES:
        return BASELINES[method](task, seed), 0
    result = value(task.train, method=method, valid=task.valid, seed=seed, progress=False,
                   stop=max_evaluations(max(1, round(budget * task.train.n))),
                   utility_options={"metric": metric})
    return result.values, int(result.extra.get("evaluations", 0))


def _rows(task: str, method: str, measures: dict[str, float]) -> list[dict]:
    return [{"task": task, "method": method, "measure": k, "order": None, "fraction": np.nan,
             "value": float(v)} for k, v in measures.items()]


def _bench_task(task: Task, preset: Preset, methods, seed: int, echo) -> tuple[list, dict]:
    """Tidy rows and {method: values} for one task."""
    # One chunk holds every curve point of a method: one compile, no padding.
    points = 2 * (2 + preset.n_random) * len(preset.fractions)
    test_utility = make_utility(logistic_regression(task.train.n_classes), task.train,
                                task.test, chunk=points)
    # The reference run uses a seed of its own stream, never seed + 1.
    ref_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
    reference = None
    if preset.reference is not None:
        reference, _ = _value(task, preset.reference, budget=preset.reference_budget,
                              metric=preset.metric, seed=ref_seed)
    rows, values_by_method = [], {}
    for method in methods:
        (values, evaluations), cost = measure(_value, task, method, budget=preset.budget,
                               metric=preset.metric, seed=seed)
        frame = curves(values, test_utility, fractions=preset.fractions,
                       n_random=preset.n_random, seed=seed)
        scalars = {"f1": detection_f1(values, task.noisy),
                   "auroc": detection_auroc(values, task.noisy),
                   "random_f1": random_f1(task.noisy),
                   "spearman_to_reference": (np.nan if reference is None
                                             else spearman(values, reference)),
                   "seconds": cost.seconds, "peak_mb": cost.peak_mb,
                   "evaluations": evaluations,
                   **curve_summary(frame)}
        rows += _rows(task.name, method, scalars)
        rows += [{"task": task.name, "method": method, "measure": r.protocol,
                  "order": r.order, "fraction": r.fraction, "value": r.score}
                 for r in frame.itertuples()]
        values_by_method[method] = values
        echo(f"{task.name:>14} {method:>8}: F1 {scalars['f1']:.3f}  AUROC "
             f"{scalars['auroc']:.3f}  rho {scalars['spearman_to_reference']:+.2f}  "
             f"{cost.seconds:6.2f} s  {cost.peak_mb:6.0f} MiB")
    return rows, values_by_method


SUMMARY_COLUMNS = ["f1", "random_f1", "auroc", "spearman_to_reference",
                   "removal_high_first", "removal_random", "removal_low_first",
                   "addition_high_first", "addition_random", "evaluations", "seconds",
                   "peak_mb"]


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """One row per task and method, the scalar measures as columns (curves as their means)."""
    scalars = table[table["order"].isna()]
    wide = scalars.pivot_table(index=["task", "method"], columns="measure", values="value",
                               sort=False)
    return wide[[c for c in SUMMARY_COLUMNS if c in wide.columns]].reset_index()


def _markdown(summary: pd.DataFrame, preset_name: str, preset: Preset, seed: int) -> str:
    cols = list(summary.columns)
    lines = [f"# valuate bench ({preset_name} preset, seed {seed})", "",
             (f"Budget {preset.budget:g} utility evaluations per training sample for each Monte "
              f"Carlo method, validation metric {preset.metric}; reference run: "
              f"{preset.reference} at {preset.reference_budget:g} per sample. F1 / AUROC: "
              "lowest "
              "values flag the flipped labels. removal_* / addition_*: mean test accuracy "
              "along the curve (lower removal_high_first and higher removal_low_first = "
              "better ranking). evaluations / seconds / peak_mb: the valuation call "
              "alone."), "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in summary.itertuples(index=False):
        lines.append("| " + " | ".join(v if isinstance(v, str) else f"{v:.3f}"
                                       for v in row) + " |")
    return "\n".join(lines) + "\n"


def _plots(out: str, table: pd.DataFrame, values: dict, tasks: dict) -> list[str]:
    """Removal curves and noisy-vs-clean value histograms per task; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for name, by_method in values.items():
        curves_ = table[(table["task"] == name) & (table["measure"] == "removal")]
        fig, axes = plt.subplots(1, len(by_method), figsize=(3 * len(by_method), 3),
                                 sharey=True, squeeze=False)
        for ax, method in zip(axes[0], by_method):
            for order, part in curves_[curves_["method"] == method].groupby("order"):
                ax.plot(part["fraction"], part["value"], marker="o", label=order)
            ax.set(title=method, xlabel="share removed")
        axes[0, 0].set_ylabel("test accuracy")
        axes[0, -1].legend(fontsize="small")
        written.append(_save_figure(fig, os.path.join(out, f"removal_{name}.png")))
        noisy = tasks[name].noisy
        fig, axes = plt.subplots(1, len(by_method), figsize=(3 * len(by_method), 3),
                                 squeeze=False)
        for ax, (method, v) in zip(axes[0], by_method.items()):
            bins = np.histogram_bin_edges(v, bins=30)
            ax.hist(v[~noisy], bins=bins, alpha=0.6, label="clean")
            ax.hist(v[noisy], bins=bins, alpha=0.6, label="flipped")
            ax.set(title=method, xlabel="value")
        axes[0, -1].legend(fontsize="small")
        written.append(_save_figure(fig, os.path.join(out, f"values_{name}.png")))
        plt.close("all")
    return written


def _save_figure(fig, path: str) -> str:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return path


def run_bench(out: str, *, preset: str = "quick", tasks=None, methods=None, seed: int = 0,
              plots: bool = True, progress: bool = True) -> pd.DataFrame:
    """Run a preset (optionally with other tasks / methods) and write its outputs to `out`.

    The presets "scale" and "scale-quick" run the scale benchmark instead
    (`valuate.bench_scale.run_scale`: KNN-Shapley errors, big-CSV jobs, seconds per
    evaluation against n).

    Returns:
      The tidy results table (columns task, method, measure, order, fraction, value); for
      the scale presets the three scale tables stacked, with a column `part`.
    """
    if preset in SIZES:  # the scale benchmark (`valuate.bench_scale`): its own tables
        if tasks or methods:
            raise ValuationError(f"--tasks and --methods do not apply to the {preset} preset "
                                 "(its sizes and methods are fixed); drop them")
        record = run_scale(out, SIZES[preset], seed=seed, plots=plots, progress=progress)
        return pd.concat([pd.DataFrame(record[part]).assign(part=part)
                          for part in ("knn_error", "knn_size", "cli", "per_evaluation")],
                         ignore_index=True)
    if preset not in PRESETS:
        raise ValuationError(f"unknown preset {preset!r}; choose one of "
                             f"{', '.join([*PRESETS, *SIZES])}")
    config = PRESETS[preset]
    methods = tuple(methods or config.methods)
    unknown = sorted((set(methods) | {config.reference}) - set(METHODS) - set(BASELINES) - {None})
    if unknown:
        raise ValuationError(f"unknown method(s) {', '.join(unknown)}; choose from random, "
                             f"{', '.join(sorted(METHODS))}")
    os.makedirs(out, exist_ok=True)
    echo = (lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None)
    built = {name: make_task(name, seed=seed) for name in (tasks or config.tasks)}
    rows, values = [], {}
    for name, task in built.items():
        task_rows, values[name] = _bench_task(task, config, methods, seed, echo)
        rows += task_rows
    table = pd.DataFrame(rows)
    atomic_write(os.path.join(out, "results.parquet"),
                 lambda tmp: table.to_parquet(tmp, index=False))
    atomic_write(os.path.join(out, "results.csv"), lambda tmp: table.to_csv(tmp, index=False))
    text = _markdown(summarize(table), preset, config, seed)
    written = _plots(out, table, values, built) if plots else []
    write_text(os.path.join(out, "summary.md"), text)
    echo(f"results: {out}/results.parquet, results.csv, summary.md"
         + (f", {len(written)} figures" if written else ""))
    return table
