"""Selection: candidates from values, the choice on one split, its confirmation on another."""

import json

import numpy as np
import pandas as pd
import pytest
from split_helpers import small_table, standardized_split

import valuation as va
from valuate.cli import main
from valuation.selection import candidate_masks, coverage_masks, keep_order


@pytest.fixture(scope="module")
def pool():
    """Well-separated 2-class blobs: 90 clean rows, a harmful block of 15 rows with flipped
    labels and a redundant block of 15 exact duplicates of clean rows: (train, valid,
    harmful ids, duplicate ids, knn values)."""
    train, valid = standardized_split(va.make_classification(300, 4, separation=4.0, seed=3),
                                      fractions=(0.4, 0.6))
    clean = train.subset(np.arange(90))
    flipped = train.subset(np.arange(90, 105))
    flipped = flipped.replace(y=1 - flipped.y, ids=np.array([f"flip{i}" for i in range(15)]))
    dup = clean.subset(np.arange(15)).replace(ids=np.array([f"dup{i}" for i in range(15)]))
    rows = [clean, flipped, dup]
    train = clean.replace(x=np.concatenate([d.x for d in rows]),
                          y=np.concatenate([d.y for d in rows]),
                          ids=np.concatenate([clean.ids, flipped.ids, dup.ids]))
    values = va.value(train, method="knn", valid=valid, progress=False)
    return train, valid, flipped.ids, dup.ids, values


@pytest.fixture(scope="module")
def chosen(pool):
    train, valid, _, _, values = pool
    return va.select(train, valid, values, keep=0.02, draws=200, seed=4)


def test_reliably_harmful_rows_go_first_whatever_their_value():
    values = np.array([0.3, -0.1, -0.5, 0.2])
    stderr = np.array([0.0, 0.01, 1.0, 0.0])  # row 1 is reliably < 0, row 2 is not
    order = keep_order(values, stderr, reference=0.0)
    assert order.tolist() == [0, 3, 2, 1]


def test_coverage_spends_the_budget_exactly_and_keeps_every_class():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [60, 30, 10])
    values = rng.normal(size=100) + 5.0 * y  # class 2 holds the highest values
    masks = coverage_masks(values, np.zeros(100), y, [0.1, 0.3, 0.95], reference=-np.inf,
                           bands=2)
    assert masks.sum(axis=1).tolist() == [10, 30, 95]
    top = keep_order(values, np.zeros(100), reference=-np.inf)[:10]
    assert set(y[top].tolist()) == {2}  # top-by-value at 90 % pruning loses two classes
    assert set(y[masks[0] > 0].tolist()) == {0, 1, 2}  # coverage keeps them all


def test_harmful_block_goes_before_the_redundant_block(pool, chosen):
    train, _, harmful, dup, values = pool
    values = values.align(train.ids)
    below = harmful[values.align(harmful).values < 0]  # the flipped rows the values catch
    assert below.size >= 10

    def kept(strategy, dropped):  # ids kept when `dropped` rows are pruned
        share = 1.0 - dropped / train.n
        mask = candidate_masks(values, train, [share], strategy=strategy)[0] > 0
        return set(train.ids[mask])

    # Top-by-value: the whole flipped block goes first, every duplicate stays.
    assert not kept("top", harmful.size) & set(harmful)
    assert set(dup) <= kept("top", harmful.size)
    # Coverage: the flipped rows valued below the reference (0) go first, every duplicate
    # stays; the few the values do not tell apart sit at the bottom of their value band.
    assert not kept("coverage", below.size) & set(below)
    assert set(dup) <= kept("coverage", below.size)
    assert not set(chosen.kept) & set(below)  # nor does the chosen subset


def test_confirmation_is_scored_on_rows_never_used_to_choose(pool, chosen):
    train, valid, _, _, _ = pool
    sel, conf = set(chosen.selection_ids.tolist()), set(chosen.confirmation_ids.tolist())
    assert not sel & conf and sel | conf == set(valid.ids.tolist())
    # The figure is a refit on the kept rows scored on the confirmation rows, by hand.
    rows = pd.Index(valid.ids).get_indexer(chosen.confirmation_ids)
    by_hand = va.make_utility(va.logistic_regression(2), train, valid.subset(rows))(
        np.isin(train.ids, chosen.kept).astype(np.float32))
    assert chosen.confirmation == pytest.approx(by_hand, abs=1e-6)
    assert 0 < chosen.confirmation_stderr < 0.2 and 0 <= chosen.gap_stderr < 0.2


@pytest.mark.slow  # two selections
def test_the_choice_never_looks_at_the_confirmation_rows(pool):
    train, valid, _, _, values = pool
    chooser, confirm = valid.split(0.5, 0.5, seed=1)
    chosen = va.select(train, chooser, values, confirm=confirm, keep=0.02, draws=50)
    # Scrambling the confirmation labels changes the confirmation figure, not the choice.
    scrambled = va.select(train, chooser, values, confirm=confirm.replace(y=1 - confirm.y),
                          keep=0.02, draws=50)
    assert scrambled.kept.tolist() == chosen.kept.tolist()
    np.testing.assert_array_equal(scrambled.curve["selection"], chosen.curve["selection"])
    assert scrambled.confirmation == pytest.approx(1.0 - chosen.confirmation, abs=1e-6)


def test_same_seed_same_selection(pool, chosen):
    train, valid, _, _, values = pool
    again = va.select(train, valid, values[::-1], keep=0.02, draws=200, seed=4)  # rows by id
    assert again.kept.tolist() == chosen.kept.tolist()
    pd.testing.assert_frame_equal(again.curve, chosen.curve)
    assert again.summary() == chosen.summary()


def test_bad_values_are_one_clear_error(pool):
    train, valid, _, _, values = pool
    with pytest.raises(va.ValuationError, match="not training rows"):
        va.select(train, valid, va.ValuationResult(
            values=values.values, stderr=values.stderr, counts=values.counts,
            ids=np.append(values.ids[:-1], "nosuchrow"), method=values.method))
    with pytest.raises(va.ValuationError, match="strictly between 0 and 1"):
        va.select(train, valid, values, fractions=(0.5, 1.0))


@pytest.mark.slow  # a valuation job and a selection job
def test_cli_select_writes_kept_ids_curve_and_summary(tmp_path, capsys):
    data, values, out = (str(tmp_path / f) for f in ("d.csv", "v.csv", "kept.csv"))
    small_table(60, seed=1).to_csv(data, index=False)
    assert main(["value", data, "--label", "target", "--id-column", "rid", "--method", "knn",
                 "--out", values, "--quiet"]) == 0
    assert main(["select", data, "--values", values, "--keep-accuracy", "0.05",
                 "--out", out, "--quiet"]) == 0
    table, kept = pd.read_csv(values), pd.read_csv(out)
    trained = set(table.loc[table["category"] != "validation", "id"])
    assert set(kept["id"]) <= trained and len(kept) >= 2
    curve = pd.read_csv(str(tmp_path / "kept.curve.csv"))
    assert {"strategy", "fraction", "selection", "confirmation"} <= set(curve.columns)
    with open(out + ".json") as f:
        summary = json.load(f)
    assert summary["n_kept"] == len(kept) and summary["method"] == "knn_shapley"
    # An id in the values file that the data lacks: one line, exit code 2.
    table.loc[table.index[table["category"] != "validation"][0], "id"] = "nosuchrow"
    table.to_csv(values, index=False)
    capsys.readouterr()
    assert main(["select", data, "--values", values, "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosuchrow" in err[0]
