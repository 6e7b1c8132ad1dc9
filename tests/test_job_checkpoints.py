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
    save, saves = valuation.runner.save_checkpoint, []

    def killed_after_two_saves(*args):
        save(*args)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the second checkpoint

    monkeypatch.setattr(valuation.runner, "save_checkpoint", killed_after_two_saves)
    assert main(["value", csv, *ARGS, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"checkpoints in {out}.job/" in err and "run the same command again" in err
    assert (tmp_path / "values.csv.job" / "checkpoint.npz").exists() and not out.exists()
    monkeypatch.setattr(valuation.runner, "save_checkpoint", save)
    assert main(["value", csv, *ARGS, "--out", str(out), "--quiet"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(tmp_path / "straight.csv"))
    with open(f"{out}.json") as f:
        assert json.load(f)["extra"]["resumed"] is True
    assert not (tmp_path / "values.csv.job").exists()  # removed once the table is written
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data.csv", "straight.csv", "straight.csv.json", "values.csv", "values.csv.json"]


def test_a_checkpoint_from_older_code_is_refused_with_one_clear_error(tmp_path, csv, capsys):
    job, out = tmp_path / "job", tmp_path / "values.csv"
    args = ["value", csv, "--label", "target", "--method", "oob", "--budget", "16",
            "--batch", "8", "--job-dir", str(job), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "first.csv")]) == 0
    checkpoint = job / "checkpoint.npz"
    with np.load(checkpoint) as z:  # Data-OOB before host-side draws wrote no version
        assert str(z["version"]) == "data_oob/2"
        old = {k: z[k] for k in z.files if k != "version"}
    np.savez(checkpoint, **old)
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this is data_oob/2: their draws may differ" in err[0]
    assert "delete the job folder" in err[0] and "a fresh --job-dir" in err[0]
    assert not out.exists()
