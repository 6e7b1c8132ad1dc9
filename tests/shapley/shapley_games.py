"""Toy cooperative games with closed-form values, in the utility engine's calling convention.

A game maps weight vectors `(B, n)` (0/1 masks) to scores `(B,)`; the closed forms are
written from the definitions, not from valuate's code.
"""

import math

import numpy as np


class Game:
    """`U(masks) -> scores` for a function of one boolean mask; `.n` players."""

    def __init__(self, n, fn):
        self.n, self.fn = n, fn

    def __call__(self, weights, key=None):
        del key
        masks = np.atleast_2d(np.asarray(weights)) > 0
        return np.array([self.fn(m) for m in masks], dtype=np.float64)


def additive(a):
    """U(S) = sum of a_i over S: every semivalue of i is a_i."""
    a = np.asarray(a, float)
    return Game(len(a), lambda m: float(a[m].sum()))


def majority(n, q):
    """U(S) = 1 if |S| >= q. Shapley: 1/n each. Banzhaf: C(n-1, q-1) / 2^(n-1)."""
    return Game(n, lambda m: float(m.sum() >= q))


def majority_banzhaf(n, q):
    return math.comb(n - 1, q - 1) / 2 ** (n - 1)


def glove():
    """Player 0 holds a left glove, players 1 and 2 right gloves; U = matched pairs.
    Shapley (2/3, 1/6, 1/6); Banzhaf (3/4, 1/4, 1/4)."""
    return Game(3, lambda m: float(min(m[0], m[1] + m[2])))


def with_null(game):
    """The game on n + 1 players where the last one never changes anything."""
    return Game(game.n + 1, lambda m: game.fn(m[:-1]))


def lumpy(n, seed=0):
    """A non-additive, asymmetric game for estimator-vs-exact checks."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.0, 1.0, n)
    return Game(n, lambda m: float(np.sqrt(a[m].sum()) + 0.5 * (m[0] and m[1]) - 0.3 * m[2]))
