"""The runner: keyed draws independent of batching, seeds, checkpoint + resume."""

import numpy as np
import pytest
from shapley_games import Game, lumpy

import valuation as va
from valuation import ValuationError
from valuation.runner import run
from valuation.shapley import (
    data_oob,
    max_draws,
    max_evaluations,
    msr_banzhaf,
    tmc_shapley,
)


def _values(estimator, game, *, key=0, draws=32, batch=None, **kw):
    return run(estimator, game, key=key, stop=max_draws(draws), batch=batch, progress=False,
               **kw)


@pytest.mark.parametrize("estimator, batches, draws", [
    (tmc_shapley(truncation_rtol=None), (1, 4, 16), 32),
    (tmc_shapley(truncation_rtol=0.05, antithetic=True), (2, 8), 32),
    (msr_banzhaf(), (16, 64), 256),
], ids=["permutation", "tmc-antithetic", "msr"])
def test_same_seed_same_values_for_any_batch_size(estimator, batches, draws):
    game = lumpy(7)
    outs = [_values(estimator, game, draws=draws, batch=b) for b in batches]
    for o in outs[1:]:
        assert o.draws == outs[0].draws
        np.testing.assert_array_equal(o.estimate.counts, outs[0].estimate.counts)
        # identical draws; only the running moments' float64 summation order differs
        np.testing.assert_allclose(o.estimate.values, outs[0].estimate.values, rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(o.estimate.stderr, outs[0].estimate.stderr, rtol=1e-9)


def test_different_seeds_give_different_draws():
    game = lumpy(7)
    a = _values(tmc_shapley(truncation_rtol=None), game, key=0).estimate.values
    b = _values(tmc_shapley(truncation_rtol=None), game, key=1).estimate.values
    assert not np.allclose(a, b)


def test_antithetic_needs_even_batches():
    with pytest.raises(ValuationError, match="multiple of 2"):
        _values(tmc_shapley(antithetic=True), lumpy(4), batch=3)


@pytest.mark.slow  # compiles the engine for several batch shapes
def test_utility_chunk_size_does_not_change_values(blobs):
    train, valid = blobs
    train = train.subset(np.arange(40))
    outs = [_values(tmc_shapley(truncation_rtol=None),
                    va.make_utility(va.logistic_regression(2), train, valid, chunk=c),
                    draws=8).estimate.values for c in (32, 128)]
    # float32 engine: a subset's score may differ by rounding between batch shapes
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)


class Crashing:
    """A game that raises after `calls` utility calls: a job killed mid-run."""

    def __init__(self, game, calls):
        self.game, self.calls, self.n = game, calls, game.n

    def __call__(self, weights, key=None):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt("killed")
        return self.game(weights, key=key)


@pytest.mark.parametrize("every", [1, 3])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, every):
    game = lumpy(6)
    est = msr_banzhaf(batch=8)
    full = _values(est, game, draws=80)
    path = tmp_path / "state.npz"
    with pytest.raises(KeyboardInterrupt):
        _values(est, Crashing(game, 5), draws=80, checkpoint=path, checkpoint_every=every)
    resumed = _values(est, game, draws=80, checkpoint=path, checkpoint_every=every)
    assert resumed.resumed
    np.testing.assert_array_equal(resumed.estimate.values, full.estimate.values)
    np.testing.assert_array_equal(resumed.estimate.stderr, full.estimate.stderr)
    assert (resumed.draws, resumed.evaluations) == (full.draws, full.evaluations)
    # a finished job run again returns at once, with no new draws
    again = _values(est, Crashing(game, 0), draws=80, checkpoint=path)
    np.testing.assert_array_equal(again.estimate.values, full.estimate.values)


def test_budget_cut_tmc_resumed_equals_uninterrupted(tmp_path):
    # an evaluation budget no batch divides, interrupted after 2 utility calls (updates)
    game, est = lumpy(6), tmc_shapley(truncation_rtol=0.1)
    stop = max_evaluations(101)
    full = run(est, game, key=2, stop=stop, batch=4, progress=False)
    path = tmp_path / "state.npz"
    with pytest.raises(KeyboardInterrupt):
        run(est, Crashing(game, 2), key=2, stop=stop, batch=4, checkpoint=path,
            progress=False)
    resumed = run(est, game, key=2, stop=stop, batch=4, checkpoint=path, progress=False)
    assert resumed.resumed and resumed.evaluations == full.evaluations == 101
    np.testing.assert_array_equal(resumed.estimate.values, full.estimate.values)
    np.testing.assert_array_equal(resumed.state.cuts, full.state.cuts)


def test_continuing_with_a_larger_budget_equals_one_long_run(tmp_path):
    game = lumpy(6)
    est = tmc_shapley(truncation_rtol=0.1)
    path = tmp_path / "state.npz"
    _values(est, game, draws=16, checkpoint=path)
    longer = _values(est, game, draws=48, checkpoint=path)
    once = _values(est, game, draws=48)
    # the same 48 draws, folded as 16 + 32 against 32 + 16: float64 summation order only
    assert (longer.draws, longer.evaluations) == (once.draws, once.evaluations)
    np.testing.assert_allclose(longer.estimate.values, once.estimate.values, rtol=1e-12,
                               atol=1e-15)


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    game = lumpy(6)
    path = tmp_path / "state.npz"
    _values(msr_banzhaf(batch=8), game, draws=16, checkpoint=path)
    with pytest.raises(ValuationError, match="different configuration"):
        _values(msr_banzhaf(batch=8), game, key=1, draws=16, checkpoint=path)
    with pytest.raises(ValuationError, match="different configuration"):
        _values(tmc_shapley(), game, draws=16, checkpoint=path)
    with pytest.raises(ValuationError, match="different configuration"):
        _values(msr_banzhaf(batch=8), Game(6, lambda m: 0.0), draws=16, checkpoint=path,
                config={"data": "another table"})


def test_progress_bar_reports_completion_and_speed(capsys):
    run(msr_banzhaf(batch=8), lumpy(4), key=0, stop=max_draws(16), progress=True)
    err = capsys.readouterr().err
    assert "100%" in err and "evals/s" in err


def test_data_oob_needs_a_real_utility():
    with pytest.raises(ValuationError, match="make_utility"):
        _values(data_oob(), lumpy(4), draws=4)


class Chunked:
    """A game with an engine chunk size, as a `Utility` has: estimators stream draws to it
    one chunk at a time."""

    def __init__(self, game, chunk):
        self.game, self.chunk, self.n = game, chunk, game.n

    def __call__(self, weights, key=None):
        assert len(weights) <= self.chunk  # never more than one chunk in memory
        return self.game(weights, key=key)


def test_msr_streamed_in_chunks_equals_one_batch():
    game = lumpy(7)
    whole = _values(msr_banzhaf(batch=64), game, draws=128).estimate
    streamed = _values(msr_banzhaf(batch=64), Chunked(game, 5), draws=128).estimate
    np.testing.assert_array_equal(streamed.counts, whole.counts)
    np.testing.assert_allclose(streamed.values, whole.values, rtol=1e-12, atol=1e-14)


def test_moments_folded_in_blocks_equal_one_fold(monkeypatch, rng):
    x, mask = rng.normal(size=(50, 7)), rng.random((50, 7)) < 0.6
    whole = va.estimate.update(va.estimate.moments(7), x, mask)
    monkeypatch.setattr(va.estimate, "BLOCK_ELEMENTS", 14)  # blocks of 2 rows
    blocked = va.estimate.update(va.estimate.moments(7), x, mask)
    np.testing.assert_array_equal(blocked.count, whole.count)
    np.testing.assert_allclose(blocked.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(blocked.m2, whole.m2, rtol=1e-12)
    np.testing.assert_allclose(whole.mean, np.where(mask, x, 0).sum(0) / mask.sum(0))


def test_long_run_prints_a_cost_estimate_first(monkeypatch, capsys):
    left, line = va.runner.cost_estimate(64, 0.25, 2.0)
    assert left == 96.0 and "256 utility evaluations" in line  # 192 more at 2/s
    monkeypatch.setattr(va.runner, "ESTIMATE_AFTER", 0.0)
    run(msr_banzhaf(batch=8), lumpy(4), key=0, stop=max_draws(32), progress=True)
    assert capsys.readouterr().err.count("cost estimate: about 32 utility evaluations") == 1
    monkeypatch.setattr(va.runner, "ESTIMATE_AFTER", 1e9)
    run(msr_banzhaf(batch=8), lumpy(4), key=0, stop=max_draws(32), progress=True)
    assert "cost estimate" not in capsys.readouterr().err


def _strip_version(path):
    """Rewrite a checkpoint as code before estimator versions wrote it: no "version"."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "version"}
    np.savez(path, **arrays)


def test_checkpoint_of_another_estimator_version_is_refused(tmp_path):
    game = lumpy(6)
    path = tmp_path / "state.npz"
    current = msr_banzhaf(batch=8)
    _values(current._replace(version=current.version + 1), game, draws=16, checkpoint=path)
    with pytest.raises(ValuationError, match=r"written by msr_banzhaf/2 of the estimator, "
                                             r"this is msr_banzhaf/1: their draws may differ"):
        _values(current, game, draws=32, checkpoint=path)
    _values(current, game, draws=16, checkpoint=tmp_path / "ok.npz")
    _strip_version(tmp_path / "ok.npz")  # as written before versions were recorded
    with pytest.raises(ValuationError, match="an unrecorded version .* delete it"):
        _values(current, game, draws=32, checkpoint=tmp_path / "ok.npz")


def test_data_oob_is_version_2_host_side_bootstrap_draws():
    assert data_oob().version == 2  # its draws changed: version-1 checkpoints are refused
