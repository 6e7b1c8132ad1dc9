"""Random-projection attribution in the spirit of TRAK: influence in a k-dimensional sketch.

Where it sits: the influence family's answer for models too large for a Hessian. Per-sample
gradients are projected to `k` dimensions with a seeded Gaussian matrix `P (p, k)`,
`phi_i = P^T g_i` (Johnson-Lindenstrauss: inner products are kept up to `O(1/sqrt(k))`), and
the influence formula is solved in the sketch with the Gauss-Newton (empirical Fisher)
curvature of the projected features:

    A[i, b] = (1/n) phi_b^T (Phi^T Phi / n + damping I)^-1 phi_i

averaged over an ensemble of independently trained models (one projection each). With
`P = I` this is the influence function with the Hessian replaced by the gradient outer
products; sign and units follow `scores.py` (positive = helpful, nats of mean validation
loss). The projected training features `Phi (n, k)` are kept per model (`4 n k` bytes);
scoring streams train chunks, so the `(n, B)` matrix is never held unless asked.

References:
  Park, Georgiev, Ilyas, Leclerc & Madry, "TRAK: Attributing Model Behavior at Scale",
  ICML 2023 (projection, ensembling); Johnson & Lindenstrauss (1984).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..data import Dataset
from ..errors import ValuationError
from ..models import Model
from .attribution import block_grads, finish, prepare, shares, stream
from .grads import chunk_size, flatten, grad_chunk, padded_chunks

__all__ = ["trak", "projected_grads"]

Params = Any


def projected_grads(grad_fn, theta: jax.Array, x: jax.Array, y: jax.Array,
                    projection: jax.Array | None, chunk: int) -> jax.Array:
    """`(n, k)` per-sample gradients times `projection (p, k)` (`None`: unprojected)."""
    def one(xc, yc):
        g = grad_fn(theta, xc, yc)
        return g if projection is None else g @ projection

    one = jax.jit(one)
    return jnp.concatenate([one(xc, yc)[:size] for xc, yc, size in padded_chunks(x, y, chunk)])


def trak(
    model: Model,
    params: Params | Sequence[Params],
    train: Dataset,
    valid: Dataset,
    *,
    key: jax.Array,
    dim: int | None = 512,
    damping: float | str = "auto",
    rcond: float = 1e-3,
    layers: Sequence[str] | None = None,
    valid_blocks: int | None = None,
    chunk: int | None = None,
    memory_budget: float = 2e8,
    return_matrix: bool = False,
    matrix_path: str | os.PathLike | None = None,
):
    """Projected-gradient influence, ensembled over models.

    Args:
      model: the target model.
      params: one trained params pytree, or a list of them (an ensemble: e.g. the same model
        trained from different keys or on different halves of the data).
      train, valid: the training and validation sets.
      key: model s uses the projection drawn from `fold_in(key, s)`.
      dim: projection dimension `k`; `None` for no projection (`P = I`, the exact-gradient
        reference, memory `4 n p` bytes).
      damping: ridge of the projected curvature; `"auto"` = `rcond * trace(K) / k` with
        `K = Phi^T Phi / n` (the mean eigenvalue scaled by `rcond`).
      layers: restrict the gradients to these top-level param keys.
      valid_blocks, chunk, memory_budget, return_matrix, matrix_path: as in
        `scores.influence_function`.

    Returns:
      `ValuationResult` (values averaged over the ensemble, stderr over validation blocks,
      counts = n_valid), or `(result, matrix)` when `return_matrix`.
    """
    t0 = time.perf_counter()
    ensemble = list(params) if isinstance(params, (list, tuple)) else [params]
    if dim is not None and not (isinstance(dim, int) and dim >= 1):
        raise ValuationError(f"dim must be a positive int or None, got {dim!r}")
    train, valid, avg, (xt, yt), (xv, yv) = prepare(train, valid, valid_blocks)
    n = train.n
    feats, solves, dampings = [], [], []
    for s, p_s in enumerate(ensemble):
        flat = flatten(p_s, layers)
        grad_fn = jax.jit(grad_chunk(model, flat))
        c = chunk or chunk_size(flat.dim, memory_budget=memory_budget, n=n)
        proj = None
        if dim is not None:
            proj = jax.random.normal(jax.random.fold_in(key, s), (flat.dim, dim), jnp.float32)
            proj = proj / jnp.sqrt(jnp.float32(dim))
        phi = projected_grads(grad_fn, flat.theta, xt, yt, proj, c)  # (n, k)
        phi_v = block_grads(grad_fn, flat.theta, xv, yv, avg, c)  # (B, p)
        phi_v = phi_v if proj is None else phi_v @ proj
        kernel = phi.T @ phi / n
        k = kernel.shape[0]
        delta = (rcond * float(jnp.trace(kernel)) / k if damping == "auto" else float(damping))
        if not delta > 0:
            raise ValuationError(f"damping must be > 0 for the projected solve, got {delta}")
        chol = jax.scipy.linalg.cho_factor(kernel + delta * jnp.eye(k, dtype=kernel.dtype))
        solves.append(jax.scipy.linalg.cho_solve(chol, phi_v.T) / n)  # (k, B)
        feats.append(phi)
        dampings.append(delta)
    c = chunk or 4096

    def rows():
        for start in range(0, n, c):
            yield sum(np.asarray(f[start:start + c] @ s)
                      for f, s in zip(feats, solves)) / len(ensemble)

    values, stderr, matrix = stream(rows(), n, shares(avg), return_matrix=return_matrix,
                                    matrix_path=matrix_path)
    return finish("trak", train, valid, avg, values, stderr, matrix,
                  params={"model": model.name, "dim": dim, "n_models": len(ensemble),
                          "layers": None if layers is None else list(layers)},
                  seed=None, extra={"damping": dampings,
                                    "seconds_total": time.perf_counter() - t0},
                  return_matrix=return_matrix)
