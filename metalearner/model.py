"""The meta-model: an ensemble of small MLPs regressing values on sample features.

Where it sits: `features.py` turns samples into a fixed-width matrix; this module fits the
regressor from those features to (transformed) teacher values; `predictor.py` wraps both in
the user-facing `MetaValuator`.

All members are trained at once: one `jax.vmap` over member keys inside one `jax.jit`, so an
ensemble of eight costs one compiled program. Each member draws its own held-out split from its
key (a different fifth of the pool by default): the members differ in initialisation and in the
data they fit, which is what makes their spread an uncertainty (Lakshminarayanan et al.,
"Simple and scalable predictive uncertainty estimation using deep ensembles", NeurIPS 2017).
Early stopping keeps, per member, the parameters with the lowest held-out loss seen during the
`lax.scan` over full-batch Adam(W) steps.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["EnsembleFit", "fit_ensemble", "predict_members"]

Params = Any


class EnsembleFit(NamedTuple):
    """A fitted ensemble.

    Attributes:
      params: `{"dense_0": {"w", "b"}, ..., "out": {"w", "b"}}`, every leaf with a leading
        axis of length `members`.
      best_step: `(members,)` step whose parameters were kept (early stopping).
      holdout_loss: `(members,)` held-out mean squared error of the kept parameters, in
        units of the (standardised) targets.
    """

    params: Params
    best_step: np.ndarray
    holdout_loss: np.ndarray


def _init_member(key: jax.Array, d: int, hidden: tuple[int, ...]) -> Params:
    sizes = (d,) + hidden + (1,)
    names = [f"dense_{i}" for i in range(len(hidden))] + ["out"]
    keys = jax.random.split(key, len(names))
    return {
        name: {
            "w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a),
            "b": jnp.zeros((b,)),
        }
        for name, k, a, b in zip(names, keys, sizes[:-1], sizes[1:])
    }


def _apply_member(params: Params, x: jax.Array) -> jax.Array:
    """One member's predictions: x `(n, f)` -> `(n,)`."""
    h = x
    n_hidden = len(params) - 1
    for i in range(n_hidden):
        h = jax.nn.silu(h @ params[f"dense_{i}"]["w"] + params[f"dense_{i}"]["b"])
    return (h @ params["out"]["w"] + params["out"]["b"])[:, 0]


def predict_members(params: Params, x: Any) -> jax.Array:
    """Predictions of every member: x `(n, f)` -> `(members, n)`."""
    return _predict(params, jnp.asarray(x, jnp.float32))


@jax.jit
def _predict(params, x):
    return jax.vmap(_apply_member, in_axes=(0, None))(params, x)


def fit_ensemble(
    x: Any,
    targets: Any,
    *,
    key: jax.Array,
    members: int = 8,
    hidden: Sequence[int] = (64, 64),
    steps: int = 1500,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-4,
    holdout: float = 0.2,
    init_params: Params | None = None,
) -> EnsembleFit:
    """Fit `members` MLPs to `targets` by mean squared error, with early stopping.

    Args:
      x: features `(n, f)`, best standardised (zero mean, unit variance per column).
      targets: `(n,)`, best standardised; the loss is in their units.
      key: one key; member `m` uses `jax.random.split(key, members)[m]` for its
        initialisation and its held-out split.
      members: ensemble size (a Python int: fixes the compiled shapes).
      hidden: widths of the hidden layers.
      steps: full-batch AdamW steps per member.
      learning_rate, weight_decay: AdamW settings (decoupled weight decay, per step).
      holdout: share of the samples each member holds out for early stopping (at least one
        sample is held out and at least one is fitted).
      init_params: start every member from these (stacked) params instead of a fresh
        initialisation, e.g. to fine-tune an ensemble on a few samples of a new task.

    Returns:
      An `EnsembleFit` whose params are the ones with the lowest held-out loss.

    Example:
      >>> import jax, numpy as np
      >>> x = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]
      >>> fit = fit_ensemble(x, 2 * x[:, 0], key=jax.random.PRNGKey(0), members=2, steps=200)
      >>> predict_members(fit.params, x).shape
      (2, 40)
    """
    x = jnp.asarray(x, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    n = x.shape[0]
    n_out = int(min(max(round(holdout * n), 1), n - 1))
    keys = jax.random.split(key, members)
    params, best_step, loss = _fit(
        x,
        targets,
        keys,
        init_params,
        n_out=n_out,
        hidden=tuple(int(h) for h in hidden),
        steps=int(steps),
        learning_rate=float(learning_rate),
        weight_decay=float(weight_decay),
    )
    return EnsembleFit(params, np.asarray(best_step), np.asarray(loss))


@functools.partial(
    jax.jit,
    static_argnames=("n_out", "hidden", "steps", "learning_rate", "weight_decay"),
)
def _fit(
    x, targets, keys, init_params, *, n_out, hidden, steps, learning_rate, weight_decay
):
    n = x.shape[0]
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)

    def fit_one(key, start):
        k_init, k_split = jax.random.split(key)
        params = _init_member(k_init, x.shape[1], hidden) if start is None else start
        held = jnp.zeros(n).at[jax.random.permutation(k_split, n)[:n_out]].set(1.0)
        w_fit, w_held = (1.0 - held) / (n - n_out), held / n_out

        def losses(p):
            err = (_apply_member(p, x) - targets) ** 2
            return jnp.sum(w_fit * err), jnp.sum(w_held * err)

        def step(carry, t):
            p, state, best, best_loss, best_t = carry
            (_, held_loss), grads = jax.value_and_grad(losses, has_aux=True)(p)
            better = (
                held_loss < best_loss
            )  # the loss of `p`, the params before this step
            best = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), p, best)
            best_t = jnp.where(better, t, best_t)
            best_loss = jnp.minimum(held_loss, best_loss)
            updates, state = optimizer.update(grads, state, p)
            return (
                optax.apply_updates(p, updates),
                state,
                best,
                best_loss,
                best_t,
            ), None

        carry = (params, optimizer.init(params), params, jnp.inf, 0)
        (last, _, best, best_loss, best_t), _ = jax.lax.scan(
            step, carry, jnp.arange(steps)
        )
        last_loss = losses(last)[1]
        better = last_loss < best_loss
        best = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), last, best)
        return best, jnp.where(better, steps, best_t), jnp.minimum(last_loss, best_loss)

    if init_params is None:
        return jax.vmap(lambda k: fit_one(k, None))(keys)
    return jax.vmap(fit_one)(keys, init_params)
