"""Active learning: the value of an unlabelled row, the acquisition ranking and its CLI."""

import json

import numpy as np
import pandas as pd
import pytest

import valuation as va
from metalearner import MetaValuator, acquire_batch
from valuate.cli import main
from valuation.acquisition import acquire, diversity_radius, uncertainty
from valuation.data import from_arrays


def test_uncertainty_by_hand():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(uncertainty(p), [np.log(2), 0.0], atol=1e-12)
    q = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    np.testing.assert_allclose(uncertainty(q, kind="margin"), [0.5, 0.95])
    np.testing.assert_allclose(uncertainty(q), -(q * np.log(q)).sum(1))


def test_rank_mix_harmful_last_and_weights():
    # Row 1 is certainly harmful (value + 1.96 se < 0) and the most uncertain: last anyway.
    values = np.array([0.9, -1.0, 0.1, 0.5])
    stderr = np.array([0.1, 0.1, 0.1, 0.1])
    probs = np.array([[0.95, 0.05], [0.5, 0.5], [0.55, 0.45], [0.8, 0.2]])
    x = np.eye(4)
    by_value = acquire(values, stderr, probs, x, batch=1, weight=0.0, radius=0)
    by_doubt = acquire(values, stderr, probs, x, batch=1, weight=1.0, radius=0)
    assert by_value.order.tolist() == [0, 3, 2, 1]
    assert by_doubt.order.tolist() == [2, 3, 0, 1]
    assert by_value.harmful.tolist() == [False, True, False, False]
    # The score is the stated rank mix: quantiles of value and of entropy, average ranks.
    mixed = acquire(values, stderr, probs, x, batch=1, weight=0.25, radius=0)
    q_value = np.array([4, 1, 2, 3]) / 4
    q_doubt = np.array([1, 4, 3, 2]) / 4
    np.testing.assert_allclose(mixed.score, 0.75 * q_value + 0.25 * q_doubt)


def test_diversity_guard_spreads_the_batch():
    # Two tight clusters; the four best-scoring rows all sit in cluster A.
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.01, (6, 2))
    b = rng.normal(5.0, 0.01, (6, 2))
    x = np.concatenate([a, b])
    values = np.r_[np.linspace(1.0, 0.5, 6), np.linspace(0.4, 0.1, 6)]
    probs = np.full((12, 2), 0.5)
    stderr = np.zeros(12)
    # The default radius: the median distance to the nearest row, in standardized units.
    xs = (x - x.mean(0)) / x.std(0)
    dist = np.linalg.norm(xs[:, None] - xs[None], axis=-1) + np.diag(np.full(12, np.inf))
    assert diversity_radius(x) == pytest.approx(np.median(dist.min(1)), rel=1e-3)  # float32 rows
    default = acquire(values, stderr, probs, x, batch=2, weight=0.0)
    assert default.radius == pytest.approx(diversity_radius(x))
    guarded = acquire(values, stderr, probs, x, batch=2, weight=0.0, radius=1.0)
    assert guarded.order[:2].tolist() == [0, 6]  # best of A, then best of B
    plain = acquire(values, stderr, probs, x, batch=2, weight=0.0, radius=0)
    assert plain.order[:2].tolist() == [0, 1]
    # When every row lies within the radius the guard gives way to the score order.
    wide = acquire(values, stderr, probs, x, batch=3, weight=0.0, radius=100.0)
    assert wide.order[:3].tolist() == [0, 1, 2]
    assert wide.chosen.sum() == 3 and set(np.flatnonzero(wide.chosen)) == {0, 1, 2}


@pytest.mark.parametrize("change, message", [
    ({"batch": 0}, "batch=0"),
    ({"weight": 1.5}, "weight=1.5"),
    ({"kind": "bald"}, "uncertainty 'bald'"),
    ({"values": np.zeros(3)}, "the same rows"),
    ({"probs": np.full((4, 2), np.nan)}, "NaN"),
])
def test_bad_input_is_one_clear_error(change, message):
    args = {"values": np.zeros(4), "stderr": np.zeros(4), "probs": np.full((4, 2), 0.5),
            "x": np.eye(4), "batch": 2}
    args.update(change)
    with pytest.raises(va.ValuationError, match=message):
        acquire(args.pop("values"), args.pop("stderr"), args.pop("probs"), args.pop("x"),
                **args)


def _contradictory_task(seed):
    """Two separated classes (x0 < 0: class 0, x0 > 0: class 1) and, far up at x1 = 6, a
    region whose labels are coin flips. Teacher values: -1 in that region, +1 elsewhere."""
    rng = np.random.default_rng(seed)

    def rows(n, region):
        if region == "clear":
            y = rng.integers(0, 2, n)
            x = np.c_[np.where(y == 1, 2.5, -2.5) + rng.normal(0, 0.7, n),
                      rng.normal(0, 1.0, n)]
        else:
            y = rng.integers(0, 2, n)
            x = np.c_[rng.normal(0, 0.5, n), 6.0 + rng.normal(0, 0.5, n)]
        return x.astype(np.float32), y

    (xc, yc), (xm, ym) = rows(100, "clear"), rows(40, "mixed")
    train = va.load(pd.DataFrame({"a": np.r_[xc[:, 0], xm[:, 0]],
                                  "b": np.r_[xc[:, 1], xm[:, 1]],
                                  "y": np.r_[yc, ym]}), label="y")
    xv, yv = rows(60, "clear")
    valid = va.load(pd.DataFrame({"a": xv[:, 0], "b": xv[:, 1], "y": yv}), label="y")
    teacher = np.r_[np.ones(100), -np.ones(40)]
    useful, _ = rows(15, "clear")
    harmful, _ = rows(15, "mixed")
    pool = pd.DataFrame(np.r_[useful, harmful], columns=["a", "b"],
                        index=[f"p{i:02d}" for i in range(30)])
    return train, valid, teacher, pool


@pytest.fixture(scope="module")
def contradictory():
    train, valid, teacher, pool = _contradictory_task(0)
    utility = va.make_utility(va.logistic_regression(2), train, valid)
    values = va.ValuationResult(values=teacher, stderr=np.zeros(train.n),
                                counts=np.ones(train.n, int), ids=train.ids, method="toy")
    metas = [MetaValuator(members=3, steps=300, k=5, bags=8, seed=s).fit(utility, values)
             for s in (0, 0, 1)]
    return utility, pool, metas


def test_acquisition_asks_for_the_harmful_block_last(contradictory):
    _, pool, (meta, _, _) = contradictory
    plan = acquire_batch(meta, pool, batch=5)
    order = plan.acquisition.order
    useful, harmful = np.arange(15), np.arange(15, 30)
    position = np.empty(30, int)
    position[order] = np.arange(30)
    # The target model is least sure in the contradictory region (uncertainty sampling would
    # ask for it first), but its rows are predicted harmful and come after every useful row.
    assert plan.acquisition.uncertainty[harmful].mean() > plan.acquisition.uncertainty[
        useful].mean()
    assert position[useful].max() < position[harmful].min()
    assert plan.acquisition.harmful[harmful].all()
    assert not plan.acquisition.chosen[harmful].any()
    assert plan.predicted.ids.tolist() == pool.index.tolist()


def test_same_seed_same_order(contradictory):
    _, pool, (meta, again, other) = contradictory
    first = acquire_batch(meta, pool, batch=5)
    second = acquire_batch(again, pool, batch=5)
    np.testing.assert_array_equal(first.acquisition.order, second.acquisition.order)
    np.testing.assert_array_equal(first.predicted.values, second.predicted.values)
    # Another seed is another meta-model (the test would be empty otherwise).
    assert not np.array_equal(acquire_batch(other, pool, batch=5).predicted.values,
                              first.predicted.values)


def test_unlabelled_value_is_the_expectation_over_labels(contradictory):
    utility, pool, (meta, _, _) = contradictory
    result = meta.predict_unlabelled(pool)
    # p(c | x) by hand: the mean softmax of the fold models.
    fmap = meta.state.features
    x = pool[["a", "b"]].to_numpy(np.float32)
    probs = np.asarray(utility.predict_proba(fmap.folds, x), np.float64).mean(0)
    np.testing.assert_allclose(meta.label_probabilities(pool), probs, rtol=1e-5)
    probs = probs / probs.sum(1, keepdims=True)
    labelled = [from_arrays(x, np.full(30, c), ids=pool.index, feature_names=["a", "b"],
                            classes=utility.train.classes) for c in utility.train.classes]
    per_label = [meta.predict(data, id_conflict="new") for data in labelled]
    v = np.stack([r.values for r in per_label], 1)
    s = np.stack([r.stderr for r in per_label], 1)
    expected = (probs * v).sum(1)
    np.testing.assert_allclose(result.values, expected, rtol=1e-6, atol=1e-9)
    total = (probs * (s**2 + (v - expected[:, None]) ** 2)).sum(1)
    np.testing.assert_allclose(result.stderr, np.sqrt(total), rtol=1e-6, atol=1e-9)
    # The row's value under its likelier label differs from under the other: not a no-op.
    assert np.abs(v[:, 0] - v[:, 1]).max() > 0.1


def test_unlabelled_rows_by_name_and_id(contradictory):
    utility, pool, (meta, _, _) = contradictory
    base = meta.predict_unlabelled(pool)
    swapped = meta.predict_unlabelled(pool[["b", "a"]])
    np.testing.assert_array_equal(swapped.values, base.values)
    # A pool row under a training row's id but with other features: an error, or a new row.
    clash = pool.rename(index={"p00": utility.train.ids[0]})
    with pytest.raises(va.ValuationError, match="id of a training row but not its features"):
        meta.predict_unlabelled(clash)
    np.testing.assert_array_equal(
        meta.predict_unlabelled(clash, id_conflict="new").values, base.values)


@pytest.mark.slow
def test_cli_acquire_ranks_the_pool(tmp_path, capsys):
    train, _, _, pool = _contradictory_task(1)
    table = pd.DataFrame({"a": train.x[:, 0], "b": train.x[:, 1], "y": train.y,
                          "rid": [f"t{i}" for i in range(train.n)]})
    table.to_csv(tmp_path / "train.csv", index=False)
    values, meta = tmp_path / "v.csv", tmp_path / "m.npz"
    assert main(["value", str(tmp_path / "train.csv"), "--label", "y", "--id-column", "rid",
                 "--method", "knn", "--out", str(values), "--quiet"]) == 0
    assert main(["fit-meta", str(values), "--out", str(meta), "--members", "2", "--steps",
                 "200", "--quiet"]) == 0
    # The pool: shuffled columns, a label column to ignore, ids in a column.
    pool_table = pool.reset_index(names="rid")[["b", "rid", "a"]].assign(y=np.nan)
    pool_table.to_csv(tmp_path / "pool.csv", index=False)
    out = tmp_path / "ranked.csv"
    assert main(["acquire", str(tmp_path / "pool.csv"), "--meta", str(meta), "--batch", "4",
                 "--out", str(out)]) == 0
    assert "ranked 30 rows for labelling: batch of 4" in capsys.readouterr().err
    ranked = pd.read_csv(out)
    assert list(ranked.columns) == ["id", "rank", "chosen", "value", "stderr", "category",
                                    "uncertainty", "score"]
    assert sorted(ranked["id"]) == sorted(pool.index)
    assert ranked["chosen"].tolist() == [True] * 4 + [False] * 26
    assert ranked["rank"].tolist() == list(range(1, 31))
    sidecar = json.loads((tmp_path / "ranked.csv.json").read_text())
    assert sidecar["acquisition"]["batch"] == 4 and sidecar["input"]["rows"] == 30
    # Same command, same order.
    assert main(["acquire", str(tmp_path / "pool.csv"), "--meta", str(meta), "--batch", "4",
                 "--out", str(tmp_path / "again.csv"), "--quiet"]) == 0
    assert pd.read_csv(tmp_path / "again.csv")["id"].tolist() == ranked["id"].tolist()
    # A bad batch is one line.
    code = main(["acquire", str(tmp_path / "pool.csv"), "--meta", str(meta), "--batch", "99",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "batch=99" in err[0]
