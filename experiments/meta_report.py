"""The meta-learner benchmark's report: tables of means over seeds and issue 11's targets.

Where it sits: after `bench_metalearner.bench_task` has produced its long tables (`scores`:
task, seed, teacher, rows, method, spearman, f1, auroc; `costs`: one row per task, seed and
teacher). Pure functions of those tables, so the verdicts can be tested by hand.

Targets (issue 11), each judged on the means over split seeds, on new rows, for the one-call
API (`learn_values` + `meta.predict`):

* spearman: Spearman of the predictions to the full-set teacher >= 0.9 x the ceiling
  sqrt(rho(t0, t1)), for Data-OOB and TMC teachers, on every task;
* f1: noisy-label F1 >= the teacher's own F1 - 0.02 and above every raw single feature,
  on at least 4 of 5 tasks per teacher (the "tasks" rows count them);
* cost: pipeline time <= 1/5 of the full-set teacher's, TMC and Banzhaf, n >= 2,000;
* predict: predicting the new rows >= 1,000x cheaper than the full-set teacher run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .raw_scores import RAW_SCORES

__all__ = ["check_targets", "markdown", "markdown_tables"]

KEYS = ["task", "teacher"]
DETAIL = ("meta", "meta_cli", "meta_without_bagging", "meta_without_neighbours")
COLUMNS = ("ceiling", "meta", "meta_cli", "teacher_t0", "teacher_equal_compute",
           "meta_without_bagging", "meta_without_neighbours", "knn_shapley", *RAW_SCORES,
           "dvrl", "random")


def _means(scores: pd.DataFrame, rows: str, measure: str) -> pd.DataFrame:
    """(task, teacher) x method table of `measure` on `rows`, mean over seeds."""
    picked = scores[scores["rows"] == rows]
    table = picked.groupby([*KEYS, "method"], sort=False)[measure].mean().unstack("method")
    return table[[c for c in COLUMNS if c in table.columns]]


def check_targets(scores: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """One row per target and (task, teacher): value, bound, met (see the module docstring).

    Rows with task "tasks" count, per teacher, the tasks whose F1 target is met.
    """
    rho, f1 = _means(scores, "new", "spearman"), _means(scores, "new", "f1")
    cost = costs.groupby(KEYS, sort=False)[["cost_ratio", "predict_speedup", "n_train"]].mean()
    out = []
    for (task, teacher), row in rho.iterrows():
        if teacher in ("oob", "tmc"):
            bound = 0.9 * row["ceiling"]
            out.append({"target": "spearman", "task": task, "teacher": teacher,
                        "value": row["meta"], "bound": bound, "met": row["meta"] >= bound})
        f = f1.loc[(task, teacher), :]
        raw = max(f[s] for s in RAW_SCORES)
        out.append({"target": "f1", "task": task, "teacher": teacher, "value": f["meta"],
                    "bound": max(f["teacher_t0"] - 0.02, raw),
                    "met": f["meta"] >= f["teacher_t0"] - 0.02 and f["meta"] > raw})
        c = cost.loc[(task, teacher), :]
        if teacher in ("tmc", "banzhaf") and c["n_train"] >= 2000:
            out.append({"target": "cost", "task": task, "teacher": teacher,
                        "value": c["cost_ratio"], "bound": 0.2, "met": c["cost_ratio"] <= 0.2})
        out.append({"target": "predict", "task": task, "teacher": teacher,
                    "value": c["predict_speedup"], "bound": 1000.0,
                    "met": c["predict_speedup"] >= 1000.0})
    table = pd.DataFrame(out)
    f1_rows = table[table["target"] == "f1"]
    for teacher, group in f1_rows.groupby("teacher", sort=False):
        need = min(4, len(group))
        out.append({"target": "f1", "task": "tasks", "teacher": teacher,
                    "value": float(group["met"].sum()), "bound": float(need),
                    "met": bool(group["met"].sum() >= need)})
    return pd.DataFrame(out)


def markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame (index included) as a GitHub markdown table; NaN shown as "-"."""
    table = table.reset_index()
    lines = ["| " + " | ".join(map(str, table.columns)) + " |",
             "|" + " --- |" * table.shape[1]]
    for row in table.itertuples(index=False):
        cells = [("-" if np.isnan(v) else f"{v:.{digits}f}") if isinstance(v, float) else str(v)
                 for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_tables(scores: pd.DataFrame, costs: pd.DataFrame, targets: pd.DataFrame,
                    *, note: str | None = None) -> str:
    """The report: quality tables per row set and measure, costs, targets (markdown)."""
    parts = []
    for rows, label in (("new", "new rows (never trained on, never valued)"),
                        ("outside", "training rows outside the pool")):
        for measure, what in (("spearman", "Spearman to the full-set teacher t0"),
                              ("f1", "noisy-label F1"), ("auroc", "noisy-label AUROC")):
            table = _means(scores, rows, measure)
            if measure != "spearman":
                table = table.drop(columns=["ceiling"], errors="ignore")
            parts.append(f"### {label}: {what}\n\n{markdown(table)}")
    detail = scores[scores["method"] == "meta_cli"]["seed"].unique()
    same = scores[scores["seed"].isin(detail) & scores["method"].isin(DETAIL)]
    for measure in ("spearman", "f1"):
        table = _means(same, "new", measure)
        parts.append(f"### new rows, {measure}, on the seeds with the CLI chain and the "
                     f"ablations only ({', '.join(map(str, sorted(detail)))})\n\n"
                     f"{markdown(table)}")
    cost_columns = ["n_train", "teacher_full_s", "learn_values_s", "predict_new_s",
                    "cost_ratio", "cli_s", "cli_cost_ratio", "predict_speedup",
                    "predict_speedup_warm"]
    cost = costs.groupby(KEYS, sort=False)[cost_columns].mean()
    parts.append(f"### cost (seconds, compilation included; ratios to the full-set teacher)"
                 f"\n\n{markdown(cost, 2)}")
    shown = targets.assign(met=targets["met"].map({True: "met", False: "MISSED"}))
    parts.append(f"### targets\n\n{markdown(shown.set_index('target'), 3)}")
    if note:
        parts.append(note)
    return "\n\n".join(parts) + "\n"
