"""Stopping rules for Monte Carlo valuation: small, composable, pure predicates.

Where it sits: `runner.run` checks its rule after every update of an estimator and stops when
it fires. A rule looks only at a `Progress` snapshot (the current estimate, the one at the
previous check, evaluations used, seconds spent), so a resumed run stops where an
uninterrupted one would (the runner checkpoints everything a rule reads).

Rules combine with `|` (either fires; completion is the larger) and `&` (both fire;
completion is the smaller):

    stop = stderr_below(0.01, min_updates=30) | max_evaluations(100_000)

A convergence rule never counts a sample as converged before it has `min_updates` updates;
budget rules (`max_evaluations`, `max_draws`, `max_time`) fire regardless. `completion`
is a number in [0, 1] for the progress bar. `left` is what the draw and evaluation budgets
still allow (`runner.Limit`): the runner shortens the last update to it, so a run spends
exactly its budget (`|` allows the smaller of two budgets, `&` the larger).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..errors import ValuationError
from ..runner import Limit, Progress

__all__ = [
    "Rule",
    "max_draws",
    "max_evaluations",
    "max_time",
    "rank_stable",
    "stderr_below",
]


class Rule:
    """Base of stopping rules: `check(progress) -> bool`, `completion(progress) -> float`."""

    def check(self, progress: Progress) -> bool:
        raise NotImplementedError

    def completion(self, progress: Progress) -> float:
        raise NotImplementedError

    def fired(self, progress: Progress) -> list[str]:
        """Names of the elementary rules that fire now (the stopping reason)."""
        return [repr(self)] if self.check(progress) else []

    def left(self, progress: Progress) -> Limit:
        """Draws and evaluations this rule still allows (`math.inf`: it sets no budget)."""
        del progress
        return Limit()

    def __or__(self, other: Rule) -> Rule:
        return _Any((self, other))

    def __and__(self, other: Rule) -> Rule:
        return _All((self, other))


@dataclasses.dataclass(frozen=True)
class _Any(Rule):
    rules: tuple

    def check(self, p):
        return any(r.check(p) for r in self.rules)

    def completion(self, p):
        return max(r.completion(p) for r in self.rules)

    def fired(self, p):
        return [name for r in self.rules for name in r.fired(p)]

    def left(self, p):  # the run stops at whichever budget is spent first
        return Limit(*map(min, zip(*(r.left(p) for r in self.rules))))

    def __repr__(self):
        return " | ".join(map(repr, self.rules))


@dataclasses.dataclass(frozen=True)
class _All(Rule):
    rules: tuple

    def check(self, p):
        return all(r.check(p) for r in self.rules)

    def completion(self, p):
        return min(r.completion(p) for r in self.rules)

    def fired(self, p):
        return [repr(self)] if self.check(p) else []

    def left(self, p):  # the run goes on until every rule fires
        return Limit(*map(max, zip(*(r.left(p) for r in self.rules))))

    def __repr__(self):
        return "(" + " & ".join(map(repr, self.rules)) + ")"


def _positive(name, value):
    if not (isinstance(value, (int, float)) and value > 0):
        raise ValuationError(f"{name} must be a positive number, got {value!r}")


@dataclasses.dataclass(frozen=True, repr=False)
class _MaxEvaluations(Rule):
    limit: int

    def check(self, p):
        return p.evaluations >= self.limit

    def completion(self, p):
        return min(1.0, p.evaluations / self.limit)

    def left(self, p):
        return Limit(math.inf, max(0, self.limit - p.evaluations))

    def __repr__(self):
        return f"max_evaluations({self.limit})"


@dataclasses.dataclass(frozen=True, repr=False)
class _MaxDraws(Rule):
    limit: int

    def check(self, p):
        return p.draws >= self.limit

    def completion(self, p):
        return min(1.0, p.draws / self.limit)

    def left(self, p):
        return Limit(max(0, self.limit - p.draws), math.inf)

    def __repr__(self):
        return f"max_draws({self.limit})"


@dataclasses.dataclass(frozen=True, repr=False)
class _MaxTime(Rule):
    seconds: float

    def check(self, p):
        return p.seconds >= self.seconds

    def completion(self, p):
        return min(1.0, p.seconds / self.seconds)

    def __repr__(self):
        return f"max_time({self.seconds})"


@dataclasses.dataclass(frozen=True, repr=False)
class _StderrBelow(Rule):
    atol: float | None
    rtol: float | None
    min_updates: int
    fraction: float

    def _share(self, p):
        e = p.estimate
        bound = np.zeros_like(e.values)
        if self.atol is not None:
            bound = np.maximum(bound, self.atol)
        if self.rtol is not None:
            bound = np.maximum(bound, self.rtol * np.abs(e.values))
        converged = (e.counts >= self.min_updates) & (e.stderr <= bound)
        return float(converged.mean()) if converged.size else 1.0

    def check(self, p):
        return self._share(p) >= self.fraction

    def completion(self, p):
        return min(1.0, self._share(p) / self.fraction)

    def __repr__(self):
        return (f"stderr_below(atol={self.atol}, rtol={self.rtol}, "
                f"min_updates={self.min_updates}, fraction={self.fraction})")


@dataclasses.dataclass(frozen=True, repr=False)
class _RankStable(Rule):
    threshold: float
    min_updates: int

    def _corr(self, p):
        if p.previous is None or np.any(p.estimate.counts < self.min_updates):
            return 0.0
        a, b = _ranks(p.estimate.values), _ranks(p.previous.values)
        if a.std() == 0 or b.std() == 0:
            return 1.0 if np.array_equal(a, b) else 0.0
        return float(np.corrcoef(a, b)[0, 1])

    def check(self, p):
        return self._corr(p) >= self.threshold

    def completion(self, p):
        return float(np.clip(self._corr(p) / self.threshold, 0.0, 1.0))

    def __repr__(self):
        return f"rank_stable({self.threshold}, min_updates={self.min_updates})"


def _ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


def max_evaluations(limit: int) -> Rule:
    """Fire once `limit` utility evaluations (models trained) have been spent; the runner
    stops the last update there, so a run spends exactly `limit`."""
    _positive("max_evaluations", limit)
    return _MaxEvaluations(int(limit))


def max_draws(limit: int) -> Rule:
    """Fire once `limit` Monte Carlo draws (permutations, coalitions, bootstrap models)
    have been made; the runner shortens the last update, so a run makes exactly `limit`."""
    _positive("max_draws", limit)
    return _MaxDraws(int(limit))


def max_time(seconds: float) -> Rule:
    """Fire once `seconds` of wall time have been spent (summed over resumed runs)."""
    _positive("max_time", seconds)
    return _MaxTime(float(seconds))


def stderr_below(atol: float | None = None, *, rtol: float | None = None,
                 min_updates: int = 30, fraction: float = 1.0) -> Rule:
    """Fire when enough samples' standard errors are small.

    A sample is converged when it has at least `min_updates` updates and
    `stderr <= max(atol, rtol * |value|)` (an absent tolerance counts as 0).

    Args:
      atol: absolute tolerance, in value units (utility units for semivalues).
      rtol: tolerance relative to the sample's own |value|.
      min_updates: updates a sample needs before it can count as converged.
      fraction: share of samples that must be converged, in (0, 1].
    """
    if atol is None and rtol is None:
        raise ValuationError("stderr_below needs a tolerance; pass atol=... and/or rtol=...")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None:
            _positive(name, value)
    if not 0.0 < fraction <= 1.0:
        raise ValuationError(f"fraction must lie in (0, 1], got {fraction!r}")
    if int(min_updates) < 2:
        raise ValuationError("min_updates must be at least 2 (a standard error needs two "
                             "observations)")
    return _StderrBelow(atol, rtol, int(min_updates), float(fraction))


def rank_stable(threshold: float = 0.999, *, min_updates: int = 30) -> Rule:
    """Fire when the Spearman correlation between the values' ranks at this check and at the
    previous check reaches `threshold`, once every sample has `min_updates` updates."""
    if not 0.0 < threshold <= 1.0:
        raise ValuationError(f"threshold must lie in (0, 1], got {threshold!r}")
    _positive("min_updates", min_updates)
    return _RankStable(float(threshold), int(min_updates))
