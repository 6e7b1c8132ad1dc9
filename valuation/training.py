"""Training a target model on weighted samples: one pure function, vmap-able over subsets.

Where it sits: between the models and everything that retrains them (the utility engine,
Data-OOB, learning-dynamics recording, leave-one-out checks of influence).

A subset is a weight vector of shape `(n,)` over *all* training samples (0/1 for a mask,
fractional for bootstrap counts or importance weights), never a slice, so a new subset never
recompiles. The objective is

    J(theta) = (sum_i w_i * L(apply(theta, x_i), y_i) + l2/2 * ||theta_W||^2) / max(sum_i w_i, 1)

with `L` the cross-entropy of int labels (`loss="cross_entropy"`) or, for a regression target,
half the squared error of the model's single output (`loss="squared"`, scikit-learn's
`Ridge(alpha=l2)` objective for a linear model), where `theta_W` are the weight matrices (leaves with ndim >= 2; biases are not penalised). Up to
the positive factor `1 / sum w` this is scikit-learn's `LogisticRegression(C=1/l2)` objective
with `sample_weight=w`, so the minimiser is the same and a sample of weight 0 is exactly a
deleted sample; the factor makes gradient steps independent of the subset's size.

Three solvers:
* `fit`: any `optax.GradientTransformation`, full-batch or mini-batch, fixed step count,
  `lax.scan`; optionally the parameters at every `save_every` steps (checkpoints).
* `fit_warm`: from given parameters (the full-data fit, for a subset) until the objective stops
  improving: nonlinear conjugate gradients with Gauss-Newton line steps, any model.
* `fit_logistic_newton`: damped Newton steps for `models.logistic_regression`, batched natively
  over many weight vectors so that the per-sample Hessian terms of all models are one
  matrix-matrix product; a few steps reach the optimum that gradient descent needs hundreds of
  steps for.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .glm import spd_inverse
from .models import Model

__all__ = ["LOSSES", "default_optimizer", "fit", "fit_logistic_newton", "fit_warm",
           "fit_warm_batch", "sample_losses", "weighted_objective"]

LOSSES = ("cross_entropy", "squared")

Params = Any


def default_optimizer() -> optax.GradientTransformation:
    """Adam with learning rate 0.05: a robust full-batch default for standardised features."""
    return optax.adam(0.05)


def _l2_penalty(params: Params) -> jax.Array:
    leaves = [p for p in jax.tree_util.tree_leaves(params) if p.ndim >= 2]
    return sum(jnp.sum(p * p) for p in leaves) if leaves else jnp.zeros(())


def sample_losses(outputs: jax.Array, y: jax.Array, loss: str = "cross_entropy") -> jax.Array:
    """Per-sample losses `(n,)` of model outputs `(n, k)`: cross-entropy of int labels, or half
    the squared error of the first output against float targets (`loss="squared"`)."""
    if loss == "squared":
        return 0.5 * (outputs[..., 0] - y) ** 2
    return optax.softmax_cross_entropy_with_integer_labels(outputs, y)


def weighted_objective(
    model: Model, params: Params, x: jax.Array, y: jax.Array, weights: jax.Array, l2: float,
    loss: str = "cross_entropy",
) -> jax.Array:
    """The training objective J(theta) of the module docstring, a scalar.

    Args:
      x: features `(n, d)`; y: int labels (float targets for `loss="squared"`) `(n,)`;
      weights: `(n,)`, non-negative.
    """
    per_sample = sample_losses(model.apply(params, x), y, loss)
    total = jnp.sum(weights * per_sample) + 0.5 * l2 * _l2_penalty(params)
    return total / jnp.maximum(jnp.sum(weights), 1.0)


def fit(
    model: Model,
    x: jax.Array,
    y: jax.Array,
    weights: jax.Array,
    *,
    key: jax.Array,
    steps: int = 300,
    optimizer: optax.GradientTransformation | None = None,
    l2: float = 1.0,
    batch_size: int | None = None,
    init_params: Params | None = None,
    save_every: int | None = None,
    loss: str = "cross_entropy",
):
    """Train `model` on weighted samples with an optax optimizer.

    Pure and jit/vmap-able over `(weights, key)`: `jax.vmap(lambda w, k: fit(..., w, key=k))`
    trains one model per weight vector in one compiled program.

    Args:
      x: features `(n, d)`; y: int labels `(n,)`; weights: `(n,)`.
      key: initialises the params (unless `init_params`) and orders the mini-batches.
      steps: number of optimizer steps (a Python int: it fixes the compiled loop).
      optimizer: default `default_optimizer()`.
      l2: L2 penalty on weight matrices, in the units of the objective above.
      batch_size: `None` for full-batch; otherwise each epoch visits a fresh permutation of
        all `n` samples in batches of this size (the last, short batch wraps around). A batch's
        gradient is scaled by `n / batch_size`, an unbiased estimate of the full gradient.
      init_params: start from these params instead of `model.init(key, x)`.
      save_every: if set, also return the params after every `save_every` steps.
      loss: "cross_entropy" (int labels) or "squared" (float targets, one output).

    Returns:
      `params`, or `(params, checkpoints)` when `save_every` is set; `checkpoints` has the
      params' structure with a leading axis of length `steps // save_every`.
    """
    optimizer = optimizer or default_optimizer()
    n = x.shape[0]
    k_init, k_order = jax.random.split(key)
    params = model.init(k_init, x) if init_params is None else init_params
    opt_state = optimizer.init(params)
    norm = jnp.maximum(jnp.sum(weights), 1.0)

    if batch_size is None or batch_size >= n:
        def batch_at(t):
            del t
            return x, y, weights, 1.0
    else:
        per_epoch = -(-n // batch_size)

        def batch_at(t):
            epoch, pos = t // per_epoch, t % per_epoch
            order = jax.random.permutation(jax.random.fold_in(k_order, epoch), n)
            idx = jnp.take(order, (pos * batch_size + jnp.arange(batch_size)) % n)
            return x[idx], y[idx], weights[idx], n / batch_size

    def loss_fn(p, t):
        xb, yb, wb, scale = batch_at(t)
        per_sample = sample_losses(model.apply(p, xb), yb, loss)
        return (scale * jnp.sum(wb * per_sample) + 0.5 * l2 * _l2_penalty(p)) / norm

    def step(carry, t):
        p, s = carry
        grads = jax.grad(loss_fn)(p, t)
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    if save_every is None:
        (params, _), _ = jax.lax.scan(step, (params, opt_state), jnp.arange(steps))
        return params

    n_saves = steps // save_every

    def chunk(carry, c):
        carry, _ = jax.lax.scan(step, carry, c * save_every + jnp.arange(save_every))
        return carry, carry[0]

    (params, opt_state), saved = jax.lax.scan(chunk, (params, opt_state), jnp.arange(n_saves))
    rest = steps - n_saves * save_every
    if rest:
        (params, _), _ = jax.lax.scan(step, (params, opt_state),
                                      n_saves * save_every + jnp.arange(rest))
    return params, saved


def _tree_dot(a: Params, b: Params) -> jax.Array:
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree_util.tree_leaves(a),
                                               jax.tree_util.tree_leaves(b)))


def _tree_axpy(alpha, x: Params, y: Params) -> Params:
    return jax.tree_util.tree_map(lambda u, v: alpha * u + v, x, y)


def _tree_neg(x: Params) -> Params:
    return jax.tree_util.tree_map(jnp.negative, x)


class _Warm(NamedTuple):
    """One model's state in `fit_warm`'s iteration (leaves batched under `vmap`)."""

    params: Params  # the last accepted point
    value: jax.Array  # its objective (+inf before the start has been evaluated)
    grad: Params  # its gradient
    direction: Params  # the search direction from it
    length: jax.Array  # the step length to try along `direction`
    steps: jax.Array  # iterations so far, int32 (the first evaluates the start)
    stale: jax.Array  # consecutive iterations that improved the objective by less than tol


def _warm_start(params: Params) -> _Warm:
    """The state of a model about to evaluate `params` (accepted whatever its objective)."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    return _Warm(params, jnp.full((), jnp.inf, dtype), zeros, zeros, jnp.zeros((), dtype),
                 jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def _warm_iteration(model: Model, x, y, weights, l2: float, loss: str, tol: float,
                    s: _Warm) -> _Warm:
    """One iteration of `fit_warm` for one model: evaluate the candidate
    `params + length * direction`; if its objective does not rise (beyond float32 rounding)
    accept it and take the next Polak-Ribiere+ direction and its Gauss-Newton step length,
    else keep the point and try a 4x shorter step.

    One linearisation of the outputs at the candidate gives the objective, the gradient (its
    transpose) and the directional derivative for the curvature: three passes over the data
    per iteration (forward, backward, tangent).
    """
    norm = jnp.maximum(jnp.sum(weights), 1.0)
    candidate = _tree_axpy(s.length, s.direction, s.params)
    outputs, tangent = jax.linearize(lambda p: model.apply(p, x), candidate)

    def data_term(out):
        return jnp.sum(weights * sample_losses(out, y, loss)) / norm

    data_value, d_out = jax.value_and_grad(data_term)(outputs)
    value = data_value + 0.5 * l2 * _l2_penalty(candidate) / norm
    (grad,) = jax.linear_transpose(tangent, candidate)(d_out)
    grad = jax.tree_util.tree_map(lambda g, p: g + (l2 / norm) * p if p.ndim >= 2 else g,
                                  grad, candidate)
    ok = jnp.isfinite(value) & (value <= s.value + 1e-6 * jnp.abs(s.value))
    fresh = jnp.isinf(s.value)  # the start: no previous gradient or direction
    beta = jnp.where(fresh, 0.0, jnp.maximum(0.0, _tree_dot(grad, jax.tree_util.tree_map(
        jnp.subtract, grad, s.grad)) / jnp.maximum(_tree_dot(s.grad, s.grad), 1e-30)))
    direction = _tree_axpy(beta, s.direction, _tree_neg(grad))
    descent = _tree_dot(grad, direction) < 0
    direction = jax.tree_util.tree_map(lambda a, b: jnp.where(descent, a, b), direction,
                                       _tree_neg(grad))
    u = tangent(direction)
    if loss == "squared":
        per_sample = u[..., 0] ** 2
    else:
        prob = jax.nn.softmax(outputs, axis=-1)
        pu = jnp.sum(prob * u, axis=-1)
        per_sample = jnp.sum(prob * u * u, axis=-1) - pu * pu
    curv = (jnp.sum(weights * per_sample) + l2 * _l2_penalty(direction)) / norm
    slope = _tree_dot(grad, direction)
    length = jnp.where(curv > 0, -slope / jnp.maximum(curv, 1e-30), 1e-3)
    improved = ok & (value < s.value - tol)
    accepted = _Warm(candidate, value, grad, direction, length, s.steps + 1,
                     jnp.where(improved, 0, s.stale + 1))
    rejected = s._replace(length=0.25 * s.length, steps=s.steps + 1, stale=s.stale + 1)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), accepted, rejected)


def fit_warm(
    model: Model,
    x: jax.Array,
    y: jax.Array,
    weights: jax.Array,
    *,
    init_params: Params,
    l2: float = 1.0,
    loss: str = "cross_entropy",
    max_steps: int | jax.Array = 200,
    tol: float = 1e-4,
    patience: int = 5,
    return_steps: bool = False,
):
    """Train `model` from `init_params` until the objective stops improving.

    Meant for warm starts: a subset's model starts from the full-data fit, whose optimum lies
    near the subset's. Nonlinear conjugate gradients (Polak-Ribiere+) on the objective of the
    module docstring; each step's length is a Newton step along the search direction with the
    Gauss-Newton curvature `sum_i w_i u_i^T S_i u_i` (`u` the outputs' directional derivative,
    one forward-mode product; `S` the loss's curvature in the outputs, positive semidefinite
    whatever the model), and a step that raises the objective is retried 4x shorter. It stops
    when the objective has improved by less than `tol` on `patience` consecutive steps
    (scikit-learn's `MLPClassifier` criterion, `tol=1e-4`, with `n_iter_no_change=10` epochs)
    or after `max_steps`. Each step is three passes over the data (`_warm_iteration`). Pure
    and vmap-able over `(weights, max_steps)`; under `vmap` a model that has stopped is frozen
    while the others run (`fit_warm_batch` refills its place instead).

    Args:
      x, y, weights: as in `fit`.
      init_params: the starting point.
      l2, loss: the objective (module docstring).
      max_steps: cap on the steps; a per-model array under `vmap` (0: return `init_params`).
      tol, patience: the stopping rule above.
      return_steps: also return the number of steps taken.

    Returns:
      `params`, or `(params, steps)`.
    """
    def running(s):
        return (s.steps <= max_steps) & (s.stale < patience)

    def iteration(s):
        return _warm_iteration(model, x, y, weights, l2, loss, tol, s)

    s = jax.lax.while_loop(running, iteration, _warm_start(init_params))
    return (s.params, s.steps - 1) if return_steps else s.params


def fit_warm_batch(
    model: Model,
    x: jax.Array,
    y: jax.Array,
    weights: jax.Array,
    *,
    init_params: Params,
    slots: int,
    l2: float = 1.0,
    loss: str = "cross_entropy",
    max_steps: int | jax.Array = 200,
    tol: float = 1e-4,
    patience: int = 5,
    return_steps: bool = False,
):
    """`fit_warm` for many weight vectors, `slots` models trained at a time.

    Each model's iterates are `fit_warm`'s (same steps, same result up to float rounding).
    Under `vmap` a batch runs until its slowest model stops; here a model that stops hands its
    slot to the next model waiting, so the iterations' cost follows the sum of the models'
    steps rather than the slowest model's steps times the batch (random half-subsets of
    breast_cancer with MLP(64): mean 27 steps, the slowest of 128 about 48). Peak memory is
    that of `slots` models.

    Args:
      x, y: as in `fit`; weights: `(B, n)`, one model each.
      init_params: unbatched params every model starts from.
      slots: models trained at a time (a Python int; at most `B` are used).
      max_steps: int or `(B,)` caps; a model with cap 0 is not trained (gets `init_params`).
      l2, loss, tol, patience: as in `fit_warm`.
      return_steps: also return the steps each model took `(B,)`.

    Returns:
      Batched params (leading axis `B`), or `(params, steps)`.
    """
    batch = weights.shape[0]
    slots = max(1, min(int(slots), batch))
    caps = jnp.broadcast_to(jnp.asarray(max_steps, jnp.int32), (batch,))
    order = jnp.argsort(caps == 0, stable=True)  # the models to train come first
    count = jnp.sum(caps > 0)
    start = _warm_start(init_params)
    fresh = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (slots,) + a.shape), start)
    out = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (batch,) + a.shape), init_params)
    first = jnp.arange(slots)
    loaded = jnp.where(first < count, order[first], batch)  # `batch`: an idle slot

    def iteration(w, s):
        return _warm_iteration(model, x, y, w, l2, loss, tol, s)

    def body(c):
        s, loaded, queued, out, steps = c
        row = jnp.minimum(loaded, batch - 1)
        s = jax.vmap(iteration)(weights[row], s)
        done = (loaded < batch) & ((s.steps > caps[row]) | (s.stale >= patience))
        target = jnp.where(done, loaded, batch)  # out of range: dropped
        out = jax.tree_util.tree_map(lambda o, p: o.at[target].set(p, mode="drop"),
                                     out, s.params)
        steps = steps.at[target].set(s.steps - 1, mode="drop")
        position = queued + jnp.cumsum(done) - 1
        refill = jnp.where(position < count, order[jnp.minimum(position, batch - 1)], batch)
        loaded = jnp.where(done, refill, loaded)
        s = jax.tree_util.tree_map(
            lambda a, b: jnp.where(done.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), fresh, s)
        return s, loaded, queued + jnp.sum(done), out, steps

    carry = (fresh, loaded, jnp.asarray(slots, jnp.int32), out, jnp.zeros(batch, jnp.int32))
    _, _, _, out, steps = jax.lax.while_loop(lambda c: jnp.any(c[1] < batch), body, carry)
    return (out, steps) if return_steps else out


def fit_logistic_newton(
    x: jax.Array,
    y: jax.Array,
    weights: jax.Array,
    *,
    n_classes: int,
    l2: float = 1.0,
    steps: int = 8,
    jitter: float = 1e-4,
    init: Params | None = None,
) -> Params:
    """Damped Newton's method for `logistic_regression`, many weight vectors at once.

    For `B` weight vectors the gradient is one product `X^T R` and the Hessian of all `B`
    models is one product `(w * s) @ [x_i x_i^T]_i` of shape `(B*m*m, n) x (n, D*D)`, where
    `D = d + 1`, `m` is the number of output columns (1 for two classes, else `n_classes`; see
    `models.logistic_regression`) and `s` holds each sample's softmax curvature
    `diag(p) - p p^T`. Each step tries the step sizes (1, 1/2, 1/4, 1/10) and takes the longest
    one that does not increase the objective (beyond float32 rounding), which keeps the
    iteration monotone on nearly separable subsets.

    The cost per step is `O(B n m^2 D^2 + B (mD)^3)`: exact, and meant for one model or a few
    (the utility engine's full-data fit, tests) or small binary problems; the engine trains
    batches of subsets with `glm.fit_logistic`, whose per-step cost is a few products with `X`.

    Args:
      x: features `(n, d)`; y: int labels `(n,)`.
      weights: `(B, n)` weight vectors (one model each).
      n_classes: number of classes `k`.
      l2: L2 penalty on the weights (not the bias), as in `weighted_objective`.
      steps: Newton steps from zero (each is a fixed cost; 8 reach float32 precision on the
        bundled data).
      jitter: added to the bias diagonal of the Hessian, which has no L2 term (for `k >= 3`
        the biases' common shift has no curvature at all; the gradient never moves it).
      init: unbatched params to start every model from (a warm start, e.g. the full-data
        solution); default zero.

    Returns:
      Params `{"linear": {"w": (B, d, m), "b": (B, m)}}`, the minimisers of the objective
      (for `k >= 3` with biases summing to zero, as scikit-learn's).
    """
    n, d = x.shape
    binary = n_classes == 2
    m, big_d = (1 if binary else n_classes), d + 1
    batch = weights.shape[0]
    x1 = jnp.concatenate([x, jnp.ones((n, 1), x.dtype)], axis=1)  # (n, D)
    outer = (x1[:, :, None] * x1[:, None, :]).reshape(n, big_d * big_d)  # (n, D*D)
    onehot = jax.nn.one_hot(y, n_classes, dtype=x.dtype)
    onehot = onehot[:, 1:] if binary else onehot  # (n, m)
    norm = jnp.maximum(weights.sum(axis=1), 1.0)  # (B,)
    penalised = jnp.ones((big_d, 1), x.dtype).at[-1].set(0.0)  # bias row is not penalised
    diag = l2 * penalised[:, 0] + jitter * (1.0 - penalised[:, 0])
    ridge = jnp.kron(jnp.eye(m, dtype=x.dtype), jnp.diag(diag))

    sizes = jnp.array([1.0, 0.5, 0.25, 0.1], x.dtype)
    # Class-major layout (m, B, n) throughout: XLA on CPU reduces over a short leading class
    # axis several times faster than over a trailing one.
    onehot_t = onehot.T[:, None, :]  # (m, 1, n)

    def logits_of(theta):  # theta (B, D, m) -> (m, B, n); for binary, class 0's logit is 0
        return jnp.einsum("nd,bdm->mbn", x1, theta)

    def probs_and_lse(z):  # z (..., m, B, n) -> p (..., m, B, n), log-sum-exp (..., B, n)
        top = z.max(axis=-3)
        if binary:
            top = jnp.maximum(0.0, top)
        e = jnp.exp(z - top[..., None, :, :])
        total = e.sum(axis=-3) + (jnp.exp(-top) if binary else 0.0)
        return e / total[..., None, :, :], top + jnp.log(total)

    def objective(z, theta):  # z (..., m, B, n) logits of theta (..., B, D, m) -> (..., B)
        ce = probs_and_lse(z)[1] - jnp.sum(z * onehot_t, axis=-3)
        reg = 0.5 * l2 * jnp.sum((theta * penalised) ** 2, axis=(-2, -1))
        return (jnp.sum(weights * ce, axis=-1) + reg) / norm

    def step(theta, _):
        z = logits_of(theta)
        p = probs_and_lse(z)[0]  # (m, B, n)
        grad = jnp.einsum("nd,mbn->bdm", x1, weights * (p - onehot_t)) + l2 * penalised * theta
        curv = weights * (jnp.eye(m, dtype=x.dtype)[:, :, None, None] * p[None] - p[:, None] * p[None])
        hess = curv.reshape(m * m * batch, n) @ outer  # all models' Hessians: one GEMM
        hess = hess.reshape(m, m, batch, big_d, big_d).transpose(2, 0, 3, 1, 4)
        hess = hess.reshape(batch, m * big_d, m * big_d) + ridge
        g = grad.transpose(0, 2, 1).reshape(batch, m * big_d, 1)
        delta = spd_inverse(hess) @ g  # XLA's triangular solves (cho_solve) are slow on CPU
        delta = delta.reshape(batch, m, big_d).transpose(0, 2, 1)
        delta = jnp.where(jnp.isfinite(delta), delta, 0.0)
        # Logits are linear in theta: the trial points' logits need no further products.
        trials = theta[None] - sizes[:, None, None, None] * delta[None]
        values = objective(z[None] - sizes[:, None, None, None] * logits_of(delta)[None], trials)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)  # (4, B)
        # Take the longest step that does not increase the objective beyond float32 rounding:
        # near the optimum objective values are flat to rounding, and full Newton steps (not
        # comparisons of rounded values) are what pin the parameters down.
        current = objective(z, theta)
        ok = values <= current + 1e-6 * jnp.abs(current)
        choice = jnp.where(ok.any(axis=0), jnp.argmax(ok, axis=0), jnp.argmin(values, axis=0))
        new = jnp.take_along_axis(trials, choice[None, :, None, None], axis=0)[0]
        accept = ok.any(axis=0) | (jnp.min(values, axis=0) < current)
        return jnp.where(accept[:, None, None], new, theta), None

    theta0 = jnp.zeros((big_d, m), x.dtype)
    if init is not None:
        theta0 = jnp.concatenate([init["linear"]["w"], init["linear"]["b"][None, :]], axis=0)
    theta0 = jnp.broadcast_to(theta0, (batch, big_d, m))
    theta, _ = jax.lax.scan(step, theta0, None, length=steps)
    bias = theta[:, d, :]
    if not binary:  # the biases' common shift is free: centre them, as scikit-learn's are
        bias = bias - bias.mean(axis=1, keepdims=True)
    return {"linear": {"w": theta[:, :d, :], "b": bias}}
