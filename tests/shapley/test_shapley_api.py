"""`value(...)`: input checks, provenance, ids through sort/slice/merge/save/load, merging
half-runs."""

import numpy as np
import pytest
from shapley_games import lumpy

import valuation as va
from valuation import ValuationError
from valuation.api import METHODS, result_from_estimate
from valuation.runner import run
from valuation.shapley import exact_shapley, max_draws, tmc_shapley


@pytest.fixture(scope="module")
def small(blobs):
    train, valid = blobs
    return train.subset(np.arange(30)), valid


@pytest.fixture(scope="module")
def utility(small):
    """One engine for the module: compiled once, for batches up to 32 models."""
    return va.make_utility(va.logistic_regression(2), *small, chunk=32)


def test_unknown_method_lists_the_choices(small):
    train, valid = small
    with pytest.raises(ValuationError, match="choose one of") as err:
        va.value(train, method="shapely", valid=valid)
    for name in ("tmc", "beta", "banzhaf", "loo", "oob", "knn"):
        assert name in str(err.value) and name in METHODS


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "tmc", "valid": None}, "valid="),
    ({"method": "tmc", "valid": "v.csv"}, "valid must be a Dataset"),
    ({"method": "tmc", "truncation": 0.1}, "unknown option"),
    ({"method": "loo", "k": 3}, "unknown option"),
    ({"method": "tmc", "stop": 100}, "stopping rule"),
    ({"method": "tmc", "seed": 1.5}, "seed"),
])
def test_bad_input_gets_one_clear_error(small, kwargs, match):
    train, valid = small
    kwargs = {"valid": valid, **kwargs}
    with pytest.raises(ValuationError, match=match):
        va.value(train, progress=False, **kwargs)


def test_data_must_be_a_dataset_or_utility():
    with pytest.raises(ValuationError, match="Dataset or a Utility"):
        va.value(np.zeros((3, 2)), method="loo")


def test_result_carries_ids_in_input_order_and_provenance(small, utility):
    train, valid = small
    r = va.value(train, method="tmc", valid=valid, seed=3, stop=max_draws(8), batch=8,
                 truncation_rtol=0.05, progress=False, utility_options={"chunk": 32})
    np.testing.assert_array_equal(r.ids, train.ids)
    assert r.method == "tmc_shapley" and r.seed == 3
    assert r.params["truncation_rtol"] == 0.05 and r.params["utility"]["n_train"] == 30
    assert r.extra["draws"] == 8 and r.extra["evaluations"] > 0
    assert r.extra["stopping_reason"] == "max_draws(8)" and r.extra["seconds"] > 0
    assert "jax" in r.versions
    again = va.value(utility, method="tmc", seed=3, stop=max_draws(8), batch=8,
                     truncation_rtol=0.05, progress=False)
    np.testing.assert_array_equal(again.values, r.values)
    other = va.value(utility, method="tmc", seed=4, stop=max_draws(8), batch=8,
                     truncation_rtol=0.05, progress=False)
    assert not np.array_equal(other.values, r.values)


def test_ids_stay_aligned_through_sort_slice_merge_save_load(utility, tmp_path):
    r = va.value(utility, method="loo", progress=False)
    truth = dict(zip(r.ids.tolist(), r.values.tolist()))
    for view in (r.sort(), r.top(5), r.bottom(5), r.sort()[3:9], r[np.arange(30)[::-1]]):
        assert all(truth[i] == v for i, v in zip(view.ids.tolist(), view.values.tolist()))
    for suffix in (".parquet", ".npz", ".csv"):
        r.sort().save(tmp_path / f"r{suffix}")
        back = va.ValuationResult.load(tmp_path / f"r{suffix}")
        assert all(truth[i] == pytest.approx(v) for i, v in
                   zip(back.ids.tolist(), back.values.tolist()))
        assert back.method == "leave_one_out"
    merged = r.merge(r.sort())
    np.testing.assert_array_equal(merged.ids, r.ids)
    np.testing.assert_allclose(merged.values, r.values)


def test_merged_half_runs_match_one_full_run_statistically():
    game = lumpy(6, seed=1)
    exact = exact_shapley(game).values
    ids = np.array([f"s{i}" for i in range(6)])

    def result(seed, draws):
        out = run(tmc_shapley(truncation_rtol=None), game, key=seed, stop=max_draws(draws),
                  progress=False)
        return va.ValuationResult(out.estimate.values, out.estimate.stderr,
                                  out.estimate.counts, ids, "permutation_shapley", seed=seed)

    merged = result(1, 192).merge(result(2, 192)[::-1])  # whole updates of 32 permutations
    full = result(3, 384)
    np.testing.assert_array_equal(merged.ids, ids)
    np.testing.assert_array_equal(merged.counts, full.counts)
    assert np.all(np.abs(merged.values - exact) <= 4 * merged.stderr)
    assert np.all(np.abs(merged.values - full.values)
                  <= 4 * np.hypot(merged.stderr, full.stderr))
    ratio = merged.stderr / full.stderr
    assert np.all((ratio > 0.8) & (ratio < 1.25))  # pooled variance ~ one run's


@pytest.mark.slow  # compiles the engine's fit and score programs for every method
def test_every_method_runs_through_value(small, utility):
    train, _ = small
    u = utility
    for method, options in [("beta", {"stop": max_draws(2)}), ("banzhaf", {"stop": max_draws(32)}),
                            ("oob", {"stop": max_draws(32)}), ("knn", {"k": 3}), ("loo", {})]:
        r = va.value(u, method=method, progress=False, **options)
        assert len(r) == 30 and np.all(np.isfinite(r.values)), method
        np.testing.assert_array_equal(r.ids, train.ids)


def test_result_from_estimate_is_the_registry_helper(utility):
    u = utility
    est = va.shapley.leave_one_out(u)
    r = result_from_estimate(u, est, method="x", params={"a": 1}, seed=None, extra={})
    assert r.params["a"] == 1 and "utility" in r.params and len(r) == 30
