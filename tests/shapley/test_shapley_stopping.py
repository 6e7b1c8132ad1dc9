"""Stopping rules: never converged before min_updates; `|` and `&` semantics; completion."""

import numpy as np
import pytest
from shapley_games import lumpy

from valuation import ValuationError
from valuation.estimate import Estimate
from valuation.runner import Progress, run
from valuation.shapley import (
    max_draws,
    max_evaluations,
    max_time,
    msr_banzhaf,
    rank_stable,
    stderr_below,
)


def progress(values=(1.0, 2.0, 3.0), stderr=0.0, counts=100, previous=None, evaluations=0,
             draws=0, seconds=0.0):
    n = len(values)
    est = Estimate(np.asarray(values, float), np.full(n, stderr, float),
                   np.full(n, counts, np.int64))
    prev = None if previous is None else Estimate(np.asarray(previous, float), est.stderr,
                                                  est.counts)
    return Progress(est, prev, evaluations, draws, seconds)


def test_budget_rules():
    assert not max_evaluations(10).check(progress(evaluations=9))
    assert max_evaluations(10).check(progress(evaluations=10))
    assert max_evaluations(10).completion(progress(evaluations=5)) == 0.5
    assert max_draws(4).check(progress(draws=4)) and not max_draws(4).check(progress(draws=3))
    assert max_time(2.0).check(progress(seconds=2.5))
    assert max_time(2.0).completion(progress(seconds=1.0)) == 0.5


def test_stderr_rule_never_fires_before_min_updates():
    rule = stderr_below(0.1, min_updates=30)
    assert not rule.check(progress(stderr=0.0, counts=29))
    assert rule.completion(progress(stderr=0.0, counts=29)) == 0.0
    assert rule.check(progress(stderr=0.05, counts=30))
    assert not rule.check(progress(stderr=0.2, counts=1000))


def test_stderr_rule_relative_and_fraction():
    rule = stderr_below(rtol=0.1, min_updates=2)
    # bounds 0.1, 0.2, 0.3 for values 1, 2, 3: stderr 0.15 converges two of three samples
    assert not rule.check(progress(stderr=0.15))
    assert rule.completion(progress(stderr=0.15)) == pytest.approx(2 / 3)
    assert stderr_below(rtol=0.1, min_updates=2, fraction=0.6).check(progress(stderr=0.15))
    # with both tolerances, the larger bound counts
    assert stderr_below(0.2, rtol=0.1, min_updates=2).check(progress(stderr=0.15))
    assert not stderr_below(0.05, rtol=0.1, min_updates=2).check(progress(stderr=0.15))


def test_rank_stability():
    rule = rank_stable(0.99, min_updates=10)
    assert not rule.check(progress())  # no previous check yet
    assert rule.check(progress(previous=(1.1, 2.1, 3.5)))  # same order
    assert not rule.check(progress(previous=(3.0, 2.0, 1.0)))  # order reversed
    assert not rule.check(progress(previous=(1.1, 2.1, 3.5), counts=9))  # too few updates


def test_composition_semantics():
    a, b = max_draws(10), max_evaluations(100)
    p_a = progress(draws=10, evaluations=50)
    p_none = progress(draws=5, evaluations=50)
    assert (a | b).check(p_a) and not (a & b).check(p_a)
    assert (a & b).check(progress(draws=10, evaluations=100))
    assert not (a | b).check(p_none)
    assert (a | b).completion(p_none) == 0.5 and (a & b).completion(p_a) == 0.5
    assert (a | b).fired(p_a) == ["max_draws(10)"]
    rule = (a | b) & stderr_below(0.1, min_updates=200)
    assert not rule.check(p_a)  # the stderr part needs 200 updates
    assert "max_draws(10) | max_evaluations(100)" in repr(rule)


@pytest.mark.parametrize("make", [
    lambda: stderr_below(), lambda: stderr_below(-1.0), lambda: stderr_below(0.1, min_updates=1),
    lambda: max_draws(0), lambda: max_time(-1), lambda: rank_stable(1.5),
    lambda: stderr_below(0.1, fraction=0.0),
])
def test_bad_rules_raise(make):
    with pytest.raises(ValuationError):
        make()


def test_runner_stops_at_the_first_check_where_the_rule_fires():
    game = lumpy(5)
    out = run(msr_banzhaf(batch=64), game, key=0, stop=max_evaluations(200), progress=False)
    assert out.evaluations == 200 and out.draws == 200  # 3 updates of 64, then 8 of 64 keys
    assert out.reason == "max_evaluations(200)"
    out = run(msr_banzhaf(batch=64), game, key=0,
              stop=stderr_below(0.05, min_updates=30) | max_draws(100_000), progress=False)
    assert out.reason.startswith("stderr_below")
    assert np.all(out.estimate.stderr <= 0.05) and np.all(out.estimate.counts >= 30)
