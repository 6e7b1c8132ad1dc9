"""Noisy-label detection: do the lowest values find the flipped labels?

The protocol of OpenDataVal and the Data-OOB paper: flag the k lowest-valued samples, where k is
the number of flipped labels, and report the F1 score of that flag against the flipped mask;
AUROC scores the whole ranking (probability that a flipped sample is valued below a clean one).
"""

from __future__ import annotations

import numpy as np

from .rank_correlation import mid_ranks

__all__ = ["detection_auroc", "detection_f1", "random_f1"]


def detection_f1(values: np.ndarray, noisy: np.ndarray, k: int | None = None) -> float:
    """F1 of flagging the `k` lowest values (default k = number of noisy samples).

    Ties at the threshold are broken by position (stable sort).
    """
    values, noisy = np.asarray(values, float), np.asarray(noisy, bool)
    k = int(noisy.sum()) if k is None else int(k)
    if k == 0 or noisy.sum() == 0:
        return 0.0
    flagged = np.zeros(len(values), bool)
    flagged[np.argsort(values, kind="stable")[:k]] = True
    tp = np.sum(flagged & noisy)
    precision, recall = tp / k, tp / noisy.sum()
    return float(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))


def detection_auroc(values: np.ndarray, noisy: np.ndarray) -> float:
    """AUROC of `-values` as a score for `noisy` (ties count one half)."""
    values, noisy = np.asarray(values, float), np.asarray(noisy, bool)
    n_pos, n_neg = int(noisy.sum()), int((~noisy).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Mann-Whitney U: rank sum of the noisy samples under the score -values, ties at mid-rank.
    ranks = mid_ranks(-values)
    u = ranks[noisy].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def random_f1(noisy: np.ndarray) -> float:
    """Expected F1 of flagging k = #noisy samples at random: the noise rate k/n."""
    noisy = np.asarray(noisy, bool)
    return float(noisy.mean())


def knn_label_agreement(x: np.ndarray, y: np.ndarray, k: int = 10, *,
                        reference: tuple[np.ndarray, np.ndarray] | None = None,
                        block: int = 1024) -> np.ndarray:
    """Share of each sample's k nearest neighbours that carry its label.

    The trivial baseline every method is printed beside: strong on small tabular data.
    Neighbours come from `x` itself (each sample excluded from its own neighbourhood) or,
    for new samples, from `reference`. Euclidean distances, computed in blocks of `block`
    rows so memory stays O(block * n).

    Args:
      x: features `(n, d)`; y: labels `(n,)`.
      reference: `(x_ref (N, d), y_ref (N,))` to look the neighbours up in; default `(x, y)`.

    Returns:
      `(n,)` shares in [0, 1]; low = the neighbourhood disagrees with the label.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    x_ref, y_ref = (x, y) if reference is None else (np.asarray(reference[0], np.float64),
                                                       np.asarray(reference[1]))
    sq, sq_ref = (x**2).sum(1), (x_ref**2).sum(1)
    out = np.empty(len(x))
    for start in range(0, len(x), block):
        rows = slice(start, start + block)
        dist = sq[rows, None] + sq_ref[None, :] - 2.0 * x[rows] @ x_ref.T
        if reference is None:
            dist[np.arange(dist.shape[0]), np.arange(start, start + dist.shape[0])] = np.inf
        nearest = np.argpartition(dist, k, axis=1)[:, :k]
        out[rows] = (y_ref[nearest] == y[rows, None]).mean(axis=1)
    return out
