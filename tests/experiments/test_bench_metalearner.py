"""The meta-learner benchmark's summary: means over seeds and honest win counts."""

import numpy as np

from experiments.bench_metalearner import summarise


def _row(seed, pred, knn10, dvrl):
    base = {"task": "t", "teacher": "data_oob", "seed": seed, "spearman_pred_teacher": 0.8,
            "spearman_teacher_seeds": 0.9, "ratio_to_ceiling": 0.8 / 0.9, "teacher_s": 1.0,
            "predict_s": 0.001, "speedup": 1000.0, "speedup_prorated": 500.0}
    for name in ("pred", "teacher", "knn_shapley", "knn10_agreement", "dvrl", "new_pred",
                 "new_knn10_agreement"):
        base[f"{name}_f1"] = 0.5
        base[f"{name}_auroc"] = 0.9
    base.update(pred_auroc=pred, knn10_agreement_auroc=knn10, dvrl_auroc=dvrl)
    return base


def test_summary_averages_seeds_and_counts_strict_wins_only():
    rows = [_row(0, 0.95, 0.90, np.nan), _row(1, 0.90, 0.90, 0.80), _row(2, 0.85, 0.90, 0.99)]
    out = summarise(rows).iloc[0]
    assert out["seeds"] == 3
    np.testing.assert_allclose(out["pred_auroc"], 0.9)
    assert out["auroc_wins_pred_vs_knn10_agreement"] == 1  # a tie is not a win
    assert out["auroc_wins_pred_vs_dvrl"] == 1  # a skipped (NaN) baseline is not beaten
    assert np.isnan(summarise(rows[:1]).iloc[0]["dvrl_auroc"])
