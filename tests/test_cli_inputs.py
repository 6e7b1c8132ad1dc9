"""`valuate value` on hostile and messy input: one clear line and exit 2, never a traceback
or a silently wrong answer; text and missing values encoded; columns matched by name."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from split_helpers import small_table

from valuate.cli import main
from valuate.job import file_sha256
from valuation import make_classification
from valuation.evaluate.noisy_labels import detection_f1

_table = small_table


def _set(frame, column, row, value):
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


def _base(tmp):
    return {"data": tmp / "data.csv", "--label": "target", "--id-column": "rid",
            "--method": "knn", "--out": tmp / "values.csv"}


# name -> (table of DATA or None for the default, table of --valid or None, argument changes)
BAD = {
    "no such file": (None, None, {"data": "missing.csv"}),
    "unknown file type": (None, None, {"data": "data.json"}),
    "empty file": ("", None, {}),
    "directory as data": (None, None, {"data": "folder.csv"}),
    "no such label": (None, None, {"--label": "nope"}),
    "no such id column": (None, None, {"--id-column": "nope"}),
    "output suffix": (None, None, {"--out": "values.txt"}),
    "output folder missing": (None, None, {"--out": "no/such/values.csv"}),
    "output is the data": (None, None, {"--out": "data.csv"}),
    "output is the validation file": (None, _table(20, 1), {"--out": "valid.csv"}),
    "unknown model": (None, None, {"--model": "forest"}),
    "unknown method": (None, None, {"--method": "magic"}),
    "unknown metric": (None, None, {"--method": "loo", "--metric": "f1"}),
    "valid fraction above 1": (None, None, {"--valid-fraction": "1.5"}),
    "valid fraction 0": (None, None, {"--valid-fraction": "0"}),
    "budget 0": (None, None, {"--method": "banzhaf", "--budget": "0"}),
    "budget with knn": (None, None, {"--budget": "100"}),
    "job dir with knn": (None, None, {"--job-dir": "job"}),
    "batch with loo": (None, None, {"--method": "loo", "--batch": "8"}),
    "valid misses a column": (None, _table(20, 1).drop(columns="f2"), {}),
    "valid renames a column": (None, _table(20, 1).rename(columns={"f1": "g1"}), {}),
    "valid has an extra column": (None, _table(20, 1).assign(f3=1.0), {}),
    "valid has an unseen class": (None, _set(_table(20, 1), "target", 0, "maybe"), {}),
    "header only": (_table().iloc[:0], None, {}),
    "ambiguous whole-number labels": (_table(60).assign(target=np.arange(60) % 30 + 100),
                                      None, {}),
    "logreg on a regression target": (_table().assign(target=np.linspace(0, 1, 40)), None,
                                      {"--model": "logreg"}),
    "text labels as a regression target": (None, None, {"--task": "regression"}),
    "balance on a regression target": (_table().assign(target=np.linspace(0, 1, 40)), None,
                                       {"--balance": "on"}),
    "one class": (_table().assign(target="yes"), None, {}),
    "missing label": (_set(_table(), "target", 3, np.nan), None, {}),
    "duplicate ids": (_set(_table(), "rid", 3, "row000"), None, {}),
    "float32 overflow": (_set(_table(), "f1", 3, 1e300), None, {}),
    "infinite value": (_set(_table(), "f1", 3, np.inf), None, {}),
    "number column with a typo": (_set(_table(), "f1", 3, "1.2.3"), None, {}),
    "text with --no-encode": (_set(_table(), "f1", 3, "text"), None, {"--no-encode": None}),
    "NaN with --no-encode": (_set(_table(), "f2", 3, np.nan), None, {"--no-encode": None}),
}


# What the line must say where a vaguer one was given before.
SAYS = {
    "output is the data": "is the input file",
    "output is the validation file": "is the input file",
    "budget with knn": "only apply to the Monte Carlo methods",
    "job dir with knn": "only apply to the Monte Carlo methods",
    "valid misses a column": "missing columns ['f2']",
    "valid renames a column": "missing columns ['f1']; columns the model was not trained on ['g1']",
    "header only": "header (5 columns) but no rows",
    "ambiguous whole-number labels": "looks like a regression target",
    "logreg on a regression target": "--model logreg does not fit a regression target",
    "text labels as a regression target": "regression targets must be numbers",
    "balance on a regression target": "regression target: drop --balance",
    "float32 overflow": "exceed the float32 range",
    "number column with a typo": "column 'f1' holds",
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, name):
    data, valid, changes = BAD[name]
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "data.json").write_text("{}")
    path = tmp_path / "data.csv"
    if isinstance(data, str):
        path.write_text(data)
    else:
        (_table() if data is None else data).to_csv(path, index=False)
    args = _base(tmp_path)
    if valid is not None:
        valid.to_csv(tmp_path / "valid.csv", index=False)
        args["--valid"] = tmp_path / "valid.csv"
    for key, value in changes.items():
        args[key] = value if key.startswith("--") and key != "--out" else tmp_path / value
    before = path.read_bytes()
    argv = ["value", str(args.pop("data"))]
    for key, value in args.items():
        argv += [key] if value is None else [key, str(value)]
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("valuate: error: "), lines
    assert SAYS.get(name, "") in lines[0]
    assert path.read_bytes() == before  # the input is never touched
    assert not (tmp_path / "values.csv").exists()


def test_the_list_of_bad_inputs_is_long():
    assert len(BAD) >= 30


def _value(tmp_path, data, *extra, out="values.csv"):
    code = main(["value", str(data), "--label", "target", "--id-column", "rid",
                 "--out", str(tmp_path / out), "--quiet", *map(str, extra)])
    assert code == 0
    with open(tmp_path / (out + ".json")) as f:
        return pd.read_csv(tmp_path / out), json.load(f)


def test_valid_columns_are_matched_by_name(tmp_path):
    """A validation file with the training columns in another order gives the same values
    (matched by position it gave anti-correlated ones)."""
    _table().to_csv(tmp_path / "data.csv", index=False)
    valid = _table(30, seed=1)
    valid.to_csv(tmp_path / "valid.csv", index=False)
    valid[["f2", "target", "f0", "rid", "f1"]].to_csv(tmp_path / "shuffled.csv", index=False)
    for encode in ([], ["--no-encode"]):
        plain, _ = _value(tmp_path, tmp_path / "data.csv", "--method", "knn", "--valid",
                          tmp_path / "valid.csv", *encode, out="a.csv")
        shuffled, _ = _value(tmp_path, tmp_path / "data.csv", "--method", "knn", "--valid",
                             tmp_path / "shuffled.csv", *encode, out="b.csv")
        pd.testing.assert_frame_equal(plain, shuffled)


def test_ambiguous_whole_numbers_need_a_task(tmp_path, capsys):
    frame = _table(100).assign(target=np.arange(100) % 25 + 100)  # 25 whole-number values
    frame.to_csv(tmp_path / "data.csv", index=False)
    assert main(["value", str(tmp_path / "data.csv"), "--label", "target", "--method", "knn",
                 "--out", str(tmp_path / "v.csv")]) == 2
    line = capsys.readouterr().err.strip()
    assert "--task regression" in line and "--task classification" in line
    _, sidecar = _value(tmp_path, tmp_path / "data.csv", "--method", "knn", "--task",
                        "classification")
    assert sidecar["input"]["task"] == "classification"


def test_loo_with_flat_accuracy_says_so_and_suggests_log_loss(tmp_path, capsys):
    _table().to_csv(tmp_path / "data.csv", index=False)
    frame, sidecar = _value(tmp_path, tmp_path / "data.csv", "--method", "loo")
    assert frame["value"].dropna().eq(0).all()  # one row never flips a prediction here
    (warning,) = sidecar["warnings"]
    assert "all 32 values equal 0" in warning and "--metric neg_log_loss" in warning
    assert "--metric neg_log_loss" in capsys.readouterr().err  # printed even with --quiet
    _, sidecar = _value(tmp_path, tmp_path / "data.csv", "--method", "loo", "--metric",
                        "neg_log_loss", out="w.csv")
    assert sidecar["warnings"] == []


def test_no_error_bars_are_not_taken_for_certainty(tmp_path):
    """Dynamics' seeds agree exactly (stderr 0): the sidecar and a warning say that the
    categories come from the sign alone."""
    _table().to_csv(tmp_path / "data.csv", index=False)
    frame, sidecar = _value(tmp_path, tmp_path / "data.csv", "--method", "dynamics")
    assert frame["stderr"].dropna().eq(0).all()
    assert sidecar["categories"]["rule"].startswith("no error bars")
    assert any("no error bar" in w for w in sidecar["warnings"])


def test_outputs_follow_the_umask(tmp_path):
    _table().to_csv(tmp_path / "data.csv", index=False)
    old = os.umask(0o027)
    try:
        _value(tmp_path, tmp_path / "data.csv", "--method", "knn")
    finally:
        os.umask(old)
    for name in ("values.csv", "values.csv.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640


def test_fit_meta_refuses_data_that_changed_since_it_was_valued(tmp_path, capsys):
    _table().to_csv(tmp_path / "data.csv", index=False)
    _, sidecar = _value(tmp_path, tmp_path / "data.csv", "--method", "knn")
    assert sidecar["input"]["sha256"] == file_sha256(tmp_path / "data.csv")
    _set(_table(), "f0", 0, 9.0).to_csv(tmp_path / "data.csv", index=False)
    assert main(["fit-meta", str(tmp_path / "values.csv"), "--out",
                 str(tmp_path / "m.npz")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "contents changed" in lines[0]


def test_version_and_method_descriptions(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("valuate 0.")
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 9 and all(len(line.split()) > 5 for line in listing)
    with pytest.raises(SystemExit):
        main(["value", "--help"])
    assert "KNN-Shapley" in capsys.readouterr().out


def _penguins(n=120, seed=0):
    """Penguin-like rows: a text column, a category column with a rare tail, missing
    numbers and missing text; species depends on the text and the numbers."""
    rng = np.random.default_rng(seed)
    species = np.array(["Adelie", "Gentoo", "Chinstrap"])[rng.integers(0, 3, n)]
    island = np.where(species == "Gentoo", "Biscoe", rng.choice(["Dream", "Torgersen"], n))
    mass = 3500 + 1200 * (species == "Gentoo") + rng.normal(0, 300, n)
    bill = 39 + 9 * (species == "Chinstrap") + rng.normal(0, 2, n)
    frame = pd.DataFrame({"rid": [f"p{i}" for i in range(n)], "island": island,
                          "bill_mm": bill, "mass_g": mass,
                          "sex": rng.choice(["male", "female"], n),
                          "tag": [f"t{i % 40}" for i in range(n)], "species": species})
    frame.loc[rng.choice(n, 6, replace=False), "bill_mm"] = np.nan
    frame.loc[rng.choice(n, 5, replace=False), "sex"] = None
    return frame


def test_text_and_missing_values_are_encoded_by_default(tmp_path):
    """A penguins-like table values end to end; the encoding is fitted on the training
    rows, recorded, and applied by name to a reordered validation file."""
    _penguins().to_csv(tmp_path / "data.csv", index=False)
    valid = _penguins(60, seed=1)
    valid.to_csv(tmp_path / "valid.csv", index=False)
    valid[valid.columns[::-1]].to_csv(tmp_path / "reordered.csv", index=False)
    args = ["--label", "species", "--id-column", "rid", "--method", "knn", "--quiet"]
    assert main(["value", str(tmp_path / "data.csv"), *args, "--out",
                 str(tmp_path / "v.csv")]) == 0
    frame = pd.read_csv(tmp_path / "v.csv")
    assert frame["id"].tolist() == _penguins()["rid"].tolist()  # every row, input order
    with open(tmp_path / "v.csv.json") as f:
        columns = {c["name"]: c for c in json.load(f)["encoding"]["columns"]}
    assert columns["bill_mm"]["indicator"] and columns["sex"]["indicator"]
    assert columns["tag"]["other"] and len(columns["tag"]["categories"]) == 19
    for name in ("a.csv", "b.csv"):
        source = "valid.csv" if name == "a.csv" else "reordered.csv"
        assert main(["value", str(tmp_path / "data.csv"), *args, "--valid",
                     str(tmp_path / source), "--out", str(tmp_path / name)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv"),
                                  pd.read_csv(tmp_path / "b.csv"))


def _imbalanced(seed, n=500, share=0.08, flip=0.15):
    """8 % minority rows, hard to separate (centres 1.5 sd apart); 15 % of the minority rows
    and as many majority rows flipped, so the class shares stay put. Returns the table and
    the flipped mask."""
    data = make_classification(4000, 5, seed=seed, separation=1.5)
    rng = np.random.default_rng(seed)
    rows = rng.permutation(np.r_[
        rng.choice(np.flatnonzero(data.y == 0), n - int(n * share), replace=False),
        rng.choice(np.flatnonzero(data.y == 1), int(n * share), replace=False)])
    x, y = data.x[rows], data.y[rows].copy()
    k = round(flip * n * share)
    chosen = np.r_[rng.choice(np.flatnonzero(y == 1), k, replace=False),
                   rng.choice(np.flatnonzero(y == 0), k, replace=False)]
    y[chosen] = 1 - y[chosen]
    frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(x.shape[1])])
    frame["target"], frame["rid"] = np.array(["no", "yes"])[y], [f"r{i}" for i in range(n)]
    return frame, np.isin(np.arange(n), chosen)


@pytest.mark.parametrize("method, budget", [
    ("oob", None), pytest.param("banzhaf", 2048, marks=pytest.mark.slow)])
def test_imbalanced_classes_are_balanced_and_said(tmp_path, capsys, method, budget):
    """With plain accuracy almost every clean minority row comes out harmful (26 of 26 for
    Data-OOB, 15 of 26 for Banzhaf); balanced by default, few do, and the flipped labels are
    found at least as well (F1 0.27 = 0.27 Data-OOB; 0.18 against 0.00 Banzhaf)."""
    frame, flipped = _imbalanced(0)
    frame.to_csv(tmp_path / "data.csv", index=False)
    extra = ["--method", method] + (["--budget", budget] if budget else [])
    runs = {}
    for balance in ("off", "auto"):
        table, sidecar = _value(tmp_path, tmp_path / "data.csv", *extra, "--balance", balance,
                                out=f"{balance}.csv")
        valued = (table["category"] != "validation").to_numpy()
        clean_minority = (frame["target"] == "yes").to_numpy() & ~flipped & valued
        harmful = (table["category"] == "harmful").to_numpy()
        runs[balance] = (harmful[clean_minority].mean(),
                         detection_f1(table["value"].to_numpy()[valued], flipped[valued]),
                         sidecar)
    assert runs["off"][0] > 0.5 and runs["auto"][0] < 0.25
    assert runs["auto"][1] >= runs["off"][1]
    balance = runs["auto"][2]["balance"]
    assert balance["imbalanced"] and balance["applied"]
    assert balance["metric"] == "balanced_accuracy" == runs["auto"][2]["metric"]
    assert balance["class_weight"] == ("balanced" if method == "oob" else None)
    assert "imbalanced classes: 'yes' holds 8.0 %" in capsys.readouterr().err
    assert "drop --balance off" in runs["off"][2]["warnings"][0]


@pytest.mark.slow
def test_penguins_like_value_fit_meta_predict_reuses_the_encoding(tmp_path):
    """fit-meta rebuilds the encoded training set; predict encodes new rows (text, missing
    values, an unseen island, columns in another order) with the recorded encoding."""
    _penguins().to_csv(tmp_path / "data.csv", index=False)
    new = _penguins(30, seed=2).assign(rid=[f"new{i}" for i in range(30)])
    new.loc[0, "island"] = "Nowhere"
    new.to_csv(tmp_path / "new.csv", index=False)
    new[new.columns[::-1]].to_csv(tmp_path / "new-reordered.csv", index=False)
    assert main(["value", str(tmp_path / "data.csv"), "--label", "species", "--id-column",
                 "rid", "--method", "knn", "--out", str(tmp_path / "v.csv"), "--quiet"]) == 0
    assert main(["fit-meta", str(tmp_path / "v.csv"), "--out", str(tmp_path / "m.npz"),
                 "--members", "2", "--steps", "200", "--quiet"]) == 0
    for source in ("new.csv", "new-reordered.csv"):
        assert main(["predict", str(tmp_path / source), "--meta", str(tmp_path / "m.npz"),
                     "--out", str(tmp_path / f"p-{source}"), "--quiet"]) == 0
    first, second = (pd.read_csv(tmp_path / f"p-{s}") for s in ("new.csv",
                                                                  "new-reordered.csv"))
    assert first["id"].tolist() == new["rid"].tolist() and first["value"].notna().all()
    pd.testing.assert_frame_equal(first, second)


def test_fit_meta_finds_a_moved_data_file_by_its_contents(tmp_path, capsys):
    _table().to_csv(tmp_path / "data.csv", index=False)
    _value(tmp_path, tmp_path / "data.csv", "--method", "knn")
    moved = tmp_path / "elsewhere.csv"
    os.rename(tmp_path / "data.csv", moved)
    out = str(tmp_path / "m.npz")
    assert main(["fit-meta", str(tmp_path / "values.csv"), "--out", out, "--quiet"]) == 2
    assert "--data" in capsys.readouterr().err
    _set(_table(), "f0", 0, 9.0).to_csv(tmp_path / "edited.csv", index=False)
    assert main(["fit-meta", str(tmp_path / "values.csv"), "--out", out, "--data",
                 str(tmp_path / "edited.csv"), "--quiet"]) == 2  # other bytes: refused
    assert main(["fit-meta", str(tmp_path / "values.csv"), "--out", out, "--members", "2",
                 "--steps", "50", "--data", str(moved), "--quiet"]) == 0
    assert main(["fit-meta", str(tmp_path / "values.csv"), "--out", out, "--valid-data",
                 str(moved), "--quiet"]) == 2  # no --valid file was used


def test_parquet_read_in_batches_as_float32_gives_the_csv_values(tmp_path, monkeypatch):
    """Parquet is streamed in record batches (here 7 rows each), feature columns as float32,
    ids and column names kept; the values equal the CSV route's to the last bit."""
    from valuation import data

    monkeypatch.setattr(data, "PARQUET_BATCH_ROWS", 7)
    table = _table(60)
    table["f1"] = table["f1"] * 1e5  # a wide range: float32 rounding shows if misapplied
    table.to_csv(tmp_path / "data.csv", index=False, float_format="%.17g")
    table[["f2", "target", "rid", "f0", "f1"]].to_parquet(tmp_path / "data.parquet")
    read = data.read_table(tmp_path / "data.parquet", keep=("target", "rid"))
    assert list(read.columns) == ["f2", "target", "rid", "f0", "f1"]
    assert all(read[c].dtype == np.float32 for c in ("f0", "f1", "f2"))
    assert read["rid"].tolist() == table["rid"].tolist()
    np.testing.assert_array_equal(read["f1"], table["f1"].astype(np.float32))
    from_csv, _ = _value(tmp_path, tmp_path / "data.csv", "--method", "knn", out="a.csv")
    from_parquet, _ = _value(tmp_path, tmp_path / "data.parquet", "--method", "knn",
                             out="b.csv")
    pd.testing.assert_frame_equal(from_csv, from_parquet)


def test_parquet_keeps_float64_ids_and_out_of_range_columns(tmp_path, capsys):
    from valuation import data

    table = _table(20).drop(columns="rid")
    table["fid"] = np.arange(20) + 16_777_217.0  # not representable in float32
    table.to_parquet(tmp_path / "data.parquet")
    read = data.read_table(tmp_path / "data.parquet", keep=("target", "fid"))
    assert read["fid"].dtype == np.float64 and read["fid"].iloc[0] == 16_777_217.0
    table["f0"] = table["f0"].astype(object)
    table.loc[3, "f0"] = 1e39
    table["f0"] = table["f0"].astype(np.float64)
    table.to_parquet(tmp_path / "huge.parquet")
    assert data.read_table(tmp_path / "huge.parquet")["f0"].dtype == np.float64
    code = main(["value", str(tmp_path / "huge.parquet"), "--label", "target", "--method",
                 "knn", "--no-encode", "--out", str(tmp_path / "v.csv"), "--quiet"])
    assert code == 2 and "float32 range" in capsys.readouterr().err
