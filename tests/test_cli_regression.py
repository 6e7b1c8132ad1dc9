"""Regression targets through the command line: task inference, the default ridge target,
R^2, the sidecar's record and categories, for every method that accepts a regression target."""

import json

import numpy as np
import pandas as pd
import pytest

from valuate.cli import main


def _diabetes_like(n=80, corrupt=8, seed=0):
    """Real-valued target (not whole numbers) linear in 4 features plus noise; the first
    `corrupt` rows (in file order) get their target pushed 6 standard deviations away."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = 150 + 40 * (x @ np.array([1.0, -0.5, 0.8, 0.0])) + rng.normal(0, 10, n)
    y[:corrupt] += 6 * y.std() * np.where(np.arange(corrupt) % 2, 1, -1)
    frame = pd.DataFrame(x, columns=["age", "bmi", "bp", "s1"]).assign(y=np.round(y, 2))
    return frame.assign(rid=[f"r{i:03d}" for i in range(n)])


def _run(tmp_path, method, *extra):
    _diabetes_like().to_csv(tmp_path / "diabetes.csv", index=False)
    out = tmp_path / f"{method}.csv"
    code = main(["value", str(tmp_path / "diabetes.csv"), "--label", "y", "--id-column", "rid",
                 "--method", method, "--out", str(out), "--quiet", *extra])
    assert code == 0
    with open(str(out) + ".json") as f:
        return pd.read_csv(out), json.load(f)


@pytest.mark.parametrize("method,extra", [
    pytest.param("loo", (), marks=pytest.mark.slow), ("knn", ()),
    pytest.param("oob", ("--budget", "128"), marks=pytest.mark.slow)])
def test_regression_values_end_to_end(tmp_path, method, extra):
    frame, sidecar = _run(tmp_path, method, *extra)
    assert sidecar["task"] == "regression" and sidecar["model"] == "linear"
    assert sidecar["metric"] == "r2" and sidecar["input"]["task"] == "auto"
    assert sidecar["target_scaling"]["std"] > 0
    valued = frame[frame["category"] != "validation"]
    assert len(valued) == 64 and np.isfinite(valued["value"]).all()
    assert valued["value"].std() > 0
    corrupted = valued["id"].isin([f"r{i:03d}" for i in range(8)])
    # rows whose targets were pushed far off are worth less than the clean ones
    assert valued.loc[corrupted, "value"].mean() < valued.loc[~corrupted, "value"].mean()
    if method == "oob":  # minus squared errors against the mean predictor's (target variance)
        assert sidecar["categories"]["reference"] == pytest.approx(-1.0, abs=1e-6)
        assert (valued.loc[corrupted, "category"] == "harmful").all()


@pytest.mark.slow
@pytest.mark.parametrize("method,budget", [("tmc", "320"), ("banzhaf", "512")])
def test_monte_carlo_regression_values_end_to_end(tmp_path, method, budget):
    frame, sidecar = _run(tmp_path, method, "--budget", budget)
    assert sidecar["task"] == "regression" and sidecar["metric"] == "r2"
    valued = frame[frame["category"] != "validation"]
    assert np.isfinite(valued["value"]).all() and (valued["stderr"] > 0).all()
    corrupted = valued["id"].isin([f"r{i:03d}" for i in range(8)])
    assert valued.loc[corrupted, "value"].mean() < valued.loc[~corrupted, "value"].mean()


def test_task_regression_takes_whole_numbers_as_a_target(tmp_path):
    frame = _diabetes_like().assign(y=lambda f: np.round(f["y"]))  # whole numbers
    frame.to_csv(tmp_path / "whole.csv", index=False)
    argv = ["value", str(tmp_path / "whole.csv"), "--label", "y", "--id-column", "rid",
            "--method", "knn", "--out", str(tmp_path / "v.csv"), "--quiet"]
    assert main(argv) == 2  # 80 distinct whole numbers: ambiguous, refused
    assert main(argv + ["--task", "regression", "--metric", "neg_mse"]) == 0
    with open(tmp_path / "v.csv.json") as f:
        sidecar = json.load(f)
    assert sidecar["task"] == "regression" and sidecar["metric"] == "neg_mse"
    assert sidecar["input"]["task"] == "regression"


def test_meta_learning_refuses_a_regression_target_in_one_line(tmp_path, capsys):
    _run(tmp_path, "knn")
    capsys.readouterr()
    code = main(["fit-meta", str(tmp_path / "knn.csv"), "--out", str(tmp_path / "meta.npz")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "for classification targets" in lines[0]
    assert not (tmp_path / "meta.npz").exists()
    _diabetes_like().to_csv(tmp_path / "d.csv", index=False)
    assert main(["value", str(tmp_path / "d.csv"), "--label", "y", "--method", "rater",
                 "--out", str(tmp_path / "r.csv"), "--quiet"]) == 2
    assert "for classification targets" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [("influence", ()), ("dynamics", ()),
                                          ("loo", ("--model", "mlp"))])
def test_influence_dynamics_and_the_mlp_regressor_through_the_cli(tmp_path, method, extra):
    frame, sidecar = _run(tmp_path, method, *extra)
    assert sidecar["task"] == "regression"
    assert sidecar["model"] == ("mlp" if extra else "linear")
    valued = frame[frame["category"] != "validation"]
    assert np.isfinite(valued["value"]).all()
    corrupted = valued["id"].isin([f"r{i:03d}" for i in range(8)])
    assert valued.loc[corrupted, "value"].mean() < valued.loc[~corrupted, "value"].mean()
    if method == "dynamics":  # minus the loss against the mean predictor's, var / 2
        assert sidecar["method"] == "dynamics_loss"
        assert sidecar["categories"]["reference"] == pytest.approx(-0.5, abs=1e-6)


def test_a_validation_file_takes_the_training_files_task(tmp_path):
    frame = _diabetes_like()
    frame.iloc[:60].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[60:].assign(y=lambda f: np.round(f["y"])).to_csv(tmp_path / "valid.csv",
                                                                 index=False)
    assert main(["value", str(tmp_path / "train.csv"), "--label", "y", "--id-column", "rid",
                 "--valid", str(tmp_path / "valid.csv"), "--method", "knn", "--out",
                 str(tmp_path / "v.csv"), "--quiet"]) == 0
    with open(tmp_path / "v.csv.json") as f:
        sidecar = json.load(f)
    assert sidecar["task"] == "regression" and sidecar["input"]["n_valid"] == 20
