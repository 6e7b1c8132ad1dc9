"""The data-rater benchmark's verdicts on hand-made tables (the run itself is a script)."""

import numpy as np
import pandas as pd
import pytest

from experiments.bench_rater import hanley_mcneil_se, summarize, summarize_stability
from valuation.evaluate.noisy_labels import detection_auroc


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


def test_hanley_mcneil_se_is_the_spread_of_the_auroc_under_exponential_scores():
    # Negatives' scores Exp(1), positives' Exp(rate mu): AUROC = 1 / (1 + mu), and
    # Q1 = A / (2 - A), Q2 = 2 A^2 / (1 + A) hold exactly, so the formula is the exact
    # standard deviation of the Mann-Whitney AUROC; checked against simulated draws.
    a, n_pos, n_neg, reps = 0.9, 20, 80, 4000
    rng = np.random.default_rng(0)
    noisy = np.arange(n_pos + n_neg) < n_pos
    aurocs = [detection_auroc(-np.concatenate([rng.exponential(a / (1 - a), n_pos),
                                               rng.exponential(1.0, n_neg)]), noisy)
              for _ in range(reps)]
    assert abs(np.mean(aurocs) - a) < 0.003
    assert np.std(aurocs, ddof=1) == pytest.approx(hanley_mcneil_se(a, n_pos, n_neg),
                                                   rel=0.06)


def test_stability_separates_the_rater_seeds_spread_from_the_splits():
    rows = []
    for split in range(3):
        for rater_seed in range(3):
            for rows_name, own in (("train", 0.001), ("new", 0.03)):
                rows.append({"task": "a", "split_seed": split, "rater_seed": rater_seed,
                             "target": "logreg", "rows": rows_name, "method": "rater_logreg",
                             "auroc": 0.9 - 0.05 * split + own * rater_seed, "f1": 0.5,
                             "n_pos": 10, "n_neg": 90})
        for rows_name in ("train", "new"):
            rows.append({"task": "a", "split_seed": split, "rater_seed": -1, "target": "-",
                         "rows": rows_name, "method": "knn10_agreement",
                         "auroc": 0.9 + 0.01 * split, "f1": 0.5, "n_pos": 10, "n_neg": 90})
    table = summarize_stability(pd.DataFrame(rows))
    lines = {line.split(" | ")[2]: line.split(" | ") for line in table.splitlines()
             if line.startswith("| a |")}
    header = next(line for line in table.splitlines() if line.startswith("| task"))
    col = header.split(" | ").index
    assert float(lines["train"][col("sd_rater_seeds_max")]) == pytest.approx(0.001, abs=1e-4)
    assert float(lines["new"][col("sd_rater_seeds_max")]) == pytest.approx(0.03, abs=1e-4)
    assert float(lines["train"][col("sd_split_seeds_rater")]) == pytest.approx(
        np.std([0.9, 0.85 + 0.001, 0.8 + 0.002], ddof=1), abs=1e-4)
    assert float(lines["train"][col("sd_split_seeds_knn10")]) == pytest.approx(0.01, abs=1e-4)
    assert lines["train"][-1].strip(" |") == "True" and lines["new"][-1].strip(" |") == "False"
