"""Noisy-label detection: do the lowest values find the flipped labels?

The protocol of OpenDataVal and the Data-OOB paper: flag the k lowest-valued samples, where k is
the number of flipped labels, and report the F1 score of that flag against the flipped mask;
AUROC scores the whole ranking (probability that a flipped sample is valued below a clean one).
"""

from __future__ import annotations

import numpy as np

__all__ = ["detection_f1", "detection_auroc", "random_f1"]


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
    pos, neg = -values[noisy], -values[~noisy]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    # Mann-Whitney U from mid-ranks.
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="stable")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mid, counts)
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def random_f1(noisy: np.ndarray) -> float:
    """Expected F1 of flagging k = #noisy samples at random: the noise rate k/n."""
    noisy = np.asarray(noisy, bool)
    return float(noisy.mean())
