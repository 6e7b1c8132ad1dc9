"""Point removal and point addition curves: does the value order matter to the model?

Where it sits: an evaluation protocol run on a `ValuationResult` after the fact (Ghorbani & Zou
2019, Kwon & Zou 2023). The target model is retrained on the training set with a growing share
of samples removed (or, for addition curves, kept) in value order, and scored on held-out test
data. Removing the most valuable samples first should hurt fastest; removing the least
valuable first (the harmful ones) should help or hurt least. A random order is the baseline.

Every point of every curve is one weight vector, so all curves of a result are trained in one
batch by the utility engine: `utility` is any callable `(B, n) weights -> (B,) scores`, in
practice `valuation.make_utility(model, train, test)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

__all__ = ["FRACTIONS", "curve_summary", "curves", "order_masks"]

FRACTIONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


def order_masks(order: np.ndarray, fractions: Sequence[float], *, remove: bool) -> np.ndarray:
    """0/1 weights after removing (or keeping only) the first samples of `order`.

    Args:
      order: sample positions, most important first for the protocol, shape `(n,)`.
      fractions: shares of the samples taken from the front of `order`; each becomes
        `round(f * n)` samples.
      remove: True: the taken samples are removed (weight 0) and the rest kept (removal
        curve); False: only the taken samples are kept (addition curve).

    Returns:
      Weights `(len(fractions), n)`, float32.
    """
    order = np.asarray(order)
    n = order.size
    taken = np.zeros((len(fractions), n), np.float32)
    for row, f in enumerate(fractions):
        taken[row, order[: round(f * n)]] = 1.0
    return 1.0 - taken if remove else taken


def curves(
    values: np.ndarray,
    utility: Callable[[np.ndarray], np.ndarray],
    *,
    fractions: Sequence[float] = FRACTIONS,
    n_random: int = 5,
    seed: int,
) -> pd.DataFrame:
    """Removal and addition curves of one value vector, plus the random-order baseline.

    Orders: "high_first" (descending values, ties by position), "low_first" (ascending) and
    "random" (`n_random` seeded permutations, averaged per fraction).

    Args:
      values: `(n,)` values of the training samples, higher = more valuable.
      utility: `(B, n) -> (B,)` test scores of the target model retrained on weighted
        training samples.
      fractions: shares of samples removed / added.
      n_random: random permutations averaged for the baseline.
      seed: seed of the random permutations.

    Returns:
      Tidy frame with columns protocol ("removal" | "addition"), order, fraction, score.
    """
    values = np.asarray(values, float)
    n = values.size
    rng = np.random.default_rng(seed)
    orders = {"high_first": [np.argsort(-values, kind="stable")],
              "low_first": [np.argsort(values, kind="stable")],
              "random": [rng.permutation(n) for _ in range(n_random)]}
    blocks, labels = [], []
    for protocol in ("removal", "addition"):
        for name, perms in orders.items():
            for perm in perms:
                blocks.append(order_masks(perm, fractions, remove=protocol == "removal"))
                labels.append((protocol, name))
    scores = np.asarray(utility(np.concatenate(blocks)), float).reshape(len(blocks), -1)
    rows = pd.DataFrame(
        [(p, o, f, s) for (p, o), line in zip(labels, scores) for f, s in zip(fractions, line)],
        columns=["protocol", "order", "fraction", "score"])
    return rows.groupby(["protocol", "order", "fraction"], sort=False, as_index=False)[
        "score"].mean()


def curve_summary(frame: pd.DataFrame) -> dict[str, float]:
    """Mean score over each curve's fractions, keyed "protocol_order".

    A good value ranks low: `removal_high_first` (removing the best samples should hurt) and
    `addition_low_first`; high: `removal_low_first` and `addition_high_first`. Compare each
    with its `*_random` counterpart.
    """
    means = frame.groupby(["protocol", "order"], sort=False)["score"].mean()
    return {f"{p}_{o}": float(v) for (p, o), v in means.items()}
