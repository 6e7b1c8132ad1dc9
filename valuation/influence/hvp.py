"""Hessian-vector products and the Hessian's spectrum, without materialising the Hessian.

Where it sits: between the training objective (`grads.mean_objective`) and the inverse-HVP
solvers (`solvers.py`). An HVP here is a function `(p, m) -> (p, m)` that multiplies the
Hessian with `m` column vectors at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["HVP", "hessian", "hvp", "lanczos"]

HVP = Callable[[jax.Array], jax.Array]


def hvp(fun: Callable[..., jax.Array], theta: jax.Array, *args) -> HVP:
    """`V -> H V` for the Hessian `H` of scalar `fun(theta, *args)` in `theta`, V `(p, m)`.

    Forward-over-reverse (`jvp` of `grad`): one forward-mode pass through the gradient, half
    the memory of reverse-over-reverse; vmapped over the `m` columns, so the primal gradient
    computation is shared by all columns. Jitted with `theta` and `args` (e.g. the training
    data) as arguments, not closed-over constants, so XLA does not constant-fold them.

    Example:
      >>> import jax.numpy as jnp
      >>> f = lambda t: 0.5 * jnp.sum(jnp.array([1.0, 3.0]) * t ** 2)
      >>> hvp(f, jnp.zeros(2))(jnp.eye(2)).tolist()
      [[1.0, 0.0], [0.0, 3.0]]
    """
    grad = jax.grad(fun)

    @jax.jit
    def product(theta, args, v):
        def one(u):
            return jax.jvp(lambda t: grad(t, *args), (theta,), (u,))[1]

        return jax.vmap(one, in_axes=1, out_axes=1)(v)

    return functools.partial(product, theta, args)


def hessian(hvp_fn: HVP, dim: int, *, block: int = 256) -> jax.Array:
    """The dense Hessian `(p, p)`, `block` columns at a time (symmetrised).

    For models with up to a few thousand parameters; memory `4 p^2` bytes.
    """
    eye = jnp.eye(dim, dtype=jnp.float32)
    cols = [hvp_fn(eye[:, s : s + block]) for s in range(0, dim, block)]
    h = jnp.concatenate(cols, axis=1)
    return 0.5 * (h + h.T)


def lanczos(hvp_fn: HVP, dim: int, steps: int, *, key: jax.Array):
    """Ritz pairs of the Hessian from `steps` Lanczos iterations with full reorthogonalisation.

    The extreme Ritz values converge first, so a few tens of steps estimate the largest and
    smallest eigenvalues (Ritz values lie inside the spectrum: the smallest one is an upper
    bound of the true smallest eigenvalue). With `steps = dim` the decomposition is exact up
    to rounding. Breakdown (an invariant subspace found early) restarts from a fresh random
    vector orthogonal to the basis.

    Args:
      hvp_fn: `(p, m) -> (p, m)` Hessian products.
      dim: `p`; steps: Krylov dimension `k <= p` (a Python int).
      key: draws the start vector (and restart vectors).

    Returns:
      `(eigenvalues (k,), eigenvectors (p, k))`, eigenvalues ascending.

    References:
      Lanczos (1950); Golub & Van Loan, "Matrix Computations", Sec. 10.1; used for influence by
      Schioppa et al., "Scaling Up Influence Functions", AAAI 2022.
    """
    steps = int(min(steps, dim))
    keys = jax.random.split(key, steps + 1)
    q0 = jax.random.normal(keys[0], (dim,), jnp.float32)
    q0 = q0 / jnp.linalg.norm(q0)
    basis = jnp.zeros((steps, dim), jnp.float32).at[0].set(q0)

    def orthogonalise(r, basis):
        for _ in range(2):  # twice is enough (Kahan-Parlett "twice is enough")
            r = r - basis.T @ (basis @ r)
        return r

    def body(j, carry):
        basis, alpha, beta = carry
        q = basis[j]
        w = hvp_fn(q[:, None])[:, 0]
        a = q @ w
        w = orthogonalise(w, basis)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(jnp.abs(a), jnp.max(jnp.abs(alpha))) + 1e-30
        fresh = orthogonalise(
            jax.random.normal(keys[j + 1], (dim,), jnp.float32), basis
        )
        broke = b <= 1e-6 * scale
        nxt = jnp.where(
            broke, fresh / jnp.linalg.norm(fresh), w / jnp.where(broke, 1.0, b)
        )
        basis = jnp.where(
            j + 1 < steps, basis.at[jnp.minimum(j + 1, steps - 1)].set(nxt), basis
        )
        return basis, alpha.at[j].set(a), beta.at[j].set(jnp.where(broke, 0.0, b))

    alpha = jnp.zeros(steps, jnp.float32)
    beta = jnp.zeros(steps, jnp.float32)
    basis, alpha, beta = jax.lax.fori_loop(0, steps, body, (basis, alpha, beta))
    # With full reorthogonalisation the projected matrix Q^T H Q is tridiagonal(alpha, beta).
    t = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    evals, evecs = jnp.linalg.eigh(t)
    return evals, basis.T @ evecs
