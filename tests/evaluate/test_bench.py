"""`valuate bench --quick` and the scale preset end to end (slow: `pytest -m slow`)."""

import subprocess
import sys

import pandas as pd
import pytest

from valuate.bench import PRESETS


@pytest.mark.slow  # a benchmark's smoke run (~1 min on 2 cores): out of CI's default set
def test_bench_quick_writes_table_summary_and_figures(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "valuate", "bench", "--quick", "--out",
                           str(out), "--quiet"], capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    preset = PRESETS["quick"]
    table = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(table, pd.read_csv(out / "results.csv"),
                                  check_dtype=False)
    assert list(table.columns) == ["task", "method", "measure", "order", "fraction", "value"]
    assert set(table["method"]) == set(preset.methods)
    curve = table[table["measure"] == "removal"]
    # every method: 3 orders x len(fractions) points per protocol
    assert len(curve) == len(preset.methods) * 3 * len(preset.fractions)
    scalars = table[table["order"].isna()].pivot_table(index="method", columns="measure",
                                                       values="value")
    # The seeded random baseline flags noise at about the noise rate; real methods do better.
    assert scalars.loc["random", "f1"] < 0.3
    for method in ("oob", "knn", "loo"):
        assert scalars.loc[method, "f1"] > 2 * scalars.loc[method, "random_f1"]
        assert scalars.loc[method, "auroc"] > 0.8
    assert (scalars["seconds"] > 0).all() and (scalars["peak_mb"] > 0).all()
    summary = (out / "summary.md").read_text()
    assert all(f"| {m} |" in summary for m in preset.methods)
    assert (out / "removal_breast_cancer.png").exists()
    assert (out / "values_breast_cancer.png").exists()


@pytest.mark.slow  # a benchmark's smoke run (~1 min on 2 cores): out of CI's default set
def test_scale_preset_runs_the_scale_benchmark_at_a_tiny_size(tmp_path, monkeypatch):
    """`valuate bench --preset scale-quick` with its sizes shrunk: every part's table, the
    exact KNN row agrees with itself, the truncated ones stay within their bound."""
    import json

    from valuate import bench_scale
    from valuate.cli import main

    tiny = bench_scale.ScaleSizes(knn=(300, 40), cli=(200,), oob_budget=8,
                                  evaluations=(200, 400), knn_size=(1500, 40), knn_check=8)
    monkeypatch.setitem(bench_scale.SIZES, "scale-quick", tiny)
    out = tmp_path / "scale"
    assert main(["bench", "--preset", "scale-quick", "--out", str(out), "--quiet",
                 "--no-plots"]) == 0
    record = json.loads((out / "scale.json").read_text())
    knn = pd.read_csv(out / "knn_error.csv")
    exact = knn[knn["variant"] == "exact"].iloc[0]
    assert exact["max_abs_error"] == 0 and exact["spearman"] > 0.999
    eps = knn[knn["variant"] == "top-K* eps=0.01"].iloc[0]
    assert eps["max_abs_error"] <= 0.01
    size = pd.read_csv(out / "knn_size.csv").set_index("variant")
    assert (size["n"] == 1500).all() and size["seconds"].notna().all()
    assert 0 < size.loc["top-K* eps=0.001, 8 validation", "max_abs_error"] <= 1e-3
    sampled = size.loc["valid_sample=10, eps=0.001"]
    assert sampled["max_abs_error"] > 0 and 0 < sampled["coverage_1.96"] <= 1
    cli = pd.read_csv(out / "cli.csv")
    assert sorted(cli["method"]) == ["knn", "oob"] and (cli["n_train"] == 160).all()
    assert cli.set_index("method").loc["oob", "models"] >= 8
    evals = pd.read_csv(out / "per_evaluation.csv")
    assert set(evals["n"]) == {200, 400} and (evals["seconds_per_eval"] > 0).all()
    assert set(record["slopes"]) == {"oob", "banzhaf"}
    assert main(["bench", "--preset", "scale-quick", "--methods", "knn", "--out",
                 str(out), "--quiet"]) == 2
