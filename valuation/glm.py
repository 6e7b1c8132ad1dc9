"""Batched solvers for linear targets: logistic and ridge regression on many subsets at once.

Where it sits: under the utility engine (`utility.make_utility`), which calls these for
`models.logistic_regression` and `models.linear_regression` targets. Every per-step cost is a
matrix product shared by the whole batch of `B` subsets, never a per-model Hessian.

Objectives (`D = d + 1` with the bias; `w` the subset's sample weights, `norm = max(sum w, 1)`;
biases are not penalised):

* logistic: `J(theta) = (sum_i w_i CE(x_i theta, y_i) + l2/2 ||theta_W||^2) / norm`, with
  scikit-learn's parametrisations: binary problems one weight vector (class 0's logit is 0),
  `k >= 3` classes the symmetric multinomial model with `k` weight vectors, all penalised
  (`LogisticRegression(C=1/l2)`, whose multinomial objective this is). The symmetric model's
  biases are defined up to a common shift; the solver keeps them summing to zero, as
  scikit-learn's do.
* ridge: `J(theta) = (sum_i w_i (y_i - x_i theta)^2 / 2 + l2/2 ||theta_W||^2) / norm`, i.e.
  scikit-learn's `Ridge(alpha=l2)` with `sample_weight=w`; closed form.

The logistic solver (`fit_logistic`):

1. Warm start: every subset starts from the full-data optimum `theta_full` (subsets' optima
   lie near it).
2. Curvature computed once per subset, as a Kronecker product: each sample's softmax curvature
   `S_i = diag(p_i) - p_i p_i^T` is replaced by `c_i (I - 11^T/k)` with `c_i` its trace spread
   over the `k - 1` class directions (`p_i (1 - p_i)`, exact, for binary problems); Böhning's
   bound is the special case `c_i = 1/2`. The preconditioner of subset `w` is then
   `(I - 11^T/k) (x) M_w` with `M_w = X^T diag(w c) X + l2 E`: for all `B` subsets one product
   `(w c) (B, n) @ [x_i x_i^T] (n, D*D)` and one `D x D` inverse each, shared by every class
   direction. With `shared=True` the first `refresh_every` steps use instead the inverse of
   the full data's exact Hessian at `theta_full` (`(D m) x (D m)`, class couplings included),
   divided by the subset's share of the curvature: one product for the whole batch per step,
   no per-subset product, and for random subsets as good as their own curvature with many
   samples per parameter, better than the Kronecker approximation with several classes.
   Where that Hessian would cost too much to form (`exact_shared`: many classes, features
   and rows) the full data's Kronecker factor `M` is shared instead.
3. Iteration: preconditioned nonlinear conjugate gradients (Polak-Ribière+), each step's
   length an exact Newton step along the search direction (the curvature along a direction
   needs no Hessian: `sum_i w_i u_i^T S_i u_i` from the direction's logits `u`); a step that
   raises the objective beyond float32 rounding is rejected and retried shorter. Per step: two
   products with `X` for the whole batch. On CPU the time goes to the passes over the
   `(n, m, B)` arrays more than to the products (10k rows, 128 subsets: a product ~1 ms, a
   pass with an exponential ~1 ms): for two classes the logits at `theta` are recomputed with
   the direction's in one product instead of carried and selected; for `k >= 3` the logits
   and the softmax are carried (recomputing the softmax costs more: digits, wine and the
   3-class n = 2,000 task ran 6-27 % slower that way). Every `refresh_every` steps the subsets still
   running (those whose optimum lies far from `theta_full`: tiny subsets) get the
   preconditioner of their own current curvature.
4. Convergence: a subset is done once `max |grad J| <= tol` (scikit-learn's `LogisticRegression`
   stops its L-BFGS on the same quantity, default 1e-4); it is then frozen, so its result does
   not depend on the other subsets of its chunk, and the chunk stops when all are done or after
   `max_steps`.
5. Classes absent from a subset (`k >= 3`): the minimiser's bias for such a class tends to
   minus infinity. The solver masks the class out (probability 0) and reports its bias as
   `ABSENT` (-1e4): the limit, and what scikit-learn, which fits the classes it sees, predicts.
   Subsets with fewer than two classes are not trained (the engine scores them apart).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ABSENT", "HESSIAN_FLOPS", "HESSIAN_ROWS", "OUTER_BYTES", "exact_shared", "fit_logistic", "fit_ridge", "n_outputs",
           "shared_preconditioner", "spd_inverse"]

Params = Any

OUTER_BYTES = 512e6  # the (n, D*D) products [x_i x_i^T] are formed up to this size
HESSIAN_ROWS = 32768  # the shared multiclass Hessian is summed over at most this many rows
HESSIAN_FLOPS = 1e9  # and formed exactly only when that costs at most this
ABSENT = -1e4  # the bias of a class absent from a subset: its probability is exactly 0
_MASK = -1e4


def n_outputs(n_classes: int) -> int:
    """Columns of the logistic model's weight matrix: 1 for two classes, else `n_classes`."""
    return 1 if n_classes == 2 else n_classes


def _design(x: jax.Array) -> jax.Array:
    return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


def _targets(y: jax.Array, n_classes: int) -> jax.Array:
    """`(n, m)` targets: the one-hot code, without class 0 for binary problems."""
    onehot = jax.nn.one_hot(y, n_classes, dtype=jnp.float32)
    return onehot[:, 1:] if n_classes == 2 else onehot


def _probs_lse(z: jax.Array, binary: bool):
    """Probabilities `(n, m, B)` and log-sum-exp `(n, B)` of logits `z` `(n, m, B)`.

    The class axis sits in the middle, the batch last: every operation then runs along the
    contiguous batch axis (XLA on CPU reduces a short leading or trailing class axis several
    times slower). For binary problems `m = 1` and class 0's logit is 0.
    """
    if binary:  # log(1 + e^z) = max(z, 0) - log(sigmoid(|z|)), sigmoid(|z|) in [1/2, 1]
        p = jax.nn.sigmoid(z)
        return p, (jnp.maximum(z, 0.0) - jnp.log(jnp.maximum(p, 1.0 - p)))[:, 0]
    top = z.max(axis=1, keepdims=True)
    e = jnp.exp(z - top)
    total = e.sum(axis=1, keepdims=True)
    return e / total, (top + jnp.log(total))[:, 0]


def _pack(params: Params) -> jax.Array:
    """`{"linear": {"w": (d, m), "b": (m,)}}` -> theta `(D, m)`."""
    return jnp.concatenate([params["linear"]["w"], params["linear"]["b"][None, :]], axis=0)


def _unpack(theta: jax.Array) -> Params:
    """theta `(D, m, B)` -> batched params `{"linear": {"w": (B, d, m), "b": (B, m)}}`."""
    t = theta.transpose(2, 0, 1)
    return {"linear": {"w": t[:, :-1, :], "b": t[:, -1, :]}}


def _lower_inverse_small(chol: jax.Array) -> jax.Array:
    """Inverses of lower-triangular `(..., s, s)` by forward substitution, one row a step."""
    size = chol.shape[-1]
    eye = jnp.eye(size, dtype=chol.dtype)

    def row(r, inv):
        value = (eye[r] - jnp.einsum("...j,...jk->...k", chol[..., r, :], inv))
        return inv.at[..., r, :].set(value / chol[..., r, r][..., None])

    return jax.lax.fori_loop(0, size, row, jnp.zeros_like(chol))


def spd_inverse(a: jax.Array) -> jax.Array:
    """Inverses of symmetric positive definite matrices `(B, N, N)`, GEMM-bound.

    XLA's batched triangular solves (and so `cho_solve`, `inv`) are slow on CPU; here the
    Cholesky factor's inverse is built one block row at a time in a loop (each diagonal block
    inverted by forward substitution, then one batched product per block row), and the result
    is `L^-T L^-1`. Compiles to two small loops whatever `N`.
    """
    size = a.shape[-1]
    block = max(16, -(-size // 8))
    padded = -(-size // block) * block
    if padded != size:
        extra = padded - size
        a = jnp.pad(a, [(0, 0), (0, extra), (0, extra)])
        a = a + jnp.diag(jnp.arange(padded) >= size).astype(a.dtype)
    chol = jnp.linalg.cholesky(a)
    blocks = padded // block
    batch = a.shape[0]
    strips = chol.reshape(batch, blocks, block, padded)  # block rows of L
    diag = jnp.stack([strips[:, i, :, i * block:(i + 1) * block] for i in range(blocks)], 1)
    diag_inv = _lower_inverse_small(diag)  # (B, blocks, block, block)
    unit = jnp.eye(padded, dtype=a.dtype).reshape(blocks, block, padded)

    def block_row(i, inv):  # rows of L^-1: L_ii^-1 (E_i - L_i,<i (L^-1)_<i)
        rhs = unit[i][None] - strips[:, i] @ inv  # rows not yet computed are zero
        rows = diag_inv[:, i] @ rhs
        return jax.lax.dynamic_update_slice(inv, rows, (0, i * block, 0))

    inv_chol = jax.lax.fori_loop(0, blocks, block_row, jnp.zeros_like(a))
    return (inv_chol.transpose(0, 2, 1) @ inv_chol)[:, :size, :size]


def _curvature(p: jax.Array, n_classes: int) -> jax.Array:
    """Probabilities `(n, m, B)` -> the curvature weights `c_i` `(B, n)` of the Kronecker
    preconditioner (module docstring, point 2)."""
    if n_classes == 2:
        return (p * (1.0 - p))[:, 0].T
    return ((1.0 - jnp.sum(p * p, axis=1)) / (n_classes - 1)).T


def _hessian(x1: jax.Array, p: jax.Array, c: jax.Array, n_classes: int) -> jax.Array:
    """The logistic loss's Hessian `sum_i (x_i x_i^T) (x) S_i` at probabilities `p` `(n, m)`,
    shape `(D m, D m)` (rows and columns ordered as `theta.reshape(-1)`, theta `(D, m)`); for
    two classes `S_i = c_i`. One `(D, D)` block at a time: `(n, D)` temporaries."""
    if n_classes == 2:
        return x1.T @ (c[:, None] * x1)
    big_d, m = x1.shape[1], p.shape[1]

    def block(pair):  # sum_i S_i[a, b] x_i x_i^T -> (D, D)
        a, b = pair // m, pair % m
        s_ab = p[:, a] * ((a == b) - p[:, b])
        return x1.T @ (s_ab[:, None] * x1)

    blocks = jax.lax.map(block, jnp.arange(m * m)).reshape(m, m, big_d, big_d)  # [a, b, d, e]
    return blocks.transpose(2, 0, 3, 1).reshape(big_d * m, big_d * m)


def exact_shared(n: int, d: int, n_classes: int) -> bool:
    """Whether `shared_preconditioner` forms the exact Hessian: always for two classes (it is
    the `(D, D)` Gram matrix), for `k >= 3` when its `m^2` blocks over at most `HESSIAN_ROWS`
    rows cost at most `HESSIAN_FLOPS`; else the Kronecker approximation (module docstring)."""
    size = (d + 1) * n_outputs(n_classes)
    return n_classes == 2 or 2 * size * size * min(n, HESSIAN_ROWS) <= HESSIAN_FLOPS


def shared_preconditioner(
    x: jax.Array,
    y: jax.Array,
    init: Params,
    *,
    n_classes: int,
    l2: float = 1.0,
    outer: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The full data's curvature weights `c` `(n,)` at `init` and the inverse of its
    curvature there: what `fit_logistic(..., shared=...)` scales for every subset.

    When `exact_shared`: the inverse `(D m, D m)` of the exact Hessian `sum_i (x_i x_i^T) (x)
    S_i + l2 E` (for two classes `X^T diag(c) X + l2 E`; for `k >= 3` summed over every
    `ceil(n / HESSIAN_ROWS)`-th row and scaled up, and the direction of equal biases, along
    which the objective is flat, gets the Hessian's mean diagonal so that the matrix is
    invertible; the gradient has no component along it). Otherwise the inverse `(D, D)` of
    the Kronecker factor `X^T diag(c) X + l2 E`. It depends on the data and `init` only, so
    the engine computes it once per utility instead of once per batch (no `(n, D^2)`
    products are formed here; `outer` is used when given)."""
    x1 = _design(jnp.asarray(x, jnp.float32))
    n, big_d = x1.shape
    m = n_outputs(n_classes)
    z = (x1 @ _pack(init).astype(jnp.float32))[:, :, None]  # (n, m, 1)
    p = _probs_lse(z, n_classes == 2)[0][:, :, 0]  # (n, m)
    c = _curvature(p[:, :, None], n_classes)[0]  # (n,)
    if n_classes == 2 or not exact_shared(n, big_d - 1, n_classes):  # the (D, D) Gram matrix
        size = big_d
        hessian = ((c @ outer).reshape(big_d, big_d) if outer is not None
                   else x1.T @ (c[:, None] * x1))
        pen = jnp.ones((big_d,), jnp.float32).at[-1].set(0.0)
    else:
        size = big_d * m
        stride = -(-n // HESSIAN_ROWS)
        hessian = _hessian(x1[::stride], p[::stride], c[::stride], n_classes) * (
            n / x1[::stride].shape[0])
        pen = jnp.ones((big_d, m), jnp.float32).at[-1].set(0.0).reshape(-1)
    hessian = hessian + jnp.diag(l2 * pen)
    if size > big_d:
        flat = jnp.zeros((big_d, m), jnp.float32).at[-1].set(m ** -0.5).reshape(-1)
        hessian = hessian + jnp.trace(hessian) / size * jnp.outer(flat, flat)
    return c, spd_inverse(hessian[None] + 1e-6 * jnp.eye(size, dtype=jnp.float32))[0]


class _State(NamedTuple):
    theta: jax.Array  # (D, m, B)
    z: jax.Array  # (n, m, B) logits, carried for k >= 3 (else recomputed: shape (1, 1, 1))
    p: jax.Array  # (n, m, B) probabilities, likewise
    value: jax.Array  # (B,) objective
    grad: jax.Array  # (D, m, B)
    pgrad: jax.Array  # (D, m, B) preconditioned gradient
    direction: jax.Array  # (D, m, B)
    shrink: jax.Array  # (B,) step multiplier, < 1 after a rejected step
    done: jax.Array  # (B,) bool
    steps: jax.Array  # () int
    used: jax.Array  # (B,) int, the steps each subset took
    inverse: jax.Array  # (B, D, D) the preconditioner's inverse


def fit_logistic(
    x: jax.Array,
    y: jax.Array,
    weights: jax.Array,
    *,
    n_classes: int,
    init: Params,
    l2: float = 1.0,
    tol: float = 1e-4,
    max_steps: int = 100,
    refresh_every: int = 10,
    shared: bool | tuple[jax.Array, jax.Array] = False,
    outer: jax.Array | None = None,
    return_info: bool = False,
):
    """Minimisers of the logistic objective for `B` weight vectors (see the module docstring).

    Args:
      x: features `(n, d)`; y: int labels `(n,)`.
      weights: `(B, n)`, non-negative.
      n_classes: `k`; the params have `n_outputs(k)` columns.
      init: unbatched params every subset starts from (the full-data optimum).
      l2: L2 penalty on the weights, not the biases.
      tol: a subset is converged once `max |grad J| <= tol`.
      max_steps: cap on the iterations.
      refresh_every: every this many steps, the subsets still running get a preconditioner
        from their own current curvature (one more batched product); 0: never (the
        curvature at `init` throughout).
      shared: for the first `refresh_every` steps, precondition every subset with the exact
        Hessian at `init` of all samples, scaled by the subset's share of the curvature,
        instead of its own (the subsets still running then switch to their own); pass
        `shared_preconditioner(...)` to reuse it across calls (it is the same for every
        batch).
      outer: optional precomputed `[x_i x_i^T]` of the design with bias, `(n, D*D)`;
        without it they are formed when no larger than `OUTER_BYTES` and not `shared`,
        otherwise each Gram matrix `X^T diag(v) X` is formed directly.
      return_info: also return `{"steps": (), "used": (B,), "grad_max": (B,)}`.

    Returns:
      Batched params `{"linear": {"w": (B, d, m), "b": (B, m)}}`, or `(params, info)`.
    """
    binary = n_classes == 2
    dtype = jnp.float32
    x1 = _design(jnp.asarray(x, dtype))
    n, big_d = x1.shape
    weights = jnp.asarray(weights, dtype)
    batch = weights.shape[0]
    m = n_outputs(n_classes)
    w_t = weights.T[:, None, :]  # (n, 1, B), transposed once, outside the iterations
    targets = _targets(y, n_classes)[:, :, None]  # (n, m, 1)
    norm = jnp.maximum(weights.sum(axis=1), 1.0)  # (B,)
    pen = jnp.ones((big_d, 1, 1), dtype).at[-1].set(0.0)  # the bias is not penalised

    # Preconditioner: M_w = X^T diag(w c) X + l2 E (+ a tiny ridge), one GEMM for the batch.
    if outer is None and not shared and n * big_d * big_d * 4 <= OUTER_BYTES:
        outer = (x1[:, :, None] * x1[:, None, :]).reshape(n, big_d * big_d)
    eye = jnp.eye(big_d, dtype=dtype)

    def grams(wc):  # (b, n) -> (b, D, D): X^T diag(wc_j) X for each row j
        if outer is not None:
            return (wc @ outer).reshape(wc.shape[0], big_d, big_d)
        # Past OUTER_BYTES, or in shared mode (per-subset products only on a rare refresh):
        # one (n, D) temporary per model instead of the (n, D*D) products (1.4 GB at
        # n = 800k, d = 20).
        return jax.lax.map(lambda v: x1.T @ (v[:, None] * x1), wc)

    def inverse_of(wc):  # (B, n) weights times curvatures -> (B, D, D)
        gram = grams(wc)
        scale = jnp.trace(gram, axis1=1, axis2=2) / big_d
        gram = gram + jnp.diag(l2 * pen[:, 0, 0])[None] + (1e-6 * scale + 1e-6)[:, None, None] * eye
        return spd_inverse(gram)

    def curvature_of(p):  # (n, m, B) -> (B, n): the weights c_i (module docstring)
        return _curvature(p, n_classes)

    inv_pen = pen / jnp.maximum(l2, 1e-12)

    def precondition(inverse, g):  # (D, m, B) -> (D, m, B)
        if binary:
            return jnp.einsum("bde,emb->dmb", inverse, g)
        mean = g.mean(axis=1, keepdims=True)  # the direction of 1 over classes
        return jnp.einsum("bde,emb->dmb", inverse, g - mean) + mean * inv_pen

    def logits(theta):  # (D, m, B) -> (n, m, B): one product for the batch
        return (x1 @ theta.reshape(big_d, -1)).reshape(n, m, batch)

    def logits_pair(theta, direction):  # the logits of both, from one product
        both = x1 @ jnp.stack([theta, direction], axis=1).reshape(big_d, -1)
        both = both.reshape(n, 2, m, batch)
        return both[:, 0], both[:, 1]

    def penalty(theta):  # (D, m, B) -> (B,)
        return 0.5 * l2 * jnp.sum((theta * pen) ** 2, axis=(0, 1))

    def objective(z, lse, theta):
        ce = lse - jnp.sum(z * targets, axis=1)  # (n, B)
        return (jnp.sum(w_t[:, 0] * ce, axis=0) + penalty(theta)) / norm

    def gradient(p, theta):
        resid = (w_t * (p - targets)).reshape(n, -1)  # (n, m*B)
        g = (x1.T @ resid).reshape(theta.shape) + l2 * pen * theta
        return g / norm

    def grad_max(g):
        return jnp.max(jnp.abs(g), axis=(0, 1))

    def dot(a, b):
        return jnp.sum(a * b, axis=(0, 1))

    counts = weights @ jax.nn.one_hot(y, n_classes, dtype=dtype)  # (B, k)
    # A class absent from a subset (k >= 3) has its optimum at an infinitely negative bias:
    # its logit is masked out (probability 0) and its bias set to `ABSENT` at the end, the
    # limit the minimiser tends to and what scikit-learn's fit on the subset predicts.
    absent = (counts <= 0) & (not binary)  # (B, k)
    offset = jnp.where(absent, _MASK, 0.0).T[None]  # (1, m, B)

    def probs_lse(z):
        return _probs_lse(z if binary else z + offset, binary)

    start = _pack(init).astype(dtype)  # (D, m)
    theta0 = jnp.broadcast_to(start[:, :, None], (big_d, m, batch))
    # Every subset starts at the same logits: its first objective and gradient are products
    # of its weights with per-sample terms, (B, n) @ (n, D m), no (n, m, B) arrays.
    z_full = (x1 @ start)[:, :, None]  # (n, m, 1)
    if binary:
        p_full, lse_full = probs_lse(z_full)
        ce_full = lse_full[:, 0] - jnp.sum(z_full[:, :, 0] * targets[:, :, 0], axis=1)  # (n,)
        value0 = (weights @ ce_full + penalty(theta0)) / norm
        per_sample = x1[:, :, None] * (p_full[:, :, 0] - targets[:, :, 0])[:, None, :]
        g0 = (weights @ per_sample.reshape(n, -1)).T.reshape(big_d, m, batch)
        g0 = (g0 + l2 * pen * theta0) / norm
    else:  # a class absent from a subset changes its probabilities: batched throughout
        z0 = jnp.broadcast_to(z_full, (n, m, batch))
        p0, lse0 = probs_lse(z0)
        value0 = objective(z0, lse0, theta0)
        g0 = gradient(p0, theta0)
    # Subsets with fewer than two classes are not trained (the engine scores them apart).
    done0 = (grad_max(g0) <= tol) | ((counts > 0).sum(axis=1) < 2)
    zeros = jnp.zeros_like(g0)
    if binary:
        z0 = p0 = jnp.zeros((1, 1, 1), dtype)
    state = _State(theta0, z0, p0, value0, g0, zeros, zeros, jnp.ones((batch,), dtype), done0,
                   jnp.zeros((), jnp.int32), jnp.zeros((batch,), jnp.int32),
                   jnp.zeros((batch, big_d, big_d), dtype))
    if shared:
        # The full-data preconditioner scaled by each subset's share of the curvature: no
        # per-subset product, and for large random subsets as good as their own.
        c_full, full_inverse = (shared if isinstance(shared, tuple) else
                                shared_preconditioner(x, y, init, n_classes=n_classes, l2=l2,
                                                      outer=outer))
        share = (weights @ c_full) / jnp.maximum(jnp.sum(c_full), 1e-30)
        share = jnp.maximum(share, 1e-6)

        def precondition_shared(inverse, g):  # the full data's curvature, scaled
            del inverse
            if full_inverse.shape[0] == big_d * m:  # the exact Hessian: one product, all B
                return (full_inverse @ g.reshape(big_d * m, batch)).reshape(g.shape) / share
            return precondition(full_inverse[None] / share[:, None, None], g)  # Kronecker

        pg = precondition_shared(None, g0)
        state = state._replace(pgrad=pg, direction=-pg)

    def running(s):
        return (s.steps < max_steps) & ~jnp.all(s.done)

    def refresh(s):
        # The preconditioner from each running subset's curvature at its current point: at
        # the start that is the full-data optimum's; a subset still running after
        # `refresh_every` steps has its optimum far from it (tiny subsets), and conjugate
        # gradients restart in the new metric.
        p = probs_lse(logits(s.theta))[0] if binary else s.p
        inverse = inverse_of(weights * curvature_of(p))
        inverse = jnp.where(s.done[:, None, None], s.inverse, inverse)
        pg = precondition(inverse, s.grad)
        return s._replace(inverse=inverse, pgrad=jnp.where(s.done, s.pgrad, pg),
                          direction=jnp.where(s.done, s.direction, -pg))

    def segment(s):
        # Shared: the first segment in the full data's metric, later ones in their own.
        s = jax.lax.cond(s.steps == 0, lambda s: s, refresh, s) if shared else refresh(s)
        end = s.steps + (refresh_every or max_steps)
        return jax.lax.while_loop(lambda s: running(s) & (s.steps < end), step, s)

    def precondition_now(s, g):
        if not shared:
            return precondition(s.inverse, g)
        first = (s.steps < refresh_every) if refresh_every else True
        return jax.lax.cond(first, precondition_shared, precondition, s.inverse, g)

    def step(s):
        # The logits at theta and along the direction, recomputed from one product rather
        # than carried: a product costs less than the passes over (n, m, B) arrays that
        # carrying and selecting them would take.
        if binary:
            z0, u = logits_pair(s.theta, s.direction)
            p0 = probs_lse(z0)[0]
        else:  # k >= 3: carrying the softmax costs less than recomputing it
            z0, p0, u = s.z, s.p, logits(s.direction)
        slope = dot(s.grad, s.direction)  # (B,) < 0
        # The objective's exact curvature along the direction: sum_i w_i u_i^T S_i u_i.
        pu = jnp.sum(p0 * u, axis=1)  # (n, B)
        curv = jnp.sum(w_t[:, 0] * (jnp.sum(p0 * u * u, axis=1) - pu * pu), axis=0)
        curv = (curv + l2 * jnp.sum((s.direction * pen) ** 2, axis=(0, 1))) / norm
        t = s.shrink * jnp.where(curv > 0, -slope / jnp.maximum(curv, 1e-30), 1.0)
        theta = s.theta + t * s.direction
        z = z0 + t * u
        p, lse = probs_lse(z)
        value = objective(z, lse, theta)
        ok = jnp.isfinite(value) & (value <= s.value + 1e-6 * jnp.abs(s.value) + 1e-12)
        g = gradient(p, theta)
        pg = precondition_now(s, g)
        # Polak-Ribière+, restarted when the result is no descent direction.
        beta = jnp.maximum(0.0, dot(g, pg - s.pgrad) / jnp.maximum(dot(s.grad, s.pgrad), 1e-30))
        direction = -pg + beta * s.direction
        direction = jnp.where(dot(g, direction) < 0, direction, -pg)
        take = ok & ~s.done
        # A rejected step restarts from the preconditioned gradient, 4x shorter.
        retry = jnp.where(s.done, s.direction, -s.pgrad)
        return _State(
            theta=jnp.where(take, theta, s.theta),
            z=s.z if binary else jnp.where(take, z, s.z),
            p=s.p if binary else jnp.where(take, p, s.p),
            value=jnp.where(take, value, s.value),
            grad=jnp.where(take, g, s.grad),
            pgrad=jnp.where(take, pg, s.pgrad),
            direction=jnp.where(take, direction, retry),
            shrink=jnp.where(take, 1.0, jnp.where(s.done, s.shrink, 0.25 * s.shrink)),
            done=s.done | (take & (grad_max(g) <= tol)) | (s.shrink < 1e-6),
            steps=s.steps + 1,
            used=s.used + ~s.done,
            inverse=s.inverse,
        )

    final = jax.lax.while_loop(running, segment, state)
    theta = final.theta
    if not binary:  # biases defined up to a shift: those of present classes sum to zero
        bias = theta[-1]  # (m, B)
        present = ~absent.T
        shift = jnp.sum(jnp.where(present, bias, 0.0), axis=0) / jnp.maximum(
            jnp.sum(present, axis=0), 1)
        theta = theta.at[-1].set(jnp.where(present, bias - shift, ABSENT))
    params = _unpack(theta)
    if return_info:
        return params, {"steps": final.steps, "used": final.used,
                        "grad_max": grad_max(final.grad)}
    return params


def fit_ridge(
    x: jax.Array,
    y: jax.Array,
    weights: jax.Array,
    *,
    l2: float = 1.0,
    outer: jax.Array | None = None,
) -> Params:
    """Ridge regression for `B` weight vectors in closed form: `(X^T W X + l2 E) theta =
    X^T W y`, all `B` Gram matrices from one product and one batched Cholesky solve.

    Args:
      x: features `(n, d)`; y: float targets `(n,)`; weights: `(B, n)`.
      l2: penalty on the weights (not the bias); scikit-learn's `Ridge(alpha=l2)`.
      outer: optional precomputed `[x_i x_i^T]` of the design with bias, `(n, D*D)`.

    Returns:
      Batched params `{"linear": {"w": (B, d, 1), "b": (B, 1)}}`.
    """
    dtype = jnp.float32
    x1 = _design(jnp.asarray(x, dtype))
    n, big_d = x1.shape
    weights = jnp.asarray(weights, dtype)
    batch = weights.shape[0]
    if outer is None:
        outer = (x1[:, :, None] * x1[:, None, :]).reshape(n, big_d * big_d)
    pen = jnp.ones((big_d,), dtype).at[-1].set(0.0)
    gram = (weights @ outer).reshape(batch, big_d, big_d) + jnp.diag(l2 * pen)[None]
    # An empty subset has a zero bias row: a tiny ridge keeps the system solvable (theta 0).
    gram = gram + 1e-6 * jnp.eye(big_d, dtype=dtype)[None]
    rhs = (weights * jnp.asarray(y, dtype)[None, :]) @ x1  # (B, D)
    inverse = spd_inverse(gram)
    theta = (inverse @ rhs[:, :, None])
    # One step of iterative refinement recovers the digits float32 normal equations lose.
    theta = theta + inverse @ (rhs[:, :, None] - gram @ theta)  # (B, D, 1)
    return _unpack(theta.transpose(1, 2, 0))
