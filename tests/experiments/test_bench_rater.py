"""The data-rater benchmark's verdicts on hand-made tables (the run itself is a script)."""

import pandas as pd

from experiments.bench_rater import summarize


def _tables(rater_f1, knn_f1, rater_auroc):
    """Five tasks, three seeds; the rater's new-row F1 and AUROC per task as given."""
    scores, runs, top = [], [], []
    for t, task in enumerate("abcde"):
        for seed in range(3):
            for rows in ("train", "new"):
                scores += [
                    {"task": task, "seed": seed, "rows": rows, "method": "rater_logreg",
                     "f1": rater_f1[t], "auroc": rater_auroc[t][seed]},
                    {"task": task, "seed": seed, "rows": rows, "method": "knn10_agreement",
                     "f1": knn_f1[t], "auroc": 0.9},
                    {"task": task, "seed": seed, "rows": rows, "method": "knn_shapley",
                     "f1": 0.0, "auroc": 0.9}]
            top.append({"task": task, "seed": seed, "method": "all_rows", "kept": 1.0,
                        "test_accuracy": 0.9})
            runs.append({"task": task, "seed": seed, "rater_logreg_s": 10.0,
                         **({"tmc200_s": 20.0 if t else 5.0, "tmc200_measured": True}
                            if seed == 0 else {})})
    return pd.DataFrame(scores), pd.DataFrame(top), pd.DataFrame(runs)


def _met(targets, start):
    return bool(targets.loc[targets["target"].str.startswith(start), "met"].iloc[0])


def test_f1_needs_four_of_five_tasks_sd_every_task_and_cost_every_timed_task():
    steady = [(0.95, 0.95, 0.95)] * 4 + [(0.90, 0.95, 0.93)]  # one task: sd 0.025
    _, targets = summarize(*_tables([0.8, 0.8, 0.8, 0.8, 0.5], [0.8] * 5, steady))
    assert _met(targets, "new-row F1")  # ties count: 4 of 5
    assert not _met(targets, "AUROC sd")  # 0.025 on task e
    assert not _met(targets, "rater fit")  # 10 s against 5 s on task a
    _, targets = summarize(*_tables([0.8, 0.8, 0.8, 0.79, 0.5], [0.8] * 5,
                                    [(0.95, 0.95, 0.95)] * 5))
    assert not _met(targets, "new-row F1")  # 3 of 5
    assert _met(targets, "AUROC sd")
