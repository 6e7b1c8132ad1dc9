"""Target models as pairs of pure functions over pytrees.

Where it sits: what the training engine trains and every value family differentiates.

The built-in constructors return one `Model` object per configuration (`logistic_regression(3)
is logistic_regression(3)`), so that the engine's compiled programs, cached per model, are
reused by a second utility for the same model.

A `Model` is `init(key, x) -> params` and `apply(params, x) -> logits`, with `x` of shape
`(batch, d)` and logits of shape `(batch, n_classes)`. Params are dicts keyed by layer name.
`embed(params, x)` (optional) gives the penultimate-layer representation, shape
`(batch, width)`, for methods that work in the model's own feature space (KNN-Shapley,
meta-learner neighbourhoods).

Bring your own network:

* Flax Linen: `Model(init=lambda key, x: module.init(key, x), apply=module.apply)`;
  `module.init` returns the `{"params": ...}` dict that `module.apply` takes.
* Equinox: `from_equinox(eqx_model)` below splits the module into trainable arrays (the params
  pytree) and static structure, and applies it row by row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Model", "from_equinox", "linear_regression", "logistic_regression", "mlp",
           "n_params"]

Params = Any


class Model(NamedTuple):
    """A target model: pure `init` and `apply` (and optionally `embed`).

    Attributes:
      init: `init(key, x) -> params`; `x` is an example batch `(batch, d)`.
      apply: `apply(params, x) -> logits`, `(batch, d) -> (batch, n_classes)`.
      embed: `embed(params, x) -> (batch, width)`, the input of the last layer; `None` if the
        model has none.
      name: short description, stored with results so that values name their target model.
    """

    init: Callable[[jax.Array, jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    embed: Callable[[Params, jax.Array], jax.Array] | None = None
    name: str = "custom"


def n_params(params: Params) -> int:
    """Number of scalars in a params pytree."""
    return int(sum(p.size for p in jax.tree_util.tree_leaves(params)))


@functools.cache
def logistic_regression(n_classes: int) -> Model:
    """Logistic regression with scikit-learn's parametrisations (`LogisticRegression`).

    Two classes: one weight vector, logits `[0, x @ w + b]` (class 0's logit pinned at zero),
    `d + 1` parameters; swapping the two labels negates the parameters. `k >= 3` classes: the
    symmetric multinomial model, logits `x @ w + b` with `k` weight vectors, `(d + 1) k`
    parameters. With an L2 penalty on every weight vector (`training.weighted_objective`
    penalises all weight matrices) the fitted model does not depend on how the classes are
    numbered, and its minimiser is scikit-learn's: the weights sum to zero over classes at the
    optimum; the biases are defined up to a common shift, which the solvers fix by making them
    sum to zero. Params start at zero.

    Params: `{"linear": {"w": (d, m), "b": (m,)}}` with `m = 1` for two classes, else `k`.
    """
    m = 1 if n_classes == 2 else n_classes

    def init(key, x):
        del key
        d = x.shape[-1]
        return {"linear": {"w": jnp.zeros((d, m), x.dtype), "b": jnp.zeros((m,), x.dtype)}}

    def apply(params, x):
        z = x @ params["linear"]["w"] + params["linear"]["b"]
        if m == 1:
            return jnp.concatenate([jnp.zeros(z.shape[:-1] + (1,), z.dtype), z], axis=-1)
        return z

    def embed(params, x):
        del params
        return x

    return Model(init, apply, embed, name=f"logistic_regression(n_classes={n_classes})")


@functools.cache
def linear_regression() -> Model:
    """A linear model with one real output, `x @ w + b`: the ridge-regression target (trained
    in closed form by the engine; scikit-learn's `Ridge(alpha=l2)`). Params start at zero.

    Params: `{"linear": {"w": (d, 1), "b": (1,)}}`; `apply` returns predictions `(batch, 1)`.
    """

    def init(key, x):
        del key
        return {"linear": {"w": jnp.zeros((x.shape[-1], 1), x.dtype),
                           "b": jnp.zeros((1,), x.dtype)}}

    def apply(params, x):
        return x @ params["linear"]["w"] + params["linear"]["b"]

    def embed(params, x):
        del params
        return x

    return Model(init, apply, embed, name="linear_regression")


def mlp(
    n_classes: int,
    hidden: Sequence[int] = (64,),
    *,
    activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
) -> Model:
    """Multi-layer perceptron with He-normal initialisation.

    With `n_classes=1` and a regression data set it is an MLP regressor (one real output,
    trained on the squared error).

    Params: `{"dense_0": {"w", "b"}, ..., "out": {"w", "b"}}`; `embed` returns the last hidden
    layer's activations, shape `(batch, hidden[-1])`.
    """
    return _mlp(int(n_classes), tuple(int(h) for h in hidden), activation)


@functools.lru_cache(maxsize=64)
def _mlp(n_classes: int, hidden: tuple[int, ...], activation: Callable) -> Model:
    """`mlp`'s cached builder: one `Model` per (classes, widths, activation)."""

    def init(key, x):
        sizes = (x.shape[-1],) + hidden + (n_classes,)
        names = [f"dense_{i}" for i in range(len(hidden))] + ["out"]
        keys = jax.random.split(key, len(names))
        return {
            name: {"w": jax.random.normal(k, (a, b), x.dtype) * jnp.sqrt(2.0 / a).astype(x.dtype),
                   "b": jnp.zeros((b,), x.dtype)}
            for name, k, a, b in zip(names, keys, sizes[:-1], sizes[1:])
        }

    def embed(params, x):
        h = x
        for i in range(len(hidden)):
            layer = params[f"dense_{i}"]
            h = activation(h @ layer["w"] + layer["b"])
        return h

    def apply(params, x):
        return embed(params, x) @ params["out"]["w"] + params["out"]["b"]

    return Model(init, apply, embed, name=f"mlp(n_classes={n_classes}, hidden={hidden})")


def from_equinox(module: Any, name: str = "equinox") -> Model:
    """Adapter for an Equinox module that maps one sample `(d,) -> (n_classes,)`.

    The module's inexact arrays become the params pytree; the rest is closed over. `init`
    ignores its key and returns the module's current arrays (initialise the module yourself,
    with your own key, when you build it).
    """
    import equinox as eqx

    params, static = eqx.partition(module, eqx.is_inexact_array)

    def init(key, x):
        del key, x
        return params

    def apply(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    return Model(init, apply, None, name=name)
