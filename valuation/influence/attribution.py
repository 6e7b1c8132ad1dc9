"""Blocked train x validation attribution: validation blocks, streaming, results.

Where it sits: shared by every influence method (`scores`, `tracin`, `projection`). The
validation set is cut into `B` contiguous blocks (default one per point); a method produces
the `(n_train, B)` attribution matrix in consecutive train chunks, and `stream` reduces the
chunks to per-sample values and standard errors without holding the matrix (unless asked,
optionally as a memory-mapped `.npy` file).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..data import Dataset, align_classes
from ..errors import ValuationError
from ..results import ValuationResult
from .grads import padded_chunks

__all__ = [
    "block_grads",
    "finish",
    "key_record",
    "prepare",
    "shares",
    "stream",
    "valid_blocks_matrix",
]


def valid_blocks_matrix(n_valid: int, blocks: int | None) -> np.ndarray:
    """`(B, n_valid)` averaging matrix of contiguous, near-equal validation blocks.

    Row b holds `1 / n_b` on block b's points, so `M @ G` gives block-mean gradients.
    """
    blocks = n_valid if blocks is None else int(blocks)
    if not 2 <= blocks <= n_valid:
        raise ValuationError(
            f"valid_blocks={blocks} must lie in [2, n_valid={n_valid}]; the "
            "standard error needs at least two validation blocks"
        )
    label = np.repeat(
        np.arange(blocks),
        np.diff(np.linspace(0, n_valid, blocks + 1).round().astype(int)),
    )
    m = (label[None, :] == np.arange(blocks)[:, None]).astype(np.float32)
    return m / m.sum(axis=1, keepdims=True)


def block_grads(
    grad_fn: Callable,
    theta: jax.Array,
    x: jax.Array,
    y: jax.Array,
    avg: np.ndarray,
    chunk: int,
) -> jax.Array:
    """Block-mean gradients `(B, p)`: `avg (B, n) @ per-sample grads (n, p)`, chunked."""
    out, start = 0.0, 0
    avg = jnp.asarray(avg)
    for xc, yc, size in padded_chunks(x, y, chunk):
        g = grad_fn(theta, xc, yc)[:size]
        out = out + avg[:, start : start + size] @ g
        start += size
    return out


def stream(
    chunks: Iterable[np.ndarray],
    n: int,
    weights: np.ndarray,
    *,
    return_matrix: bool,
    matrix_path: str | os.PathLike | None,
):
    """Reduce streamed `(c, B)` attribution rows to values, stderr and (optionally) the matrix.

    Args:
      chunks: consecutive row blocks of the `(n, B)` attribution matrix.
      weights: `(B,)` block shares `n_b / n_valid` (sum 1).

    Returns:
      `(values (n,), stderr (n,), matrix or None)`.
    """
    blocks = len(weights)
    values, stderr = np.empty(n), np.empty(n)
    matrix = None
    if matrix_path is not None:
        matrix = np.lib.format.open_memmap(
            os.fspath(matrix_path), mode="w+", dtype=np.float32, shape=(n, blocks)
        )
    elif return_matrix:
        matrix = np.empty((n, blocks), np.float32)
    start = 0
    for a in chunks:
        a = np.asarray(a, np.float64)
        stop = start + a.shape[0]
        values[start:stop] = a @ weights
        stderr[start:stop] = a.std(axis=1, ddof=1) / np.sqrt(blocks)
        if matrix is not None:
            matrix[start:stop] = a
        start = stop
    if isinstance(matrix, np.memmap):
        matrix.flush()
    return values, stderr, matrix


def prepare(train: Dataset, valid: Dataset, valid_blocks: int | None):
    train, valid = align_classes(train, valid)
    avg = valid_blocks_matrix(valid.n, valid_blocks)
    xt, yt = jnp.asarray(train.x), jnp.asarray(train.y)
    xv, yv = jnp.asarray(valid.x), jnp.asarray(valid.y)
    return train, valid, avg, (xt, yt), (xv, yv)


def finish(
    method: str,
    train: Dataset,
    valid: Dataset,
    avg: np.ndarray,
    values,
    stderr,
    matrix,
    *,
    params: dict,
    seed: Any,
    extra: dict,
    return_matrix: bool,
):
    """Wrap streamed values into a `ValuationResult` (and the matrix when asked)."""
    result = ValuationResult(
        values=values,
        stderr=stderr,
        counts=np.full(train.n, valid.n, np.int64),
        ids=train.ids,
        method=method,
        params=params,
        seed=seed,
        extra={**extra, "valid_blocks": int(avg.shape[0])},
    )
    return (result, matrix) if return_matrix else result


def shares(avg: np.ndarray) -> np.ndarray:
    """Block shares `n_b / n_valid` from the averaging matrix."""
    sizes = (avg > 0).sum(axis=1)
    return sizes / sizes.sum()


def key_record(key: jax.Array) -> list[int]:
    """A JAX key as JSON-ready integers (raw `uint32` keys and typed keys alike)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).ravel().tolist()
