"""TracIn: influence traced along the training trajectory, from saved checkpoints.

Where it sits: a Hessian-free member of the influence family. It takes the stacked
checkpoints that `training.fit(..., save_every=k)` returns (leading axis = checkpoint) and
the learning rate(s) in force between them.

    A[i, b] = sum_c (eta_c / n) * g_b(theta_c) . g_i(theta_c)

One full-batch gradient step of size eta on the training objective
`J = (sum_i ce_i + l2/2 ||W||^2) / n` changes block b's mean validation loss by about
`-eta g_b . grad J`, of which `-(eta / n) g_b . g_i` is training sample i's share; TracIn
sums these shares over checkpoints (each standing for the `save_every` steps around it, so
pass `eta_c = learning rate * save_every` to approximate the whole trajectory). Positive =
training on i lowered the validation loss = helpful. The L2 term belongs to no sample and is
left out. For adaptive optimizers (Adam) the learning rate is only a proxy of the step size,
as in the paper.

References:
  Pruthi, Liu, Kale & Sundararajan, "Estimating Training Data Influence by Tracing Gradient
  Descent", NeurIPS 2020 (TracInCP).
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
from .attribution import finish, prepare, shares, stream
from .grads import chunk_size, flatten, grad_chunk, loss_of, padded_chunks

__all__ = ["tracin"]

Params = Any


def tracin(
    model: Model,
    checkpoints: Params,
    train: Dataset,
    valid: Dataset,
    *,
    learning_rates: float | Sequence[float] | Any,
    layers: Sequence[str] | None = None,
    valid_blocks: int | None = None,
    chunk: int | None = None,
    memory_budget: float = 2e8,
    return_matrix: bool = False,
    matrix_path: str | os.PathLike | None = None,
):
    """TracIn-CP values: summed, learning-rate-weighted gradient dot products.

    Args:
      model: the target model.
      checkpoints: params pytree with a leading checkpoint axis `C` (from
        `training.fit(..., save_every=...)`), or a single params pytree with `C = 1` given as
        a list `[params]`.
      train, valid: the training and validation sets.
      learning_rates: a scalar or `(C,)` step weights `eta_c` (see the module docstring).
      layers: restrict the gradients to these top-level param keys.
      valid_blocks, chunk, memory_budget, return_matrix, matrix_path: as in
        `scores.influence_function`.

    Returns:
      `ValuationResult` (values in nats of mean validation loss per unit of eta, stderr over
      validation, counts = n_valid), or `(result, matrix)` when `return_matrix`.

    Example:
      >>> import jax, jax.numpy as jnp, valuation as va
      >>> data = va.make_classification(40, 3, seed=0)
      >>> m = va.logistic_regression(2)
      >>> _, ckpts = va.fit(m, jnp.asarray(data.x), jnp.asarray(data.y), jnp.ones(40),
      ...                   key=jax.random.PRNGKey(0), steps=20, save_every=10)
      >>> tracin(m, ckpts, data, data, learning_rates=0.05).values.shape
      (40,)
    """
    t0 = time.perf_counter()
    if isinstance(checkpoints, (list, tuple)):
        checkpoints = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *checkpoints)
    n_ckpt = jax.tree_util.tree_leaves(checkpoints)[0].shape[0]
    lrs = jnp.broadcast_to(jnp.asarray(learning_rates, jnp.float32), (n_ckpt,))
    if lrs.shape != (n_ckpt,):
        raise ValuationError(
            f"learning_rates has shape {jnp.shape(learning_rates)} for "
            f"{n_ckpt} checkpoints; pass a scalar or one per checkpoint"
        )
    train, valid, avg, (xt, yt), (xv, yv) = prepare(train, valid, valid_blocks)
    first = jax.tree_util.tree_map(lambda a: a[0], checkpoints)
    dim = flatten(first, layers).dim
    chunk = chunk or chunk_size(dim, memory_budget=memory_budget, width=2, n=train.n)
    avg_j = jnp.asarray(avg)

    def grads_at(params_c, x, y):  # (c, p) at one checkpoint
        flat = flatten(params_c, layers)
        return grad_chunk(model, flat, loss_of(train))(flat.theta, x, y)

    @jax.jit
    def valid_part(
        checkpoints, x, y, weights
    ):  # this chunk's weighted sum of g: (C, B, p)
        return jax.vmap(lambda pc: weights @ grads_at(pc, x, y))(checkpoints)

    vg = 0.0
    for start, (xc, yc, size) in zip(
        range(0, valid.n, chunk), padded_chunks(xv, yv, chunk)
    ):
        w = (
            jnp.zeros((avg.shape[0], xc.shape[0]))
            .at[:, :size]
            .set(avg_j[:, start : start + size])
        )
        vg = vg + valid_part(checkpoints, xc, yc, w)

    @jax.jit
    def score(checkpoints, lrs, vg, x, y):  # (c, B): sum_c eta_c / n g_i . g_b
        def add(acc, inp):
            params_c, lr, vgc = inp
            return acc + lr * grads_at(params_c, x, y) @ vgc.T, None

        acc0 = jnp.zeros((x.shape[0], avg.shape[0]), jnp.float32)
        return jax.lax.scan(add, acc0, (checkpoints, lrs, vg))[0] / train.n

    rows = (
        np.asarray(score(checkpoints, lrs, vg, xc, yc))[:size]
        for xc, yc, size in padded_chunks(xt, yt, chunk)
    )
    values, stderr, matrix = stream(
        rows, train.n, shares(avg), return_matrix=return_matrix, matrix_path=matrix_path
    )
    return finish(
        "tracin",
        train,
        valid,
        avg,
        values,
        stderr,
        matrix,
        params={
            "model": model.name,
            "layers": None if layers is None else list(layers),
            "learning_rates": np.asarray(lrs).tolist(),
        },
        seed=None,
        extra={
            "n_checkpoints": int(n_ckpt),
            "n_params": dim,
            "seconds_total": time.perf_counter() - t0,
        },
        return_matrix=return_matrix,
    )
