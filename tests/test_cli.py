"""The command line: values table, sidecar, categories, resumable jobs and one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from valuate.cli import main
from valuate.table import categorize, values_frame
from valuation import ValuationResult

VALUATE = [sys.executable, "-m", "valuate"]


def _table(n=40, seed=0):
    """A small 2-class table with string ids, in a fixed (unsorted) order."""
    rng = np.random.default_rng(seed)
    y = np.array(["yes", "no"])[np.arange(n) % 2]
    x = rng.normal(size=(n, 3)) + 1.5 * (y == "yes")[:, None]
    ids = [f"row{i:03d}" for i in rng.permutation(n)]
    return pd.DataFrame({"rid": ids, "f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2], "target": y})


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "data.csv"
    _table().to_csv(path, index=False)
    return str(path)


def test_categories_by_hand():
    values = np.array([-1.0, -0.1, 0.0, 0.1, 1.0, -0.3, 0.2])
    stderr = np.array([0.1, 0.1, 0.0, 0.0, 0.6, np.inf, 0.1])
    # -1 +/- 0.196 below 0; -0.1 +/- 0.196 straddles; exact 0 useless; exact 0.1 useful;
    # 1 +/- 1.176 straddles; infinite stderr straddles; 0.2 - 0.196 > 0.
    assert categorize(values, stderr).tolist() == [
        "harmful", "useless", "useless", "useful", "useless", "useless", "useful"]
    assert categorize(values, stderr, z=3.0)[6] == "useless"  # 0.2 - 0.3 < 0


def test_values_frame_one_row_per_input_row_in_input_order():
    result = ValuationResult(values=np.array([0.5, -0.5]), stderr=np.array([0.1, 0.1]),
                             counts=np.array([9, 9]), ids=np.array(["c", "a"]), method="m")
    frame = values_frame(result, np.array(["a", "b", "c"]))
    assert frame["id"].tolist() == ["a", "b", "c"]
    assert list(frame.columns) == ["id", "value", "stderr", "count", "rank", "category"]
    assert frame["category"].tolist() == ["harmful", "validation", "useful"]
    assert frame["count"].tolist() == [9, 0, 9]
    assert frame["rank"].iloc[0] == 2 and frame["rank"].iloc[2] == 1
    assert pd.isna(frame["rank"].iloc[1]) and np.isnan(frame["value"].iloc[1])


def _error(capsys, argv):
    """Run the CLI in-process; return (exit code, stderr lines)."""
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("change, expected", [
    ({"data": "missing.csv"}, "does not exist"),
    ({"--label": "nope"}, "label column 'nope' not found"),
    ({"--out": "values.txt"}, "must end in .parquet or .csv"),
    ({"--out": "no/such/folder/values.csv"}, "does not exist; create it"),
    ({"--model": "forest"}, "unknown model 'forest'"),
    ({"--valid-fraction": "1.5"}, "--valid-fraction 1.5"),
])
def test_bad_input_is_one_line_and_nonzero_exit(tmp_path, csv, capsys, change, expected):
    args = {"data": csv, "--label": "target", "--id-column": "rid", "--method": "loo",
            "--out": str(tmp_path / "values.csv"), **change}
    if not os.path.isabs(args["--out"]):
        args["--out"] = str(tmp_path / args["--out"])
    argv = ["value", args.pop("data")] + [a for kv in args.items() for a in kv]
    code, lines = _error(capsys, argv)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("valuate: error:") and expected in lines[0]
    assert not any(p.name.startswith("values") for p in tmp_path.iterdir())


@pytest.mark.parametrize("column, fill, expected", [
    ("f1", "text", "non-numeric feature columns: f1"),
    ("f2", np.nan, "NaN or infinite"),
])
def test_bad_table_contents(tmp_path, capsys, column, fill, expected):
    frame = _table()
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = fill
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    code, lines = _error(capsys, ["value", str(path), "--label", "target", "--id-column", "rid",
                                  "--method", "loo",
                                  "--out", str(tmp_path / "values.csv")])
    assert code == 2 and len(lines) == 1 and expected in lines[0]
    assert not (tmp_path / "values.csv").exists()


def test_unwritable_output_folder(tmp_path, csv, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root ignores permission bits; /sys is read-only for root too
        locked = "/sys"
    code, lines = _error(capsys, ["value", csv, "--label", "target", "--method", "loo",
                                  "--out", os.path.join(locked, "values.csv")])
    assert code == 2 and len(lines) == 1 and "not writable" in lines[0]


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["value", "data.csv", "--method", "loo", "--out", "v.csv"])  # no --label
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--label" in lines[0]
