"""`valuate value`: `--budget` spent exactly (never thousands of models for `--budget 10`),
the game chosen by `--degenerate` and TMC's truncation summary recorded in the sidecar."""

import json

import pytest
from split_helpers import small_table

from valuate.cli import main


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "data.csv"
    small_table().to_csv(path, index=False)
    return str(path)


def _value(csv, out, *args):
    return main(["value", csv, "--label", "target", "--id-column", "rid", "--out", str(out),
                 "--quiet", *map(str, args)])


def _sidecar(out):
    with open(f"{out}.json") as f:
        return json.load(f)


def test_a_budget_of_ten_spends_ten(tmp_path, csv, capsys):
    out = tmp_path / "values.csv"
    assert _value(csv, out, "--method", "tmc", "--budget", 10) == 0
    meta = _sidecar(out)
    assert meta["extra"]["evaluations"] == 10 and meta["extra"]["draws"] == 0
    assert any("completed no draw" in w for w in meta["warnings"])
    assert "completed no draw" in capsys.readouterr().err


def test_the_zero_game_and_the_truncation_summary_are_recorded(tmp_path, csv):
    out = tmp_path / "values.csv"
    assert _value(csv, out, "--method", "tmc", "--budget", 97, "--batch", 2,
                  "--degenerate", "zero") == 0
    meta = _sidecar(out)
    assert meta["params"]["utility"]["degenerate"] == "zero"
    assert meta["extra"]["evaluations"] == 97
    summary = meta["extra"]["truncation"]
    assert summary["permutations"] == meta["extra"]["draws"] > 0
    assert "positions" not in summary  # the per-permutation list stays in the result


def test_degenerate_only_applies_to_subset_scoring_methods(tmp_path, csv, capsys):
    assert _value(csv, tmp_path / "v.csv", "--method", "knn", "--degenerate", "zero") == 2
    assert "--degenerate only changes" in capsys.readouterr().err
