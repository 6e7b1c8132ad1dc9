"""The command line: values table, sidecar, categories, resumable jobs and one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from split_helpers import small_table

from valuate.cli import main
from valuate.demo import run_demo
from valuate.table import categorize, values_frame
from valuation import ValuationResult
from valuation.evaluate.rank_correlation import spearman

VALUATE = [sys.executable, "-m", "valuate"]


_table = small_table


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
                                  "--method", "loo", "--no-encode",
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


def _cli(*args, check=True):
    proc = subprocess.run(VALUATE + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _sidecar(path):
    with open(f"{path}.json") as f:
        return json.load(f)


def test_end_to_end_csv_with_held_out_validation(tmp_path, csv):
    out = tmp_path / "values.csv"
    _cli("value", csv, "--label", "target", "--id-column", "rid", "--method", "banzhaf",
         "--budget", "64", "--batch", "32", "--valid-fraction", "0.25", "--seed", "3",
         "--out", out, "--quiet")
    frame, source = pd.read_csv(out), pd.read_csv(csv)
    assert frame["id"].tolist() == source["rid"].tolist()  # every input row, input order
    assert list(frame.columns) == ["id", "value", "stderr", "count", "rank", "category"]
    held = frame["category"] == "validation"
    assert held.sum() == 10 and frame.loc[held, "value"].isna().all()
    valued = frame[~held]
    assert (valued["count"] > 0).all() and np.isfinite(valued["value"]).all()
    assert sorted(valued["rank"].astype(int)) == list(range(1, 31))
    assert set(valued["category"]) <= {"harmful", "useless", "useful"}
    meta = _sidecar(out)
    assert meta["method"] == "msr_banzhaf" and meta["seed"] == 3
    assert meta["extra"]["evaluations"] == 64 and meta["extra"]["stopping_reason"]
    assert meta["input"]["rows"] == 40 and meta["input"]["n_train"] == 30
    assert meta["categories"]["validation"] == 10 and meta["categories"]["z"] == 1.96
    assert {"jax", "numpy", "valuate"} <= set(meta["versions"])
    assert meta["timings"]["value_s"] > 0


def test_end_to_end_parquet_with_validation_file(tmp_path):
    train, valid = tmp_path / "train.parquet", tmp_path / "valid.parquet"
    _table(30, seed=1).to_parquet(train, index=False)
    _table(20, seed=2).to_parquet(valid, index=False)
    out = tmp_path / "values.parquet"
    _cli("value", train, "--label", "target", "--id-column", "rid", "--valid", valid,
         "--method", "loo", "--metric", "neg_log_loss", "--out", out, "--quiet")
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == pd.read_parquet(train)["rid"].tolist()
    assert (frame["count"] == 1).all() and (frame["stderr"] == 0).all()
    # Exact method: the sign alone decides the category.
    np.testing.assert_array_equal(frame["category"] == "useful", frame["value"] > 0)
    meta = _sidecar(out)
    assert meta["method"] == "leave_one_out"
    assert meta["params"]["utility"]["metric"] == "neg_log_loss"
    assert meta["input"]["n_valid"] == 20 and meta["categories"]["validation"] == 0


def test_unknown_method_lists_the_choices(tmp_path, csv, capsys):
    code, lines = _error(capsys, ["value", csv, "--label", "target", "--method", "shapely",
                                  "--out", str(tmp_path / "v.csv")])
    assert code == 2 and len(lines) == 1
    assert "unknown method 'shapely'" in lines[0] and "tmc" in lines[0]
    assert not (tmp_path / "v.csv").exists()


def test_sigkill_then_resume_gives_the_uninterrupted_values(tmp_path, csv):
    args = ["value", csv, "--label", "target", "--id-column", "rid", "--method", "banzhaf",
            "--budget", "1200", "--batch", "16", "--seed", "7", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "straight.csv")]) == 0  # uninterrupted
    job, out = tmp_path / "job", tmp_path / "resumed.csv"
    command = VALUATE + [str(a) for a in args] + ["--out", str(out), "--job-dir", str(job)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = job / "checkpoint.npz"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # kill between or during the next checkpoint writes
    proc.kill()  # SIGKILL
    assert proc.wait() == -signal.SIGKILL, "the job ended before it could be killed"
    assert checkpoint.exists() and not out.exists()
    _cli(*command[len(VALUATE):])
    straight, resumed = pd.read_csv(tmp_path / "straight.csv"), pd.read_csv(out)
    pd.testing.assert_frame_equal(straight, resumed)  # bit for bit
    meta = _sidecar(out)
    assert meta["extra"]["resumed"] is True
    assert meta["extra"]["evaluations"] == _sidecar(tmp_path / "straight.csv")["extra"][
        "evaluations"] == 1200


def test_demo_writes_its_table_and_finds_flipped_labels(tmp_path):
    out = tmp_path / "demo.csv"
    lines = []
    result, summary = run_demo(str(out), dataset="wine", echo=lines.append)
    frame = pd.read_csv(out)
    assert frame["id"].tolist() == result.ids.tolist()
    assert set(frame["category"]) <= {"harmful", "useless", "useful"}
    assert summary["f1"] > 3 * summary["random_f1"] and summary["auroc"] > 0.9
    assert any(line.startswith("most harmful") for line in lines)
    assert _sidecar(out)["method"] == summary["method"] == "data_oob"
    # The file alone re-checks the F1: flag the lowest values, as many as were flipped.
    from valuation.evaluate.noisy_labels import detection_f1
    assert frame["flipped"].sum() == summary["n_flipped"] and "label" in frame
    assert detection_f1(frame["value"].to_numpy(), frame["flipped"].to_numpy()) == summary["f1"]


def test_fit_meta_needs_a_values_sidecar(tmp_path, csv, capsys):
    values = tmp_path / "values.csv"
    pd.DataFrame({"id": ["a"], "value": [0.1]}).to_csv(values, index=False)
    code, lines = _error(capsys, ["fit-meta", str(values), "--out", str(tmp_path / "m.npz")])
    assert code == 2 and len(lines) == 1 and "values.csv.json' is missing" in lines[0]
    code, lines = _error(capsys, ["predict", csv, "--meta", str(tmp_path / "m.npz"),
                                  "--out", str(tmp_path / "p.csv")])
    assert code == 2 and len(lines) == 1 and "m.npz.job.json' is missing" in lines[0]


@pytest.fixture(scope="module")
def fitted_meta(tmp_path_factory):
    """`valuate value` (KNN-Shapley) then `fit-meta` on a 120-row table with string ids."""
    tmp = tmp_path_factory.mktemp("meta")
    data, values, meta = tmp / "data.csv", tmp / "v.csv", tmp / "meta.npz"
    _table(120, seed=0).to_csv(data, index=False)
    assert main(["value", str(data), "--label", "target", "--id-column", "rid", "--method",
                 "knn", "--out", str(values), "--quiet"]) == 0
    assert main(["fit-meta", str(values), "--out", str(meta), "--members", "2", "--steps",
                 "200", "--quiet"]) == 0
    return tmp, data, values, meta


def _predict(meta, table, out, *flags):
    return main(["predict", str(table), "--meta", str(meta), "--out", str(out), "--quiet",
                 *flags])


def test_predict_matches_rows_by_content_and_columns_by_name(fitted_meta, capsys):
    tmp, _, _, meta = fitted_meta
    # New rows whose ids collide with training ids (row000..row029) but not their content.
    new = _table(30, seed=5)
    new.to_parquet(tmp / "new.parquet", index=False)
    code, lines = _error(capsys, ["predict", str(tmp / "new.parquet"), "--meta", str(meta),
                                  "--out", str(tmp / "p.csv"), "--quiet"])
    assert code == 2 and len(lines) == 1
    assert "rows carry the id of a training row but not its content" in lines[0]
    assert _predict(meta, tmp / "new.parquet", tmp / "p.csv", "--id-conflict", "new") == 0
    as_new = pd.read_csv(tmp / "p.csv")
    assert as_new["id"].tolist() == new["rid"].tolist()
    assert np.isfinite(as_new["value"]).all() and (as_new["count"] == 2).all()
    assert _sidecar(tmp / "p.csv")["method"] == "meta_knn_shapley"
    # The same rows without an id column (numbered), or under fresh ids: the same values.
    new.drop(columns="rid").to_csv(tmp / "noid.csv", index=False)
    assert _predict(meta, tmp / "noid.csv", tmp / "q.csv") == 0
    np.testing.assert_array_equal(pd.read_csv(tmp / "q.csv")["value"], as_new["value"])
    # Reordered columns: identical values.
    new[["target", "f2", "rid", "f0", "f1"]].to_csv(tmp / "shuffled.csv", index=False)
    assert _predict(meta, tmp / "shuffled.csv", tmp / "r.csv", "--id-conflict", "new") == 0
    np.testing.assert_array_equal(pd.read_csv(tmp / "r.csv")["value"], as_new["value"])
    # Missing and extra columns: one error naming them.
    new.drop(columns="f1").assign(f9=1.0).to_csv(tmp / "bad.csv", index=False)
    code, lines = _error(capsys, ["predict", str(tmp / "bad.csv"), "--meta", str(meta),
                                  "--out", str(tmp / "s.csv")])
    assert code == 2 and len(lines) == 1 and "['f1']" in lines[0] and "['f9']" in lines[0]
    # A label column given by name.
    new.rename(columns={"target": "y"}).to_csv(tmp / "renamed.csv", index=False)
    assert _predict(meta, tmp / "renamed.csv", tmp / "t.csv", "--label", "y",
                    "--id-conflict", "new") == 0
    np.testing.assert_array_equal(pd.read_csv(tmp / "t.csv")["value"], as_new["value"])


def test_predict_on_the_training_table_reads_the_training_rows(fitted_meta):
    """Training rows are recognised by content (their own fold's features), in any row order
    and without ids; the predictions track the values they were fitted to."""
    tmp, data, values, meta = fitted_meta
    assert _predict(meta, data, tmp / "own.csv") == 0
    table = pd.read_csv(data)
    shuffled = table.sample(frac=1.0, random_state=1).drop(columns="rid")
    shuffled.to_csv(tmp / "anon.csv", index=False)
    assert _predict(meta, tmp / "anon.csv", tmp / "anon_pred.csv") == 0
    own = pd.read_csv(tmp / "own.csv").set_index("id")["value"]
    anon = pd.read_csv(tmp / "anon_pred.csv")["value"].to_numpy()
    np.testing.assert_allclose(anon, own.loc[table["rid"].iloc[shuffled.index]].to_numpy(),
                               rtol=1e-5, atol=1e-7)
    valued = pd.read_csv(values).dropna(subset=["value"])
    again = own.loc[valued["id"]].to_numpy()
    assert spearman(again, valued["value"].to_numpy()) > 0.5
