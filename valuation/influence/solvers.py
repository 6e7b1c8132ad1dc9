"""Inverse-Hessian-vector products: dense, conjugate gradient, LiSSA and low-rank.

Where it sits: `scores.influence_function` multiplies the validation gradients by `H^-1`,
where `H` is the Hessian of the training objective (`grads.mean_objective`). A solver is built
keyword-only (`cg(tol=1e-6)`) and then called on a `Curvature` (the HVPs) and a key:

    inverse = cg()(curvature, key=key)       # spectrum estimated here, once
    s = inverse.apply(v)                      # v (p, m) -> (H + damping I)^-1 v, (p, m)
    inverse.info                              # damping, eigenvalue estimates, iterations

Damping. Every solver solves with `H + damping * I`. `damping="auto"` (the default) takes it
from the spectrum: `damping = max(0, rcond * |lambda|_max - lambda_min)`, the smallest shift
that makes the damped Hessian positive definite with condition number at most `1 / rcond`. A
well-conditioned convex problem (an L2-regularised logistic regression) therefore gets no
damping at all; an indefinite one (an MLP away from an exact minimum) is shifted just enough.
The smallest eigenvalue seen is reported in `info["lambda_min"]` (exact for `dense`, a Lanczos
estimate otherwise, which can only overestimate it).

Failure. A solver that cannot return `H^-1 v` raises `ValuationError`, never garbage: `dense`
when `H + damping I` is not positive definite, `cg` on negative curvature or when it has not
reached `tol` after `maxiter` iterations, `lissa` when its residual after `depth` steps is
above `tol`, `lowrank` when a kept eigenvalue plus damping is not positive.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ValuationError
from .hvp import HVP, hessian, lanczos

__all__ = [
    "SOLVERS",
    "Curvature",
    "Inverse",
    "Solver",
    "auto_damping",
    "cg",
    "dense",
    "lissa",
    "lowrank",
]


class Curvature(NamedTuple):
    """The Hessian of the training objective, seen through products.

    Attributes:
      hvp: `(p, m) -> (p, m)`, products with the full-data Hessian.
      dim: `p`.
      batch_hvp: `(key, V (p, m), size) -> (p, m)`, an unbiased estimate of `H V` from a
        mini-batch of `size` samples drawn from `key` (`size` a Python int), or `None` when
        not available. Used by stochastic LiSSA.
    """

    hvp: HVP
    dim: int
    batch_hvp: Callable[[jax.Array, jax.Array, int], jax.Array] | None = None


class Inverse(NamedTuple):
    """A built inverse: `apply(V (p, m)) -> (H + damping I)^-1 V`, and what was learned."""

    apply: Callable[[jax.Array], jax.Array]
    info: dict[str, Any]


Solver = Callable[..., Inverse]


def auto_damping(damping, lmin: float, lmax: float, rcond: float) -> float:
    """The damping to use: `damping` checked, or the spectral rule of the module docstring."""
    if damping != "auto":
        if not (
            isinstance(damping, (int, float))
            and damping >= 0
            and math.isfinite(damping)
        ):
            raise ValuationError(
                f"damping must be 'auto' or a number >= 0, got {damping!r}"
            )
        return float(damping)
    top = max(abs(lmin), abs(lmax))
    return float(max(0.0, rcond * top - lmin))


def _spectrum(curv: Curvature, steps: int, key) -> tuple[float, float]:
    evals, _ = lanczos(curv.hvp, curv.dim, steps, key=key)
    return float(evals[0]), float(evals[-1])


def dense(*, damping: float | str = "auto", rcond: float = 1e-4) -> Solver:
    """Materialise `H` (p HVPs), eigendecompose it and invert exactly.

    For models with up to a few thousand parameters (memory `4 p^2` bytes, time `O(p^3)`).
    `info["lambda_min"]` is the exact smallest eigenvalue.
    """

    def build(curv: Curvature, *, key: jax.Array) -> Inverse:
        del key
        evals, evecs = jnp.linalg.eigh(hessian(curv.hvp, curv.dim))
        lmin, lmax = float(evals[0]), float(evals[-1])
        delta = auto_damping(damping, lmin, lmax, rcond)
        if lmin + delta <= 0:
            raise ValuationError(
                f"the Hessian plus damping is not positive definite (smallest eigenvalue "
                f"{lmin:.3g}, damping {delta:.3g}); pass damping='auto' or a damping above "
                f"{-lmin:.3g}"
            )
        inv = 1.0 / (evals + delta)

        def apply(v):
            return evecs @ (inv[:, None] * (evecs.T @ v))

        return Inverse(
            apply,
            {
                "solver": "dense",
                "damping": delta,
                "lambda_min": lmin,
                "lambda_max": lmax,
            },
        )

    return build


def cg(
    *,
    damping: float | str = "auto",
    tol: float = 1e-5,
    maxiter: int = 500,
    rcond: float = 1e-4,
    spectrum_steps: int = 30,
) -> Solver:
    """Conjugate gradient on HVPs, all right-hand sides as one block of independent CGs.

    Each iteration costs one batched HVP; the Hessian is never materialised.

    Args:
      damping: `"auto"` (from a Lanczos estimate of the spectrum, `spectrum_steps` HVPs) or a
        number.
      tol: stop a column when its residual `||(H + damping) x - v||` is below `tol * ||v||`;
        the true residual is checked again at the end (at most `10 * tol`).
      maxiter: iterations before giving up (raises `ValuationError`).
      rcond: the condition-number bound of auto damping (see the module docstring).
      spectrum_steps: Lanczos steps for auto damping.

    Raises:
      ValuationError: on negative curvature `p^T (H + damping) p <= 0` (the Hessian is
        indefinite and the damping too small) or when a column has not converged.

    References:
      Hestenes & Stiefel (1952); for influence: Koh & Liang, "Understanding Black-box
      Predictions via Influence Functions", ICML 2017, Sec. 3.
    """

    def build(curv: Curvature, *, key: jax.Array) -> Inverse:
        info = {"solver": "cg", "tol": tol, "maxiter": maxiter}
        if damping == "auto":
            lmin, lmax = _spectrum(curv, spectrum_steps, key)
            info.update(lambda_min=lmin, lambda_max=lmax)
            delta = auto_damping(damping, lmin, lmax, rcond)
        else:
            delta = auto_damping(damping, 0.0, 0.0, rcond)
        info["damping"] = delta
        solve = functools.partial(_block_cg, curv.hvp, delta, tol, maxiter)

        def apply(v):
            x, iters, negative, resid = solve(v)
            if bool(jnp.any(negative)):
                raise ValuationError(
                    "conjugate gradient met negative curvature: the Hessian plus damping "
                    f"({delta:.3g}) is not positive definite; pass damping='auto' or a larger "
                    "damping"
                )
            worst = float(jnp.max(resid))
            info.update(iterations=int(iters), residual=worst)
            if not worst <= 10 * tol:
                raise ValuationError(
                    f"conjugate gradient did not converge: relative residual {worst:.3g} after "
                    f"{int(iters)} iterations (tol {tol}); raise maxiter, damping or tol"
                )
            return x

        return Inverse(apply, info)

    return build


def _block_cg(hvp_fn: HVP, delta: float, tol: float, maxiter: int, b: jax.Array):
    """Independent CGs on the columns of `b (p, m)`; returns x, iterations, flags, residuals."""

    def op(v):
        return hvp_fn(v) + delta * v

    bnorm = jnp.linalg.norm(b, axis=0)
    target = tol * bnorm
    x = jnp.zeros_like(b)
    rs = jnp.sum(b * b, axis=0)
    negative = jnp.zeros(b.shape[1], bool)
    state = (0, x, b, b, rs, negative)

    def active(state):
        _, _, _, _, rs, negative = state
        return (jnp.sqrt(rs) > target) & ~negative

    def cond(state):
        return (state[0] < maxiter) & jnp.any(active(state))

    def body(state):
        it, x, r, p, rs, negative = state
        live = active(state)
        ap = op(p)
        pap = jnp.sum(p * ap, axis=0)
        negative = negative | (live & (pap <= 0))
        live = live & (pap > 0)
        alpha = jnp.where(live, rs / jnp.where(live, pap, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = jnp.sum(r * r, axis=0)
        beta = jnp.where(live, rs_new / jnp.where(live, rs, 1.0), 0.0)
        p = jnp.where(live, r + beta * p, p)
        rs = jnp.where(live, rs_new, rs)
        return it + 1, x, r, p, rs, negative

    it, x, _, _, _, negative = jax.lax.while_loop(cond, body, state)
    resid = jnp.linalg.norm(op(x) - b, axis=0) / jnp.maximum(bnorm, 1e-30)
    return x, it, negative, resid


def lissa(
    *,
    damping: float | str = "auto",
    scale: float | None = None,
    depth: int = 1000,
    tol: float = 1e-3,
    batch_size: int | None = None,
    rcond: float = 1e-4,
    spectrum_steps: int = 30,
) -> Solver:
    """LiSSA: the Neumann series of `(H + damping)^-1`, optionally with mini-batch HVPs.

    Iterates `h_0 = v`, `h_t = v + h_{t-1} - (H_t h_{t-1} + damping h_{t-1}) / scale` for
    `depth` steps and returns `h_depth / scale`. The fixed point is
    `scale * (H + damping)^-1 v`; the error shrinks by `1 - (lambda_min + damping) / scale`
    per step, so the series needs `scale > (lambda_max + damping) / 2` and
    `lambda_min + damping > 0`.

    Args:
      damping: `"auto"`, or a number in Hessian units. Auto takes the spectrum rule of the
        module docstring and raises it, if needed, to `scale * ln(1/tol) / depth - lambda_min`,
        the shift for which `depth` steps contract the error below `tol`.
      scale: default `1.1 * (lambda_max + damping)` from a Lanczos estimate.
      depth: number of steps (a Python int; fixes the compiled loop).
      tol: the relative residual `||(H + damping) x - v|| / ||v||` (full-data HVP) that the
        result must reach, else `ValuationError`. Stochastic runs need a looser tol.
      batch_size: `None` for full-data HVPs (a deterministic series); otherwise each step uses
        the Hessian of a random mini-batch of that size (the original stochastic LiSSA),
        drawn from the key.

    References:
      Agarwal, Bullins & Hazan, "Second-Order Stochastic Optimization for Machine Learning in
      Linear Time", JMLR 2017; Koh & Liang, ICML 2017, Sec. 3.
    """

    def build(curv: Curvature, *, key: jax.Array) -> Inverse:
        if batch_size is not None and curv.batch_hvp is None:
            raise ValuationError(
                "stochastic LiSSA needs mini-batch HVPs; pass batch_size=None"
            )
        k_spec, k_iter = jax.random.split(key)
        lmin, lmax = _spectrum(curv, spectrum_steps, k_spec)
        delta = auto_damping(damping, lmin, lmax, rcond)
        s = scale if scale is not None else 1.1 * (lmax + delta)
        if damping == "auto":
            delta = max(delta, s * math.log(1.0 / tol) / depth - lmin)
            s = scale if scale is not None else 1.1 * (lmax + delta)
        info = {
            "solver": "lissa",
            "damping": delta,
            "scale": s,
            "depth": depth,
            "tol": tol,
            "batch_size": batch_size,
            "lambda_min": lmin,
            "lambda_max": lmax,
        }

        def product(t, v):
            if batch_size is None:
                return curv.hvp(v)
            return curv.batch_hvp(jax.random.fold_in(k_iter, t), v, batch_size)

        def series(v):
            def step(h, t):
                return v + h - (product(t, h) + delta * h) / s, None

            h, _ = jax.lax.scan(step, v, jnp.arange(depth))
            x = h / s
            resid = jnp.linalg.norm(curv.hvp(x) + delta * x - v, axis=0)
            return x, resid / jnp.maximum(jnp.linalg.norm(v, axis=0), 1e-30)

        def apply(v):
            x, resid = series(v)
            worst = float(jnp.max(resid))
            info["residual"] = worst
            if not worst <= tol:
                raise ValuationError(
                    f"LiSSA did not converge: relative residual {worst:.3g} after {depth} steps "
                    f"(damping {delta:.3g}, scale {s:.3g}, smallest eigenvalue estimate "
                    f"{lmin:.3g}); raise depth or damping, or use cg"
                )
            return x

        return Inverse(apply, info)

    return build


def lowrank(
    *,
    rank: int = 64,
    damping: float | str = "auto",
    steps: int | None = None,
    rcond: float = 1e-4,
) -> Solver:
    """Invert `H` on its top-`rank` eigenspace, found once by Lanczos and reused for all v.

    `H^-1 v ~ U diag(1 / (lambda + damping)) U^T v` with `U (p, rank)` the Ritz vectors of the
    `rank` eigenvalues largest in magnitude; the rest of the space is dropped (the
    approximation of Schioppa et al.). With `rank = p` it is exact.

    Args:
      rank: eigenpairs kept.
      steps: Lanczos steps (default `min(p, 2 * rank)`: extra steps sharpen the top pairs).
      damping, rcond: as in the module docstring, from the Ritz values.

    References:
      Schioppa, Zablotskaia, Vilar & Sokolov, "Scaling Up Influence Functions", AAAI 2022.
    """

    def build(curv: Curvature, *, key: jax.Array) -> Inverse:
        r = min(rank, curv.dim)
        k = min(curv.dim, steps or 2 * r)
        evals, evecs = lanczos(curv.hvp, curv.dim, k, key=key)
        lmin, lmax = float(evals[0]), float(evals[-1])
        delta = auto_damping(damping, lmin, lmax, rcond)
        keep = np.argsort(-np.abs(np.asarray(evals)))[:r]
        lam, u = evals[keep], evecs[:, keep]
        if float(jnp.min(lam)) + delta <= 0:
            raise ValuationError(
                f"a kept eigenvalue plus damping is not positive ({float(jnp.min(lam)):.3g} + "
                f"{delta:.3g}); pass damping='auto' or a larger damping"
            )
        inv = 1.0 / (lam + delta)

        def apply(v):
            return u @ (inv[:, None] * (u.T @ v))

        return Inverse(
            apply,
            {
                "solver": "lowrank",
                "rank": r,
                "damping": delta,
                "lambda_min": lmin,
                "lambda_max": lmax,
                "lambda_kept_min": float(jnp.min(jnp.abs(lam))),
            },
        )

    return build


SOLVERS: dict[str, Callable[..., Solver]] = {
    "exact": dense,
    "cg": cg,
    "lissa": lissa,
    "lowrank": lowrank,
}
