"""Random-projection attribution in the spirit of TRAK: influence in a k-dimensional sketch.

Where it sits: the influence family's answer for models too large for a Hessian. Per-sample
gradients are projected to `k` dimensions with a seeded Gaussian matrix `P (p, k)`,
`phi = P^T g` (Johnson-Lindenstrauss: inner products kept up to `O(1/sqrt(k))`), and the
influence formula of `scores.py` is solved in the sketch with the projected Gauss-Newton
curvature of the training objective:

    K = (1/n) sum_i sum_c p_ic (P^T g_ic)(P^T g_ic)^T + (l2/n) P^T D P
    A[i, b] = (1/n) phi_b^T (K + damping I)^-1 phi_i

where `g_ic` is sample i's CE gradient had its label been c, `p_ic` the model's probability
of class c (so the first term is the Fisher = Gauss-Newton matrix of the softmax
cross-entropy, which does not depend on the observed labels, unlike the empirical Fisher,
whose inverse would shrink exactly the mislabelled samples), and `D` the 0/1 mask of the
L2-penalised leaves. For a linear model the Gauss-Newton matrix is the Hessian, so with
`P = I` (`dim=None`) this reproduces the exact influence function. Values are averaged over
an ensemble of independently trained models, one projection each. Sign and units as in
`scores.py` (positive = helpful, nats of mean validation loss). The projected training
features `Phi (n, k)` are kept per model (`4 n k` bytes); scoring streams train chunks.

References:
  Park, Georgiev, Ilyas, Leclerc & Madry, "TRAK: Attributing Model Behavior at Scale",
  ICML 2023 (projection, Gauss-Newton kernel, ensembling); Johnson & Lindenstrauss (1984).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..data import Dataset
from ..errors import ValuationError
from ..models import Model
from .attribution import block_grads, finish, key_record, prepare, shares, stream
from .grads import Flat, chunk_size, flatten, grad_chunk, padded_chunks
from .solvers import auto_damping

__all__ = ["trak"]

Params = Any


def _features(model: Model, flat: Flat, n_classes: int):
    """Jitted `(theta, projection, x, y, weights) -> (phi (c, k), fisher (k, k))`, one chunk.

    `phi` are the projected gradients at the observed labels; `fisher` is the chunk's sum of
    `p_ic phi_ic phi_ic^T` over samples and classes. Padded rows must be masked by the caller
    (`weights`).
    """
    grad_fn = grad_chunk(model, flat)

    def run(theta, projection, x, y, weights):
        def project(g):
            return g if projection is None else g @ projection

        phi = project(grad_fn(theta, x, y))
        probs = (
            jax.nn.softmax(model.apply(flat.params(theta), x), axis=-1)
            * weights[:, None]
        )
        fisher = 0.0
        for c in range(n_classes):
            phi_c = project(grad_fn(theta, x, jnp.full_like(y, c)))
            fisher = fisher + (phi_c * probs[:, c : c + 1]).T @ phi_c
        return phi, fisher

    return jax.jit(run)


def _penalty_mask(flat: Flat) -> jax.Array:
    """`(p,)` 1 on the L2-penalised scalars (leaves with ndim >= 2), as in training."""
    tree = flat.params(flat.theta)
    selected = tree if flat.layers is None else {k: tree[k] for k in flat.layers}
    mask = jax.tree_util.tree_map(
        lambda a: jnp.full(a.shape, float(a.ndim >= 2)), selected
    )
    return ravel_pytree(mask)[0]


def trak(
    model: Model,
    params: Params | Sequence[Params],
    train: Dataset,
    valid: Dataset,
    *,
    key: jax.Array,
    dim: int | None = 512,
    l2: float = 1.0,
    damping: float | str = "auto",
    rcond: float = 1e-4,
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
      l2: the L2 penalty the models were trained with.
      damping, rcond: added to `K`; `"auto"` applies the spectral rule of `solvers` to the
        eigenvalues of `K` (no damping when `K` is well conditioned).
      layers: restrict the gradients to these top-level param keys.
      valid_blocks, chunk, memory_budget, return_matrix, matrix_path: as in
        `scores.influence_function`.

    Returns:
      `ValuationResult` (values averaged over the ensemble, stderr over validation blocks,
      counts = n_valid), or `(result, matrix)` when `return_matrix`.
    """
    t0 = time.perf_counter()
    if train.task == "regression":
        raise ValuationError("TRAK's kernel is a classifier's expected Fisher over its "
                             "classes, undefined for a regression target; use influence "
                             "method 'exact' or 'cg' (the squared loss), or 'tracin'")
    ensemble = list(params) if isinstance(params, (list, tuple)) else [params]
    if dim is not None and not (isinstance(dim, int) and dim >= 1):
        raise ValuationError(f"dim must be a positive int or None, got {dim!r}")
    train, valid, avg, (xt, yt), (xv, yv) = prepare(train, valid, valid_blocks)
    n = train.n
    feats, solves, infos = [], [], []
    for s, p_s in enumerate(ensemble):
        flat = flatten(p_s, layers)
        c = chunk or chunk_size(
            flat.dim, memory_budget=memory_budget, width=train.n_classes + 1, n=n
        )
        proj = None
        if dim is not None:
            proj = jax.random.normal(
                jax.random.fold_in(key, s), (flat.dim, dim), jnp.float32
            )
            proj = proj / jnp.sqrt(jnp.float32(dim))
        features = _features(model, flat, train.n_classes)
        phi, kernel = [], 0.0
        for xc, yc, size in padded_chunks(xt, yt, c):
            mask = (jnp.arange(xc.shape[0]) < size).astype(jnp.float32)
            f, k_c = features(flat.theta, proj, xc, yc, mask)
            phi.append(f[:size])
            kernel = kernel + k_c
        phi = jnp.concatenate(phi)  # (n, k)
        mask = _penalty_mask(flat)
        reg = jnp.diag(mask) if proj is None else proj.T @ (mask[:, None] * proj)
        kernel = kernel / n + (l2 / n) * reg
        evals, evecs = jnp.linalg.eigh(0.5 * (kernel + kernel.T))
        lmin, lmax = float(evals[0]), float(evals[-1])
        delta = auto_damping(damping, lmin, lmax, rcond)
        if not lmin + delta > 0:
            raise ValuationError(
                f"the projected curvature plus damping is not positive "
                f"definite ({lmin:.3g} + {delta:.3g}); pass damping='auto'"
            )
        phi_v = block_grads(
            grad_chunk(model, flat), flat.theta, xv, yv, avg, c
        )  # (B, p)
        phi_v = phi_v if proj is None else phi_v @ proj
        solves.append(
            evecs @ ((evecs.T @ phi_v.T) / (evals + delta)[:, None]) / n
        )  # (k, B)
        feats.append(phi)
        infos.append({"damping": delta, "lambda_min": lmin, "lambda_max": lmax})
    rows_per_chunk = chunk or 4096

    def rows():
        for start in range(0, n, rows_per_chunk):
            yield sum(
                np.asarray(f[start : start + rows_per_chunk] @ s)
                for f, s in zip(feats, solves)
            ) / len(ensemble)

    values, stderr, matrix = stream(
        rows(), n, shares(avg), return_matrix=return_matrix, matrix_path=matrix_path
    )
    return finish(
        "trak",
        train,
        valid,
        avg,
        values,
        stderr,
        matrix,
        params={
            "model": model.name,
            "dim": dim,
            "l2": l2,
            "n_models": len(ensemble),
            "key": key_record(key),
            "layers": None if layers is None else list(layers),
        },
        seed=None,
        extra={
            "damping": infos[0]["damping"],
            "lambda_min": infos[0]["lambda_min"],
            "n_params": flatten(ensemble[0], layers).dim,
            "models": infos,
            "seconds_total": time.perf_counter() - t0,
        },
        return_matrix=return_matrix,
    )
