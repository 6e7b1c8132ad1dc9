"""Rank agreement between two value vectors: Spearman's rho and top-k overlap.

Where it sits: an evaluation protocol comparing a run with a reference run (a longer run, the
exact values, or another method) on the same samples. Ranking is what most uses of values
need (which samples to drop, which to inspect), so agreement is measured on ranks, not on
raw values.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mid_ranks", "spearman", "top_k_overlap"]


def mid_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values` in ascending order, tied values sharing their mean rank."""
    values = np.asarray(values, float)
    order = np.argsort(values, kind="stable")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's correlation of the mid-ranks, in [-1, 1].

    NaN when either vector is constant (its ranks carry no order).
    """
    ra, rb = mid_ranks(a), mid_ranks(b)
    if ra.size != rb.size:
        raise ValueError(f"spearman needs equal lengths, got {ra.size} and {rb.size}")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    return float(np.sum(ra * rb) / denom) if denom > 0 else float("nan")


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int, *, lowest: bool = False) -> float:
    """Share of the k highest (or lowest) samples of `a` that are also among those of `b`.

    Ties at the cut are broken by position (stable sort).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    sign = 1.0 if lowest else -1.0
    top_a = np.argsort(sign * a, kind="stable")[:k]
    top_b = np.argsort(sign * b, kind="stable")[:k]
    return float(np.intersect1d(top_a, top_b).size / k)
