"""Recording the learning dynamics of one training run: per-sample, per-epoch statistics.

Where it sits: between `training.fit` and the dynamics signals (`signals.py`). The target model
trains once (or once per seed, the seeds as one `vmap`) with `fit(..., save_every=...)`, which
keeps the parameters after every epoch; the per-sample statistics are then computed from those
checkpoints in one vectorised pass (`trajectory`). The recorder therefore never touches the
optimiser loop: the trained parameters are exactly those of an unrecorded run, and the same
pass gives the same statistics for samples the model never saw.

Memory: the checkpoints cost `seeds x epochs x n_params` floats and the trace
`7 x seeds x epochs x n` floats; the pass keeps one checkpoint's `(n, n_classes)` logits live
at a time (`jax.lax.map` over checkpoints).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..data import Dataset, align_classes
from ..errors import ValuationError
from ..models import Model
from ..training import fit

__all__ = ["DEFAULT_STEPS_PER_EPOCH", "Trace", "record", "trajectory", "with_extra_class"]

Params = Any

DEFAULT_STEPS_PER_EPOCH = 10
"""Optimizer steps between two recordings in full-batch training (one "epoch")."""


class Trace(NamedTuple):
    """Per-sample statistics at every checkpoint, each of shape `(seeds, epochs, n)`.

    Checkpoint `t` holds the parameters after `t + 1` epochs, so the last one is the trained
    model. Logits are `z = apply(params, x)`, `p = softmax(z)`, `y` the given label, `e_y`
    its one-hot vector and `h = embed(params, x)` the input of the last layer.

    For a regression target (`n_classes == 0`) the residual `r = f(x) - y` of the one real
    output takes the place of `p - e_y`: loss is the squared loss `r^2 / 2` the model trains
    on, error_norm `|r|`, grad_norm `|r| sqrt(||h||^2 + 1)` and alignment
    `r_i [h_i, 1] . mean_v r_v [h_v, 1]`; prob and margin are NaN and correct is False (the
    class-only signals refuse a regression trace).

    Attributes:
      loss: cross-entropy `-log p_y`, in nats.
      prob: probability of the given label, `p_y`.
      correct: `z_y > max_{c != y} z_c` (bool; a tie counts as wrong).
      margin: `z_y - max_{c != y} z_c`, in logits (Pleiss et al. 2020's margin).
      error_norm: `||p - e_y||_2`, the EL2N quantity (Paul et al. 2021).
      grad_norm: norm of the loss gradient with respect to a softmax last layer
        `z = h W + b`: `||p - e_y|| * sqrt(||h||^2 + 1)` (the `+1` is the bias).
      alignment: `g_i . g_valid`, the dot product of that last-layer gradient with the mean
        last-layer gradient over the validation set; NaN when no validation set was given.
        `-lr * alignment` is the first-order change of the mean validation loss from a
        gradient step on sample i (TracIn, Pruthi et al. 2020), so higher = more helpful.
    """

    loss: np.ndarray
    prob: np.ndarray
    correct: np.ndarray
    margin: np.ndarray
    error_norm: np.ndarray
    grad_norm: np.ndarray
    alignment: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """`(seeds, epochs, n)`."""
        return tuple(self.loss.shape)


def _last_layer_grad(model: Model, params: Params, x: jax.Array, y: jax.Array, k: int):
    """Residuals `p - e_y` `(n, k)` (for a regression target, `k == 0`: `f(x) - y`,
    `(n, 1)`) and last-layer inputs `[h, 1]` `(n, width + 1)`.

    The per-sample gradient of the cross-entropy (of the squared loss) with respect to
    `(W, b)` of `z = h W + b` is the outer product `[h, 1]^T residual`.
    """
    logits = model.apply(params, x)
    h = model.embed(params, x)
    if k == 0:
        residual = logits - y[:, None]
    else:
        residual = (jax.nn.softmax(logits, axis=-1)
                    - jax.nn.one_hot(y, k, dtype=logits.dtype))
    hb = jnp.concatenate([h, jnp.ones(h.shape[:-1] + (1,), h.dtype)], axis=-1)
    return logits, residual, hb


def _checkpoint_stats(model: Model, params: Params, x, y, xv, yv, k: int):
    """The seven statistics of `Trace` at one checkpoint, each `(n,)`."""
    logits, residual, hb = _last_layer_grad(model, params, x, y, k)
    if k == 0:  # regression: no probabilities, margins or correctness
        loss = 0.5 * residual[:, 0] ** 2
        prob = margin = jnp.full(y.shape, jnp.nan, logits.dtype)
        correct = jnp.zeros(y.shape, bool)
    else:
        onehot = jax.nn.one_hot(y, k, dtype=bool)
        z_y = jnp.sum(jnp.where(onehot, logits, 0.0), axis=-1)
        z_other = jnp.max(jnp.where(onehot, -jnp.inf, logits), axis=-1)
        loss = jax.nn.logsumexp(logits, axis=-1) - z_y
        prob, correct, margin = jnp.exp(-loss), z_y > z_other, z_y - z_other
    error = jnp.linalg.norm(residual, axis=-1)
    grad_norm = error * jnp.linalg.norm(hb, axis=-1)
    if xv is None:
        alignment = jnp.full(y.shape, jnp.nan, logits.dtype)
    else:
        _, res_v, hb_v = _last_layer_grad(model, params, xv, yv, k)
        g_valid = hb_v.T @ res_v / xv.shape[0]  # (width + 1, k): mean validation gradient
        # <[h_i,1]^T r_i, G>_F = [h_i,1] G r_i^T: the per-sample gradients are never formed.
        alignment = jnp.einsum("na,ac,nc->n", hb, g_valid, residual)
    return (loss, prob, correct, margin, error, grad_norm, alignment)


@functools.partial(jax.jit, static_argnames=("model", "k"))
def _trajectory(model, checkpoints, x, y, xv, yv, k):
    lead = jax.tree_util.tree_leaves(checkpoints)[0].shape[:2]
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), checkpoints)
    stats = jax.lax.map(lambda p: _checkpoint_stats(model, p, x, y, xv, yv, k), flat)
    return tuple(s.reshape(lead + s.shape[1:]) for s in stats)


def trajectory(
    model: Model,
    checkpoints: Params,
    x: Any,
    y: Any,
    *,
    n_classes: int,
    valid: Dataset | None = None,
) -> Trace:
    """Per-sample statistics of samples `(x, y)` at every checkpoint, no training.

    This is the recorder's only computation: `record` calls it on the training set, and it
    gives the same statistics for any other samples (new rows, a validation set).

    Args:
      model: the target model; needs `model.embed` (the last layer's input).
      checkpoints: params with two leading axes `(seeds, epochs)`, as `record` returns them.
      x: features `(m, d)`, float32; y: label codes `(m,)` in `[0, n_classes)` (real
        targets for a regression target).
      n_classes: number of outputs of the model; 0 for a regression target (one output).
      valid: validation set (same class codes) for the gradient alignment; None gives NaN.

    Returns:
      A `Trace` of shape `(seeds, epochs, m)`, numpy arrays.
    """
    if model.embed is None:
        raise ValuationError(f"model {model.name!r} has no `embed` (the input of its last "
                             "layer), which the gradient statistics need; use "
                             "models.mlp / models.logistic_regression or give it an embed")
    label = jnp.float32 if n_classes == 0 else jnp.int32
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, label)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValuationError(f"x must be (m, d) and y (m,), got {x.shape} and {y.shape}")
    if n_classes and y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValuationError(f"label codes must lie in [0, {n_classes}); re-code new samples "
                             "onto the training classes with data.align_classes")
    leads = {tuple(a.shape[:2]) for a in jax.tree_util.tree_leaves(checkpoints)}
    if len(leads) != 1 or min(len(a.shape) for a in jax.tree_util.tree_leaves(checkpoints)) < 2:
        raise ValuationError("checkpoints need two leading axes (seeds, epochs) shared by all "
                             "leaves, as record returns them; for one run's stacked params "
                             "add the seed axis with jax.tree_util.tree_map(lambda a: a[None], "
                             "checkpoints)")
    xv = yv = None
    if valid is not None:
        xv, yv = jnp.asarray(valid.x, jnp.float32), jnp.asarray(valid.y, label)
    stats = _trajectory(model, checkpoints, x, y, xv, yv, n_classes)
    return Trace(*(np.asarray(s) for s in stats))


@functools.partial(jax.jit, static_argnames=("model", "steps", "save_every", "optimizer",
                                             "batch_size"))
def _train(model, x, y, weights, keys, l2, *, steps, save_every, optimizer, batch_size):
    """`fit` vmap-ed over keys (and labels, when `y` is `(seeds, n)`; and weights, when
    given as `(seeds, n)`; None is weight 1 for every sample); float targets train on the
    squared loss."""
    w_axis = None if weights is None else 0
    weights = jnp.ones(x.shape[0], jnp.float32) if weights is None else weights
    loss = "squared" if jnp.issubdtype(y.dtype, jnp.floating) else "cross_entropy"

    def one(y_, w, key):
        return fit(model, x, y_, w, key=key, steps=steps, optimizer=optimizer, l2=l2,
                   batch_size=batch_size, save_every=save_every, loss=loss)

    return jax.vmap(one, in_axes=(0 if y.ndim == 2 else None, w_axis, 0))(y, weights, keys)


def _schedule(n: int, epochs: int, steps_per_epoch: int | None, batch_size: int | None):
    if not isinstance(epochs, int) or epochs < 2:
        raise ValuationError(f"epochs must be an int >= 2 (a trajectory needs two points), "
                             f"got {epochs!r}")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValuationError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if steps_per_epoch is None:
        steps_per_epoch = (-(-n // batch_size) if batch_size is not None and batch_size < n
                           else DEFAULT_STEPS_PER_EPOCH)
    if not (isinstance(steps_per_epoch, int) and steps_per_epoch >= 1):
        raise ValuationError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    return steps_per_epoch


def train_checkpoints(
    model: Model,
    x: jax.Array,
    y: jax.Array,
    keys: jax.Array,
    *,
    epochs: int,
    steps_per_epoch: int | None = None,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    l2: float = 1.0,
    weights: Any = None,
) -> Params:
    """Train one model per key and keep the params after every epoch.

    Args:
      x: `(n, d)`; y: `(n,)`, or `(seeds, n)` for different labels per run (int labels, or
        float targets of a regression target, trained on the squared loss); keys
        `(seeds, 2)`.
      epochs, steps_per_epoch, batch_size, optimizer, l2, weights: see `record`.

    Returns:
      Checkpoints: the params' structure with leading axes `(seeds, epochs)`.
    """
    spe = _schedule(x.shape[0], epochs, steps_per_epoch, batch_size)
    if weights is not None:
        weights = jnp.asarray(weights, jnp.float32)
    y = np.asarray(y)
    y = y.astype(np.float32) if np.issubdtype(y.dtype, np.floating) else y.astype(np.int32)
    _, saved = _train(model, jnp.asarray(x, jnp.float32), jnp.asarray(y),
                      weights, keys, jnp.float32(l2),
                      steps=epochs * spe, save_every=spe, optimizer=optimizer,
                      batch_size=batch_size)
    return saved


def record(
    model: Model,
    train: Dataset,
    *,
    key: jax.Array,
    epochs: int = 30,
    steps_per_epoch: int | None = None,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    l2: float = 1.0,
    valid: Dataset | None = None,
    seeds: int = 1,
    weights: Any = None,
) -> tuple[Params, Trace]:
    """Train the target model and record every sample's trajectory.

    Training is `training.fit` on all samples (weights 1) for `epochs * steps_per_epoch`
    steps; the params after every epoch are kept and the statistics of `Trace` are computed
    from them afterwards, so recording never changes the trained model.

    Args:
      model: the target model (needs `embed`).
      train: the training set.
      key: split into one key per seed; each seeds the initialisation and batch order.
      epochs: number of recordings (a Python int >= 2).
      steps_per_epoch: optimizer steps per epoch; default one pass over the data in
        mini-batches of `batch_size`, or 10 full-batch steps.
      batch_size: mini-batch size (default full batch), as in `training.fit`.
      optimizer: optax optimizer (default `training.default_optimizer()`).
      l2: L2 penalty, as in `training.fit`.
      valid: validation set for the gradient alignment (optional).
      seeds: independent training runs, trained as one `vmap` over keys.
      weights: optional per-run sample weights `(seeds, n)` (default all ones), e.g. K-fold
        masks: run `s` then trains on the samples with a positive weight only, and the
        trace still covers every sample.

    Returns:
      `(checkpoints, trace)`: the params with leading axes `(seeds, epochs)` (the last epoch is
      the trained model) and the `Trace`, shape `(seeds, epochs, n)`.

    Example:
      >>> import jax, valuation as va
      >>> data = va.make_classification(60, 3, separation=3.0, seed=0)
      >>> ckpt, trace = record(va.logistic_regression(2), data, key=jax.random.PRNGKey(0),
      ...                      epochs=5)
      >>> trace.shape
      (1, 5, 60)
    """
    if not (isinstance(seeds, int) and seeds >= 1):
        raise ValuationError(f"seeds must be a positive int, got {seeds!r}")
    if valid is not None:
        train, valid = align_classes(train, valid)
    if weights is not None and np.shape(weights) != (seeds, train.n):
        raise ValuationError(f"weights must have shape (seeds, n) = {(seeds, train.n)}, got "
                             f"{np.shape(weights)}")
    keys = jax.random.split(key, seeds)
    checkpoints = train_checkpoints(model, train.x, train.y, keys, epochs=epochs,
                                    steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                                    optimizer=optimizer, l2=l2, weights=weights)
    trace = trajectory(model, checkpoints, train.x, train.y, n_classes=train.n_classes,
                       valid=valid)
    return checkpoints, trace


def with_extra_class(model: Model) -> Model:
    """The same model with one more output: a logit `h w + b` on its last-layer input `h`.

    For `logistic_regression(2)` this is a 3-class logistic regression with class 0's logit
    pinned at zero, and for `mlp(k)` it is `mlp(k + 1)` with the new output column starting at
    zero: the architecture the
    threshold-sample trick of AUM trains (Pleiss et al. 2020, section 3). Params:
    `{"base": <model's params>, "extra": {"w": (width, 1), "b": (1,)}}`.
    """
    if model.embed is None:
        raise ValuationError(f"model {model.name!r} has no `embed`, so no extra class can be "
                             "attached to its last layer; give it an embed function")

    def init(key, x):
        base = model.init(key, x)
        width = model.embed(base, x).shape[-1]
        return {"base": base, "extra": {"w": jnp.zeros((width, 1), x.dtype),
                                        "b": jnp.zeros((1,), x.dtype)}}

    def apply(params, x):
        h = model.embed(params["base"], x)
        extra = h @ params["extra"]["w"] + params["extra"]["b"]
        return jnp.concatenate([model.apply(params["base"], x), extra], axis=-1)

    def embed(params, x):
        return model.embed(params["base"], x)

    return Model(init, apply, embed, name=f"{model.name}+extra_class")
