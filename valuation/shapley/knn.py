"""KNN-Shapley: exact Shapley values of the K-nearest-neighbour utility, in closed form.

Where it sits: the fastest value family (no model is trained); a proxy for the target model
that becomes model-specific when distances are taken in the model's own embedding.

For one validation point (x, y), the KNN utility of a coalition S is
`U(S) = (1/K) sum_{j <= min(K, |S|)} 1[y_{a_j(S)} = y]`, with `a_j(S)` the j-th nearest
member of S. Sorting the N training points by distance to x (a_1 nearest), its Shapley
values are (Jia et al., "Efficient Task-Specific Data Valuation for Nearest Neighbor
Algorithms", VLDB 2019, Theorem 1):

    s_{a_N} = 1[y_{a_N} = y] / N          (for K > N: 1[y_{a_N} = y] / K)
    s_{a_i} = s_{a_{i+1}} + (1[y_{a_i} = y] - 1[y_{a_{i+1}} = y]) / K * min(K, i) / i

which is a reversed cumulative sum. The value over a validation set is the mean over its
points (the utility is their mean). Computed in JAX, vmapped over validation points and
chunked over them, so memory is `O(chunk * N)`: 100,000 training x 1,000 validation points
fit in a few hundred MB. The values are exact (stderr 0); counts are the number of
validation points.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ValuationError
from ..estimate import Estimate

__all__ = ["embeddings", "knn_shapley"]


@jax.jit
def _sq_distances(xt, sq_t, xv):
    """Squared Euclidean distances `(c, N)` of a chunk of validation points."""
    return sq_t[None, :] - 2.0 * xv @ xt.T + jnp.sum(xv * xv, axis=1)[:, None]


def _argsort_rows(d2: jax.Array) -> jax.Array:
    """Training points by distance, nearest first, `(c, N)` int32.

    On CPU the sort runs in numpy: XLA's CPU sort is ~18x slower than numpy's introsort on
    rows of 100,000 floats (measured: 2.9 s vs 0.17 s for 40 rows); elsewhere it stays on
    the device. Ties between equidistant training points are broken arbitrarily but
    deterministically.
    """
    if jax.default_backend() == "cpu":
        return jnp.asarray(np.argsort(np.asarray(d2), axis=1).astype(np.int32))
    return jnp.argsort(d2, axis=1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames="k")
def _chunk_sum(order, yt, yv, keep, *, k):
    """Sum over a chunk of validation points of their KNN-Shapley values, `(N,)`.

    `order` `(c, N)` lists training points nearest first; the recursion runs along it.
    """
    n = order.shape[1]
    match = (yt[order] == yv[:, None]).astype(jnp.float32)  # (c, N), nearest first
    i = jnp.arange(1, n, dtype=jnp.float32)
    step = (match[:, :-1] - match[:, 1:]) / k * jnp.minimum(k, i) / i  # (c, N-1)
    tail = jnp.cumsum(step[:, ::-1], axis=1)[:, ::-1]
    s_sorted = jnp.concatenate([tail, jnp.zeros_like(tail[:, :1])], axis=1)
    # farthest point: it counts only when fewer than K others are present (P = min(K, N)/N)
    s_sorted = s_sorted + match[:, -1:] * (min(k, n) / (n * k))
    rows = jnp.arange(order.shape[0])[:, None]
    values = jnp.zeros_like(s_sorted).at[rows, order].set(s_sorted)
    return jnp.sum(keep[:, None] * values, axis=0)


def knn_shapley(x_train: Any, y_train: Any, x_valid: Any, y_valid: Any, *, k: int = 10,
                chunk: int | None = None) -> Estimate:
    """Exact KNN-Shapley values of the training points (Jia et al., VLDB 2019).

    Args:
      x_train: `(N, d)` features or embeddings; y_train: `(N,)` int labels.
      x_valid: `(M, d)`; y_valid: `(M,)`, same label coding.
      k: neighbours of the KNN classifier.
      chunk: validation points per compiled call (default about 4 million distances per
        call, i.e. `4e6 / N`); the last chunk is padded. Fixes memory, not values.

    Returns:
      `Estimate(values (N,), stderr zeros, counts = M)`: the mean over validation points
      of each training point's Shapley value for the KNN utility (units: accuracy).

    Example:
      >>> est = knn_shapley([[0.0], [1.0]], [0, 1], [[0.1]], [0], k=1)
      >>> [round(float(v), 3) for v in est.values]
      [1.0, 0.0]
    """
    xt, xv = np.asarray(x_train, np.float32), np.asarray(x_valid, np.float32)
    yt, yv = np.asarray(y_train, np.int32), np.asarray(y_valid, np.int32)
    if xt.ndim != 2 or xv.ndim != 2 or xt.shape[1] != xv.shape[1]:
        raise ValuationError(f"KNN-Shapley needs 2-D features with equal widths, got "
                             f"{xt.shape} and {xv.shape}")
    if yt.shape != (xt.shape[0],) or yv.shape != (xv.shape[0],):
        raise ValuationError("KNN-Shapley needs one label per row of x_train and x_valid")
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValuationError(f"k must be a positive int, got {k!r}")
    n, m = xt.shape[0], xv.shape[0]
    chunk = int(chunk or max(1, min(m, 4_000_000 // max(n, 1))))
    pad = -m % chunk
    xv = np.concatenate([xv, np.zeros((pad, xv.shape[1]), np.float32)])
    yv = np.concatenate([yv, np.zeros(pad, np.int32)])
    keep = np.concatenate([np.ones(m, np.float32), np.zeros(pad, np.float32)])
    xt_j, yt_j = jnp.asarray(xt), jnp.asarray(yt)
    sq_t = jnp.sum(xt_j * xt_j, axis=1)
    total = jnp.zeros(n, jnp.float32)
    for start in range(0, m + pad, chunk):
        sl = slice(start, start + chunk)
        order = _argsort_rows(_sq_distances(xt_j, sq_t, jnp.asarray(xv[sl])))
        total = total + _chunk_sum(order, yt_j, jnp.asarray(yv[sl]), jnp.asarray(keep[sl]),
                                   k=int(k))
    return Estimate(np.asarray(total, np.float64) / m, np.zeros(n), np.full(n, m, np.int64))


def embeddings(utility, embedding: Any = "raw") -> tuple[np.ndarray, np.ndarray]:
    """Training and validation features for KNN-Shapley.

    Args:
      utility: a `Utility` (its train/valid sets and target model).
      embedding: "raw" (the features), "model" (the target model's penultimate layer,
        `model.embed`, with params trained on the full training set, so that values depend
        on the target model) or a pair `(train_embedding (N, w), valid_embedding (M, w))`.
    """
    train, valid = utility.train, utility.valid
    if isinstance(embedding, str) and embedding == "raw":
        return train.x, valid.x
    if isinstance(embedding, str) and embedding == "model":
        if utility.model.embed is None:
            raise ValuationError(f"model {utility.model.name} has no embed function; pass "
                                 "embedding='raw' or your own (train, valid) embeddings")
        params = utility.fit_full()
        return (np.asarray(utility.model.embed(params, jnp.asarray(train.x))),
                np.asarray(utility.model.embed(params, jnp.asarray(valid.x))))
    if isinstance(embedding, (tuple, list)) and len(embedding) == 2:
        et, ev = (np.asarray(e, np.float32) for e in embedding)
        if et.shape[0] != train.n or ev.shape[0] != valid.n:
            raise ValuationError(f"embeddings have {et.shape[0]} and {ev.shape[0]} rows for "
                                 f"{train.n} training and {valid.n} validation samples")
        return et, ev
    raise ValuationError(f"unknown embedding {embedding!r}; pass 'raw', 'model' or a pair "
                         "(train_embedding, valid_embedding)")
