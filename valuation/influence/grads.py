"""Per-sample loss gradients over a flat parameter vector, in memory-bounded chunks.

Where it sits: the first step of every influence method (influence functions, TracIn, TRAK).
The target model's params pytree is split into the *selected* leaves (all of them, or the
top-level entries named in `layers`, e.g. `("out",)` for the last layer of `models.mlp`) and
the rest, which is held fixed. The selected leaves are raveled into one vector `theta` of
shape `(p,)`; every gradient, Hessian-vector product and projection works on that vector.

Loss contract: the per-sample loss is the training loss of `training.sample_losses`: the
softmax cross-entropy of `model.apply`, `ce_i(theta) = CE(apply(theta, x_i), y_i)`, or for a
regression target (`loss="squared"`, float targets) half the squared error
`(apply(theta, x_i) - y_i)^2 / 2`; *without* the L2 term: the penalty belongs to the
objective, not to any one sample (see `training.weighted_objective`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..errors import ValuationError
from ..models import Model
from ..training import sample_losses as training_losses
from ..training import weighted_objective

__all__ = ["Flat", "chunk_size", "flatten", "grad_chunk", "loss_of", "per_sample_grads"]

Params = Any


class Flat(NamedTuple):
    """A params pytree seen as a flat vector of its selected leaves.

    Attributes:
      theta: the selected leaves raveled, shape `(p,)`.
      params: `params(theta) -> pytree`, the full params with `theta` put back.
      layers: the selected top-level keys, or `None` for all.
    """

    theta: jax.Array
    params: Callable[[jax.Array], Params]
    layers: tuple[str, ...] | None

    @property
    def dim(self) -> int:
        """Number of selected parameters `p`."""
        return int(self.theta.shape[0])


def flatten(params: Params, layers: Sequence[str] | None = None) -> Flat:
    """Select the leaves that influence is computed for and ravel them.

    Args:
      params: the target model's params (a dict keyed by layer name).
      layers: top-level keys to keep (e.g. `("out",)`); `None` keeps every leaf.

    Returns:
      A `Flat` view; the unselected layers are closed over as constants.

    Example:
      >>> import jax.numpy as jnp
      >>> flat = flatten({"a": {"w": jnp.ones((2, 3))}, "out": {"b": jnp.zeros(4)}}, ("out",))
      >>> flat.dim
      4
    """
    if layers is None:
        theta, unravel = ravel_pytree(params)
        return Flat(theta, unravel, None)
    layers = tuple(layers)
    if not isinstance(params, dict) or not layers:
        raise ValuationError(
            "layers= selects top-level keys of a params dict; pass e.g. "
            "layers=('out',), or layers=None for all parameters"
        )
    missing = [k for k in layers if k not in params]
    if missing:
        raise ValuationError(
            f"layers {missing} are not in the params (keys: "
            f"{sorted(params)}); pass names of top-level entries"
        )
    chosen = {k: params[k] for k in layers}
    theta, unravel = ravel_pytree(chosen)
    fixed = {k: v for k, v in params.items() if k not in layers}
    return Flat(theta, lambda t: {**fixed, **unravel(t)}, layers)


def loss_of(data) -> str:
    """The training loss of a `Dataset`'s task: "squared" for a regression target, else
    "cross_entropy" (`training.sample_losses`)."""
    return "squared" if data.task == "regression" else "cross_entropy"


def sample_losses(
    model: Model, flat: Flat, theta: jax.Array, x: jax.Array, y: jax.Array,
    loss: str = "cross_entropy",
) -> jax.Array:
    """Each sample's loss (module docstring), shape `(batch,)`, at `theta`."""
    return training_losses(model.apply(flat.params(theta), x), y, loss)


def mean_objective(
    model: Model, flat: Flat, l2: float, loss: str = "cross_entropy"
) -> Callable[..., jax.Array]:
    """`(theta, x, y) -> J(theta)`, the training objective at weight 1 on every sample.

    `J = (sum_i loss_i + l2/2 ||W||^2) / n` exactly as in `training.weighted_objective`, so
    its Hessian is the curvature of the objective the model was trained on (for ridge
    regression `(X^T X + l2 I_w) / n`, the bias unpenalised).
    """

    def objective(theta, x, y):
        ones = jnp.ones(x.shape[0], x.dtype)
        return weighted_objective(model, flat.params(theta), x, y, ones, l2, loss)

    return objective


def grad_chunk(
    model: Model, flat: Flat, loss: str = "cross_entropy"
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """`(theta, x (c, d), y (c,)) -> (c, p)` per-sample loss gradients (vmap of grad)."""

    def one(theta, xi, yi):
        return sample_losses(model, flat, theta, xi[None], yi[None], loss)[0]

    return jax.vmap(jax.grad(one), in_axes=(None, 0, 0))


def chunk_size(
    dim: int, *, memory_budget: float, width: int = 1, n: int | None = None
) -> int:
    """Samples per chunk so that `(chunk, dim)` gradients times `width` fit the budget.

    Args:
      dim: parameters per gradient `p`.
      memory_budget: bytes for the chunk's float32 gradients and their temporaries (a factor 4
        is allowed for the backward pass).
      width: how many such arrays live at once (e.g. checkpoints in TracIn).
      n: cap at the number of samples.
    """
    c = int(memory_budget // (4 * 4 * max(dim, 1) * max(width, 1)))
    c = max(1, min(c, 4096))
    return c if n is None else max(1, min(c, n))


def per_sample_grads(
    model: Model,
    params: Params,
    x: Any,
    y: Any,
    *,
    layers: Sequence[str] | None = None,
    chunk: int | None = None,
    memory_budget: float = 2e8,
    loss: str = "cross_entropy",
) -> np.ndarray:
    """Gradients of each sample's loss with respect to the selected parameters.

    The samples are processed `chunk` at a time (last chunk padded, so one compile); only the
    result `(n, p)` is materialised. For large models stream chunks through `grad_chunk`
    instead, as `scores.influence` does.

    Args:
      model: the target model; params: its parameters.
      x: features `(n, d)`; y: int labels `(n,)`.
      layers: restrict to these top-level param keys (see `flatten`).
      chunk: samples per compiled call; default from `memory_budget` (bytes).
      loss: "cross_entropy" (int labels) or "squared" (float targets; `loss_of(data)`).

    Returns:
      float32 array `(n, p)`, rows in sample order, columns in `flatten(params, layers)` order.

    Example:
      >>> import jax, jax.numpy as jnp, valuation as va
      >>> m = va.logistic_regression(2)
      >>> p = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
      >>> per_sample_grads(m, p, jnp.ones((5, 3)), jnp.zeros(5, jnp.int32)).shape
      (5, 4)
    """
    flat = flatten(params, layers)
    label = jnp.float32 if loss == "squared" else jnp.int32
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, label)
    n = x.shape[0]
    chunk = chunk or chunk_size(flat.dim, memory_budget=memory_budget, n=n)
    fn = jax.jit(grad_chunk(model, flat, loss))
    return np.concatenate(
        [
            np.asarray(fn(flat.theta, xc, yc))[:size]
            for xc, yc, size in padded_chunks(x, y, chunk)
        ]
    )


def padded_chunks(x: jax.Array, y: jax.Array, chunk: int):
    """`(x_chunk, y_chunk, size)` of `chunk` rows; the last is padded with its first row."""
    n = x.shape[0]
    for start in range(0, n, chunk):
        xc, yc = x[start : start + chunk], y[start : start + chunk]
        size = xc.shape[0]
        if size < chunk:
            pad = chunk - size
            xc = jnp.concatenate([xc, jnp.repeat(xc[:1], pad, axis=0)])
            yc = jnp.concatenate([yc, jnp.repeat(yc[:1], pad, axis=0)])
        yield xc, yc, size
