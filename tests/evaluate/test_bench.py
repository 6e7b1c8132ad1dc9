"""`valuate bench --quick`: the CI preset runs end to end and writes its tidy table."""

import subprocess
import sys

import pandas as pd

from valuate.bench import PRESETS


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
