"""Influence of each training sample on the validation loss, as a `ValuationResult`.

Where it sits: the top of the influence family. `influence(...)` is the one entry point
(methods "exact", "cg", "lissa", "lowrank", "tracin", "trak"); `influence_function` is the
Koh & Liang estimate with a pluggable inverse-HVP solver.

Sign convention (every method of the library): **higher = more helpful**. For influence
functions, value_i is the predicted *increase* of the mean validation loss when training
sample i is removed and the model retrained:

    removing i moves the optimum by  delta_theta ~ (1/n) H^-1 grad ce_i(theta)
    so   L_val(theta_{-i}) - L_val(theta) ~ (1/n) grad L_val(theta)^T H^-1 grad ce_i(theta)

with `H` the Hessian of the training objective `J = (sum_i ce_i + l2/2 ||W||^2) / n`
(`training.weighted_objective` at unit weights; the `1/n` comes from that normalisation:
the weighted optimum solves `sum_j w_j grad ce_j + l2 W = 0`, and setting `w_i = 0` is a
step of `-1` along `d theta / d w_i = -(n H)^-1 grad ce_i`). This is minus Koh & Liang's
`I_up,loss / n`. Values are in nats of mean validation cross-entropy; for a regression target
(`train.task == "regression"`) every `ce` above is the squared loss `(f(x) - y)^2 / 2` the
engine trains on (`grads.loss_of`), and values are in units of half the mean squared
validation error. For ridge regression (a quadratic objective, `H = (X^T X + l2 I_w) / n`
exactly) the only approximations left are the first-order expansion of the validation loss
and the missing leverage factor `1 / (1 - h_i)` of the exact leave-one-out update, so
influence and actual retraining agree to `O(h_i)` (tested in
`tests/influence/test_influence_regression.py`).

Validation blocks and error bars. The validation set is cut into `B` contiguous blocks
(`valid_blocks`; default one per validation point). Attribution `A[i, b]` is sample i's
influence on block b's mean loss; `values = sum_b (n_b / n_valid) A[:, b]` (the influence on
the whole validation loss, exact) and `stderr = std_b(A[:, b]) / sqrt(B)` (the standard error
over validation points, or the batch-means estimate of it for B < n_valid). Iterative
solvers need one inverse-HVP per block, so fewer blocks are much cheaper on large models.
The train x block matrix is streamed in train chunks and only kept when asked
(`return_matrix`, optionally into a memory-mapped `.npy` file at `matrix_path`).

References:
  Koh & Liang, "Understanding Black-box Predictions via Influence Functions", ICML 2017.
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
from ..training import weighted_objective
from .attribution import block_grads, finish, key_record, prepare, shares, stream
from .grads import (
    Flat,
    chunk_size,
    flatten,
    grad_chunk,
    loss_of,
    mean_objective,
    padded_chunks,
)
from .hvp import hvp
from .projection import trak
from .solvers import SOLVERS, Curvature, Solver, cg
from .tracin import tracin

__all__ = ["METHODS", "curvature", "influence", "influence_function"]

Params = Any


def curvature(
    model: Model, flat: Flat, x: jax.Array, y: jax.Array, *, l2: float,
    loss: str = "cross_entropy",
) -> Curvature:
    """HVPs of the training objective `J` at `flat.theta`, full-data and mini-batch.

    A mini-batch of size b gets weights `n / b` in `training.weighted_objective`, which makes
    its objective `mean_batch ce + l2/(2n) ||W||^2`, an unbiased estimate of `J`.
    """
    n = x.shape[0]

    def batch_objective(theta, xb, yb):
        w = jnp.full((xb.shape[0],), n / xb.shape[0], xb.dtype)
        return weighted_objective(model, flat.params(theta), xb, yb, w, l2, loss)

    def batch_hvp(key, v, size):
        idx = jax.random.choice(key, n, (size,), replace=False)
        return hvp(batch_objective, flat.theta, x[idx], y[idx])(v)

    return Curvature(
        hvp(mean_objective(model, flat, l2, loss), flat.theta, x, y), flat.dim, batch_hvp
    )


def influence_function(
    model: Model,
    params: Params,
    train: Dataset,
    valid: Dataset,
    *,
    solver: Solver | None = None,
    l2: float = 1.0,
    layers: Sequence[str] | None = None,
    key: jax.Array | None = None,
    valid_blocks: int | None = None,
    chunk: int | None = None,
    memory_budget: float = 2e8,
    return_matrix: bool = False,
    matrix_path: str | os.PathLike | None = None,
    method: str | None = None,
):
    """Koh & Liang influence of every training sample on the validation loss.

    `A[i, b] = (1/n) g_b^T (H + damping)^-1 g_i`, with `g_i` the CE gradient of training
    sample i, `g_b` block b's mean validation CE gradient and `H` the Hessian of the
    training objective with penalty `l2` (use the `l2` the model was trained with). See the
    module docstring for the sign, units and error bars.

    Args:
      model, params: the trained target model (ideally at the optimum of the objective; the
        formula is a first-order expansion around a minimum).
      train, valid: the training set the model was fitted on, and the validation set.
      solver: an inverse-HVP solver, e.g. `solvers.cg(tol=1e-6)` (default `cg()`).
      l2: the training objective's L2 penalty (`training.fit(l2=...)`).
      layers: restrict to these top-level param keys (e.g. `("out",)`); the others are held
        fixed (a block-diagonal approximation of `H`).
      key: randomness of the solver (Lanczos start, LiSSA batches); default `PRNGKey(0)`.
      valid_blocks: number of validation blocks `B` (default `n_valid`). Iterative solvers
        cost one inverse-HVP per block: on large models pass e.g. 8 to 32.
      chunk: training samples per gradient chunk; default from `memory_budget` (bytes).
      return_matrix: also return the `(n_train, B)` attribution matrix.
      matrix_path: write that matrix to this `.npy` file (memory-mapped) instead of RAM.
      method: name stored in the result (default `influence_<solver>`).

    Returns:
      `ValuationResult` (values, stderr over validation, counts = n_valid), or
      `(result, matrix)` when `return_matrix`.
    """
    t0 = time.perf_counter()
    solver = solver or cg()
    key = jax.random.PRNGKey(0) if key is None else key
    train, valid, avg, (xt, yt), (xv, yv) = prepare(train, valid, valid_blocks)
    flat = flatten(params, layers)
    chunk = chunk or chunk_size(flat.dim, memory_budget=memory_budget, n=train.n)
    loss = loss_of(train)
    grad_fn = jax.jit(grad_chunk(model, flat, loss))

    inverse = solver(curvature(model, flat, xt, yt, l2=l2, loss=loss), key=key)
    gv = block_grads(grad_fn, flat.theta, xv, yv, avg, chunk)  # (B, p)
    s = inverse.apply(gv.T) / train.n  # (p, B): (1/n) H^-1 g_b
    t_solve = time.perf_counter() - t0

    score = jax.jit(lambda theta, xc, yc, s: grad_fn(theta, xc, yc) @ s)
    rows = (
        np.asarray(score(flat.theta, xc, yc, s))[:size]
        for xc, yc, size in padded_chunks(xt, yt, chunk)
    )
    values, stderr, matrix = stream(
        rows, train.n, shares(avg), return_matrix=return_matrix, matrix_path=matrix_path
    )
    info = dict(inverse.info)
    name = method or f"influence_{info.get('solver', 'custom')}"
    extra = {
        **info,
        "n_params": flat.dim,
        "seconds_solve": t_solve,
        "seconds_total": time.perf_counter() - t0,
    }
    return finish(
        name,
        train,
        valid,
        avg,
        values,
        stderr,
        matrix,
        params={
            "model": model.name,
            "l2": l2,
            "layers": flat.layers,
            "key": key_record(key),
        },
        seed=None,
        extra=extra,
        return_matrix=return_matrix,
    )


METHODS = ("exact", "cg", "lissa", "lowrank", "tracin", "trak")


def influence(
    model: Model,
    params: Params,
    train: Dataset,
    valid: Dataset,
    *,
    method: str = "cg",
    l2: float = 1.0,
    key: jax.Array | None = None,
    checkpoints: Params | None = None,
    learning_rates: Any = None,
    **options: Any,
):
    """Value every training sample by its influence on the validation loss (one entry point).

    Args:
      model, params: the trained target model.
      train, valid: the training set it was fitted on, and the validation set.
      method: "exact" (dense Hessian), "cg", "lissa", "lowrank" (influence functions with that
        inverse-HVP solver, see `solvers`), "tracin" (needs `checkpoints` and
        `learning_rates`) or "trak" (random projection; `params` may be a list of models).
      l2: the L2 penalty the model was trained with (influence functions only).
      key: randomness (Lanczos starts, LiSSA batches, TRAK projections); default
        `PRNGKey(0)`.
      checkpoints, learning_rates: for "tracin" (see `tracin.tracin`).
      **options: solver settings (`damping`, `tol`, `maxiter`, `rank`, `depth`, `scale`,
        `batch_size`, ...) for the influence-function methods, `dim`/`damping` for "trak",
        and the shared `layers`, `valid_blocks`, `chunk`, `memory_budget`, `return_matrix`,
        `matrix_path`.

    Returns:
      `ValuationResult` with values (higher = more helpful; see the module docstring), stderr
      over validation points and counts = n_valid; `(result, matrix)` with
      `return_matrix=True`.

    Example:
      >>> import jax.numpy as jnp, valuation as va
      >>> data = va.make_classification(60, 3, seed=0)
      >>> m = va.logistic_regression(2)
      >>> p = va.fit_logistic_newton(jnp.asarray(data.x), jnp.asarray(data.y),
      ...                            jnp.ones((1, 60)), n_classes=2)
      >>> p = {"linear": {k: v[0] for k, v in p["linear"].items()}}
      >>> influence(m, p, data, data, method="exact").values.shape
      (60,)
    """
    if method not in METHODS:
        raise ValuationError(
            f"unknown influence method {method!r}; choose one of {METHODS}"
        )
    key = jax.random.PRNGKey(0) if key is None else key
    shared = {
        k: options.pop(k)
        for k in (
            "layers",
            "valid_blocks",
            "chunk",
            "memory_budget",
            "return_matrix",
            "matrix_path",
        )
        if k in options
    }
    if method == "tracin":
        if checkpoints is None or learning_rates is None or options:
            raise ValuationError(
                "method='tracin' needs checkpoints= (from training.fit("
                "save_every=...)) and learning_rates=, and no other options; "
                f"got extra options {sorted(options)}"
            )
        return tracin(
            model, checkpoints, train, valid, learning_rates=learning_rates, **shared
        )
    if method == "trak":
        return trak(model, params, train, valid, key=key, l2=l2, **options, **shared)
    try:
        solver = SOLVERS[method](**options)
    except TypeError as err:
        raise ValuationError(
            f"bad option for method={method!r}: {err}; see "
            f"valuation.influence.solvers.{SOLVERS[method].__name__}"
        ) from None
    return influence_function(
        model,
        params,
        train,
        valid,
        solver=solver,
        l2=l2,
        key=key,
        method=f"influence_{method}",
        **shared,
    )
