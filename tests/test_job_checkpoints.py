"""`valuate value` checkpoints Monte Carlo jobs by default, in a folder named on stderr."""

import json

import numpy as np
import pandas as pd
import pytest

import valuation.runner
from valuate.cli import main


@pytest.fixture
def csv(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = rng.normal(size=(40, 3)) + 1.5 * y[:, None]
    path = tmp_path / "data.csv"
    pd.DataFrame({"f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2], "target": y}).to_csv(
        path, index=False)
    return str(path)


ARGS = ["--label", "target", "--method", "banzhaf", "--budget", "96", "--batch", "16",
        "--seed", "5"]


def test_automatic_job_folder_resumes_and_is_removed(tmp_path, csv, capsys, monkeypatch):
    assert main(["value", csv, *ARGS, "--out", str(tmp_path / "straight.csv"),
                 "--quiet"]) == 0
    out = tmp_path / "values.csv"
    save, saves = valuation.runner._save, []

    def killed_after_two_saves(*args):
        save(*args)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the second checkpoint

    monkeypatch.setattr(valuation.runner, "_save", killed_after_two_saves)
    assert main(["value", csv, *ARGS, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"checkpoints in {out}.job/" in err and "run the same command again" in err
    assert (tmp_path / "values.csv.job" / "checkpoint.npz").exists() and not out.exists()
    monkeypatch.setattr(valuation.runner, "_save", save)
    assert main(["value", csv, *ARGS, "--out", str(out), "--quiet"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(tmp_path / "straight.csv"))
    with open(f"{out}.json") as f:
        assert json.load(f)["extra"]["resumed"] is True
    assert not (tmp_path / "values.csv.job").exists()  # removed once the table is written
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data.csv", "straight.csv", "straight.csv.json", "values.csv", "values.csv.json"]
