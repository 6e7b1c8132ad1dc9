"""The utility engine: `U(masks) -> scores`, many subsets trained and scored in one program.

Where it sits: under every retraining-based value (Shapley, Banzhaf, leave-one-out, Data-OOB)
and the meta-learner's teachers, which spend nearly all their time here.

`make_utility(model, train, valid)` returns a `Utility`. Calling it on weights of shape
`(B, n_train)` trains B models (one compiled, vmap-ed program per chunk of the batch) and
returns their validation scores, shape `(B,)`, higher = better.

Degenerate subsets (the game). A subset with fewer than two classes present (including the
empty subset) is not trained. By default (`degenerate="frequency"`) it is scored as the
constant predictor that outputs the subset's Laplace-smoothed class frequencies
`(w_c + 1) / (sum(w) + k)`: the empty subset scores as a uniform guess (accuracy `1/k`,
log-loss `log k`), and a one-class subset as "always predict that class" (accuracy = that
class's share of the validation set). With `degenerate="zero"` every degenerate subset scores
exactly 0, the convention of pyDVL (whose scikit-learn fit fails on one class and falls back to
its default score 0): the game pyDVL's values are computed for, so values are comparable with
its. The two games differ only on degenerate subsets, so their Shapley values differ by the
Shapley values of the game `U_frequency(S) * [S degenerate]`, which is large for small
coalitions: the zero game rewards a sample for completing the first two-class subset.

Accuracy counts ties fractionally (a prediction tied between `t` classes, one of them right,
scores `1/t`), which is what makes the uniform guess score exactly `1/k`.

Regression targets (a `Dataset` with `task == "regression"`): models are trained on half the
squared error (`training.sample_losses`) and scored by "r2" (default) or "neg_mse" on their
predictions. The one degenerate subset is the empty one (total weight 0); it is scored as the
constant prediction of the training targets' mean, so that `U(empty)` is about 0 in R^2 and the
values of a Shapley-type method share out the R^2 of the full model (or 0 with
`degenerate="zero"`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import glm
from .chunking import auto_chunk, warm_slots
from .data import Dataset, align_classes
from .errors import ValuationError
from .models import Model
from .training import fit, fit_logistic_newton, fit_warm, fit_warm_batch

__all__ = ["DEGENERATE", "METRICS", "REGRESSION_METRICS", "Utility", "accuracy", "balanced_accuracy",
           "class_weights", "make_utility", "neg_log_loss", "neg_mse", "padded_batches",
           "per_model_keys", "r2", "weight_rows"]

Metric = Callable[[jax.Array, jax.Array], jax.Array]


def accuracy(probs: jax.Array, y: jax.Array) -> jax.Array:
    """Mean accuracy, ties shared: probs `(n, k)`, y `(n,)` -> scalar in [0, 1]."""
    top = probs >= probs.max(axis=-1, keepdims=True)
    hit = jnp.take_along_axis(top, y[:, None], axis=-1)[:, 0]
    return jnp.mean(hit / top.sum(axis=-1))


def neg_log_loss(probs: jax.Array, y: jax.Array) -> jax.Array:
    """Minus the mean log-loss (higher = better), probabilities clipped at 1e-7."""
    p = jnp.take_along_axis(probs, y[:, None], axis=-1)[:, 0]
    return jnp.mean(jnp.log(jnp.clip(p, 1e-7, 1.0)))


def balanced_accuracy(probs: jax.Array, y: jax.Array) -> jax.Array:
    """Mean over the classes present in `y` of their accuracy (ties shared, as `accuracy`).

    probs `(n, k)`, y `(n,)` -> scalar in [0, 1]; a constant predictor scores 1/(classes
    present), whatever the class shares, so it does not reward predicting the majority class.
    """
    top = probs >= probs.max(axis=-1, keepdims=True)
    hit = jnp.take_along_axis(top, y[:, None], axis=-1)[:, 0] / top.sum(axis=-1)
    onehot = jax.nn.one_hot(y, probs.shape[-1], dtype=hit.dtype)  # (n, k)
    per_class = onehot.sum(axis=0)
    recall = (hit @ onehot) / jnp.maximum(per_class, 1.0)
    return jnp.sum(recall) / jnp.sum(per_class > 0)


def neg_mse(pred: jax.Array, y: jax.Array) -> jax.Array:
    """Minus the mean squared error of predictions `(n,)` (higher = better)."""
    return -jnp.mean((pred - y) ** 2)


def r2(pred: jax.Array, y: jax.Array) -> jax.Array:
    """Coefficient of determination `1 - SSE / SST` of predictions `(n,)` (scikit-learn's
    `r2_score`; 1 is perfect, 0 is predicting the validation mean)."""
    sst = jnp.sum((y - jnp.mean(y)) ** 2)
    return 1.0 - jnp.sum((pred - y) ** 2) / jnp.maximum(sst, 1e-30)


DEGENERATE = ("frequency", "zero")  # how subsets with fewer than two classes are scored

METRICS: dict[str, Metric] = {"accuracy": accuracy, "balanced_accuracy": balanced_accuracy,
                              "neg_log_loss": neg_log_loss, "neg_mse": neg_mse, "r2": r2}
REGRESSION_METRICS = ("r2", "neg_mse")


@dataclasses.dataclass(frozen=True, eq=False)
class Utility:
    """Trains a target model on weighted subsets of `train` and scores it on `valid`.

    Build it with `make_utility`. Attributes are read-only configuration.

    Attributes:
      model: the target model.
      train, valid: the data sets (same class list).
      metric: `metric(probs (n_valid, k), y (n_valid,)) -> scalar`, higher = better; for a
        regression target `metric(predictions (n_valid,), y (n_valid,))`.
      metric_name: its name, for records.
      solver: "pcg" (logistic regression: `glm.fit_logistic`, warm-started preconditioned
        conjugate gradients), "newton" (logistic regression: exact batched Newton,
        `training.fit_logistic_newton`), "closed_form" (linear regression: `glm.fit_ridge`),
        "warm" (any model: `training.fit_warm` from the full-data fit) or "gd" (optax `fit`
        from a keyed initialisation).
      steps: the cap on iterations ("pcg", "warm"), Newton steps ("newton") or optimizer steps
        ("gd").
      tol: "pcg" stops a model once the largest entry of its gradient is at most `tol`;
        "warm" once its objective has improved by less than `tol` on 5 consecutive steps.
      l2, optimizer, batch_size: training settings (see `training.fit`).
      chunk: models trained per compiled call ("warm" trains
        `chunking.warm_slots(chunk)` of them at a time, the others queued); bounds peak
        memory.
      class_weight: "balanced" or None; see `make_utility`.
      degenerate: "frequency" or "zero": the score of a subset with fewer than two classes
        (module docstring).
    """

    model: Model
    train: Dataset
    valid: Dataset
    metric: Metric
    metric_name: str
    solver: str
    steps: int
    l2: float
    optimizer: optax.GradientTransformation | None
    batch_size: int | None
    chunk: int
    tol: float = 1e-4
    class_weight: str | None = None
    degenerate: str = "frequency"

    @property
    def n(self) -> int:
        """Number of training samples (the length of a weight vector)."""
        return self.train.n

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings, stored with results."""
        out = {"model": self.model.name, "metric": self.metric_name, "solver": self.solver,
               "steps": self.steps, "l2": self.l2, "batch_size": self.batch_size,
               "class_weight": self.class_weight, "degenerate": self.degenerate,
               "n_train": self.train.n,
               "n_valid": self.valid.n}
        if self.solver in ("pcg", "warm"):
            out["tol"] = self.tol
        if self.task == "regression":
            out["task"] = "regression"
        return out

    def __call__(self, weights: Any, *, key: jax.Array | None = None,
                 chunk: int | None = None) -> np.ndarray:
        """Scores of the models trained on each weight vector.

        Args:
          weights: `(B, n_train)` (or `(n_train,)` for one subset), non-negative.
          key: training randomness (initialisation, mini-batch order). One key is shared by
            all B models (common random numbers: the difference between two subsets' scores is
            not blurred by different initialisations); pass `(B, 2)` keys for one each.
            Default `PRNGKey(0)`; irrelevant for the deterministic Newton solver.
          chunk: override the models per compiled call. Results do not depend on it.

        Returns:
          Scores, float64 numpy array `(B,)` (or a float for a single vector).
        """
        weights, single = weight_rows(weights, self.n)
        keys = per_model_keys(key, weights.shape[0])
        # Small batches use the next power of two below the chunk: few shapes, few compiles.
        size = min(chunk or self.chunk, 1 << (weights.shape[0] - 1).bit_length())
        out = np.concatenate([
            np.asarray(self._score(self._data, jnp.asarray(w), k))[:len_]
            for w, k, len_ in padded_batches(weights, keys, size)])
        return float(out[0]) if single else out.astype(np.float64)

    def fit(self, weights: Any, *, key: jax.Array | None = None) -> Any:
        """Batched params of the models trained on `weights` `(B, n_train)`.

        One compiled call, unchunked: each new `B` compiles anew, so keep `B` fixed (e.g. at
        `self.chunk`) when calling it repeatedly.
        """
        weights = jnp.asarray(np.atleast_2d(weights), jnp.float32)
        return self._fit(self._data, weights, per_model_keys(key, weights.shape[0]))

    def fit_full(self, *, key: jax.Array | None = None) -> Any:
        """Unbatched params of the model trained on every training sample (weight 1 each)."""
        if self.solver in ("pcg", "warm"):  # the warm start every subset starts from
            return self._data["full"]
        batched = self.fit(np.ones((1, self.n), np.float32), key=key)
        return jax.tree_util.tree_map(lambda a: a[0], batched)

    def compile_fit_ahead(self, batch: int) -> None:
        """Compile `fit` for `batch` weight vectors from shapes alone: the warm start's
        shapes come from `jax.eval_shape`, so nothing is trained. Meant for a second thread
        while this one compiles and runs the full-data fit (`DataRater.fit`): a later
        `fit` of `batch` rows reuses the program (JAX's in-memory cache)."""
        spec = _spec(self)
        programs = _programs_of(spec)
        raw = [jax.ShapeDtypeStruct(np.shape(a), jax.dtypes.canonicalize_dtype(
            np.asarray(a).dtype)) for a in _raw_inputs(self)]
        data = jax.eval_shape(functools.partial(_inputs, outer=_with_outer(self)), *raw)
        if programs.full is not None:  # the warm start: the model's own params
            data["full"] = jax.eval_shape(self.model.init, jax.ShapeDtypeStruct(
                (2,), jnp.uint32), data["xt"])
        if spec.shared:
            data["shared"] = jax.eval_shape(functools.partial(
                glm.shared_preconditioner, n_classes=spec.n_classes, l2=spec.l2),
                data["xt"], data["yt"], data["full"], outer=data.get("outer"))
        programs.fit.lower(data, jax.ShapeDtypeStruct((batch, self.n), jnp.float32),
                           jax.ShapeDtypeStruct((batch, 2), jnp.uint32)).compile()

    @property
    def task(self) -> str:
        """"classification" or "regression", the training set's."""
        return self.train.task

    def predict_proba(self, params: Any, x: Any) -> jax.Array:
        """Class probabilities of batched models: `(B, m, k)` for x `(m, d)`; for a regression
        target the predictions `(B, m)`."""
        return _predict(self.model, params, jnp.asarray(x, jnp.float32), self.task)

    @property
    def train_on_device(self) -> tuple[jax.Array, jax.Array]:
        """The training features `(n, d)` float32 and labels `(n,)` on the device: the very
        arrays the compiled programs train on, put there once per utility (for estimators
        that score every training row, e.g. Data-OOB, without copying them again)."""
        return self._data["xt"], self._data["yt"]

    @functools.cached_property
    def _compiled(self):
        return _compiled(self)

    @functools.cached_property
    def _data(self):
        return self._compiled[0]

    @functools.cached_property
    def _programs(self) -> _Programs:
        return self._compiled[1]

    @functools.cached_property
    def _fit(self):
        return self._programs.fit

    @functools.cached_property
    def _score(self):
        return self._programs.score


def weight_rows(weights: Any, n: int) -> tuple[np.ndarray, bool]:
    """`weights` as float32 rows `(B, n)`, and whether one vector `(n,)` was given."""
    weights = np.asarray(weights, dtype=np.float32)
    single = weights.ndim == 1
    weights = np.atleast_2d(weights)
    if weights.shape[1] != n:
        raise ValuationError(f"weights have {weights.shape[1]} columns for {n} training "
                             "samples; pass one weight per training sample")
    return weights, single


def per_model_keys(key, batch: int) -> jax.Array:
    """`(batch, 2)` keys: `key` (default `PRNGKey(0)`) repeated, or the caller's one per row."""
    key = jax.random.PRNGKey(0) if key is None else jnp.asarray(key)
    if key.ndim == 1:
        return jnp.broadcast_to(key, (batch,) + key.shape)
    if key.shape[0] != batch:
        raise ValuationError(f"{key.shape[0]} keys for {batch} weight vectors; pass one key "
                             "or one per vector")
    return key


def padded_batches(weights: np.ndarray, keys: jax.Array, chunk: int):
    """`(weights, keys, rows)` in chunks of `chunk` rows: the engine's (and the sharded,
    selection) loop over one compiled shape; the last chunk is padded with empty subsets,
    which the converging solvers ("pcg", "warm") do not train (the fixed-step ones train
    them like any row), and `rows` says how many are real."""
    for start in range(0, weights.shape[0], chunk):
        w, k = weights[start:start + chunk], keys[start:start + chunk]
        size = w.shape[0]
        if size < chunk:
            w = np.concatenate([w, np.zeros((chunk - size, w.shape[1]), w.dtype)])
            k = jnp.concatenate([k, jnp.repeat(k[:1], chunk - size, axis=0)])
        yield w, k, size


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample weights `n / (k_present * n_c)` that give every present class the same total
    weight (scikit-learn's "balanced"), shape `(n,)`; they sum to n, so the L2 penalty keeps
    its strength relative to the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    per_class = len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1.0))
    return per_class[y].astype(np.float32)


def _predict(model: Model, params, x, task: str = "classification"):
    outputs = jax.vmap(model.apply, in_axes=(0, None))(params, x)
    if task == "regression":
        return outputs[..., 0]
    return jax.nn.softmax(outputs, axis=-1)


def _full_logistic(x, y, base, n_classes: int, l2: float):
    """The full-data optimum of the logistic objective, from zero: the batched solver on one
    model, its preconditioner refreshed every 5 steps (then it converges like Newton's method,
    without the `(k D)^2` Hessian), to a tight tolerance."""
    params = {"linear": {"w": jnp.zeros((x.shape[1], glm.n_outputs(n_classes)), jnp.float32),
                         "b": jnp.zeros((glm.n_outputs(n_classes),), jnp.float32)}}
    full = glm.fit_logistic(x, y, base[None, :], n_classes=n_classes,
                            init=params, l2=l2, tol=1e-6, max_steps=500, refresh_every=5)
    return jax.tree_util.tree_map(lambda a: a[0], full)


# Programs that run once per utility (the warm start) compile without LLVM's optimisations
# where their run is short: XLA's optimisation level 0 compiles them in about half the time
# (digits: the full-data fit 1.8 -> 1.1 s, the shared preconditioner 0.8 -> 0.4 s) and runs
# them about twice as slowly (84 -> 162 ms, 38 -> 64 ms). Up to `FAST_COMPILE_SIZE` entries
# of n x D x outputs (digits 0.3 M, 10k rows x 50 0.5 M) that saves ~1 s of every cold start;
# above it the slower run would cost more than the compile saves.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
FAST_COMPILE_SIZE = 1 << 22


def _one_time(fn: Callable, **jit_kwargs) -> tuple[Callable, Callable]:
    """(optimised, fast-to-compile) jits of a program run once per utility."""
    return jax.jit(fn, **jit_kwargs), jax.jit(fn, compiler_options=_FAST_COMPILE, **jit_kwargs)


def _pick(jits: tuple[Callable, Callable], x: jax.Array, n_classes: int) -> Callable:
    """The fast-to-compile jit on the CPU for `x (n, d)` with n x (d + 1) x outputs up to
    `FAST_COMPILE_SIZE`, else the optimised one. Called eagerly (a jit with compiler
    options cannot be nested in another trace)."""
    n, d = x.shape
    small = n * (d + 1) * glm.n_outputs(n_classes) <= FAST_COMPILE_SIZE
    return jits[1] if small and jax.default_backend() == "cpu" else jits[0]


_FULL_LOGISTIC = _one_time(_full_logistic, static_argnums=(3, 4))
_SHARED = _one_time(lambda x, y, init, k, l2, outer: glm.shared_preconditioner(
    x, y, init, n_classes=k, l2=l2, outer=outer), static_argnums=(3, 4))


def _full_logistic_for(d: dict, k: int, l2: float):
    return _pick(_FULL_LOGISTIC, d["xt"], k)(d["xt"], d["yt"], d["base"], k, l2)


# XLA on CPU hands products, reductions and elementwise chains to YNNPACK fusions by
# default; those take their inputs materialised, so each intermediate over the (n, m, B)
# arrays of the "pcg" solver (the objective, the curvature along a direction, a broadcast
# of the labels) costs a full memory pass. With them off, XLA's own loops fuse that work
# into the reductions and products (10k rows, 2 classes, load 5: 73 -> 50 ms per chunk).
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def _compiler_options() -> dict[str, Any] | None:
    """`_CPU_OPTIONS` on the CPU backend if this jax/XLA accepts them, else None."""
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(jnp.sum, compiler_options=_CPU_OPTIONS).lower(jnp.ones(2)).compile()
    except (TypeError, RuntimeError):  # a jax.jit without the argument, an XLA without it
        return None
    return _CPU_OPTIONS


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Everything a utility's compiled programs close over (the arrays are arguments): two
    utilities with equal specs share their programs, so a second `make_utility` (a second
    `value` call) on data of the same shapes compiles nothing. The built-in model
    constructors return one `Model` per configuration, which makes their specs equal."""

    model: Model
    metric: Metric
    solver: str
    steps: int
    l2: float
    tol: float
    optimizer: Any
    batch_size: int | None
    n_classes: int
    task: str
    shared: bool  # "pcg": the full data's Hessian, scaled, for every subset's first steps
    degenerate: str  # how a subset with fewer than two classes scores ("frequency" | "zero")
    slots: int = 0  # "warm": models trained at a time (`chunking.warm_slots(chunk)`)


class _Programs(NamedTuple):
    full: Callable | None  # jitted data -> the full-data params every subset starts from
    fit: Callable  # jitted (data, weights (B, n), keys (B, 2)) -> batched params
    score: Callable  # jitted (data, weights, keys) -> scores (B,)
    fit_fn: Callable  # the two unjitted, for callers that trace them into a program of
    score_fn: Callable  # their own (`distributed`): jax takes compiler options only at the
    options: dict[str, Any] | None  # top level, so such a caller passes `options` itself


def _spec(u: Utility) -> _Spec:
    big_d, k = u.train.d + 1, u.train.n_classes
    # The full data's curvature, scaled, preconditions every subset's first steps: with many
    # samples per parameter a random subset's curvature is the full data's; with several
    # classes its exact Hessian (`glm.exact_shared`) beats each subset's own Kronecker
    # approximation even on few rows (steps of the slowest of 128 random half-subsets,
    # measured: 3 classes n = 2,000 10 -> 5, digits 10 classes n = 500 22 -> 16, wine
    # 13 -> 10), but not on few rows of two classes (breast_cancer 8 -> 11).
    shared = u.solver == "pcg" and (u.n >= 20 * big_d
                                    or (k > 2 and glm.exact_shared(u.n, u.train.d, k)))
    return _Spec(u.model, u.metric, u.solver, u.steps, u.l2, u.tol, u.optimizer, u.batch_size,
                 u.train.n_classes, u.task, shared, u.degenerate,
                 warm_slots(u.chunk) if u.solver == "warm" else 0)


def _compiled(u: Utility):
    """(data, programs) for one utility (cached on the instance).

    The data (training and validation arrays, the warm start) are arguments of the compiled
    functions, not constants folded into them; the programs come from `_programs`, shared by
    every utility with the same `_Spec`.
    """
    spec = _spec(u)
    programs = _programs_of(spec)
    data = _inputs(*_raw_inputs(u), outer=_with_outer(u))
    data.update(_warm_start(data, programs, spec))
    return data, programs


def _raw_inputs(u: Utility) -> tuple[np.ndarray, ...]:
    """The arrays every program reads: training x, y, validation x, y, per-sample base
    weights (class weights or ones)."""
    k = u.train.n_classes
    base = (class_weights(u.train.y, k) if u.class_weight == "balanced"
            else np.ones(u.n, np.float32))
    return u.train.x, u.train.y, u.valid.x, u.valid.y, base


def _with_outer(u: Utility) -> bool:
    big_d = u.train.d + 1
    return u.solver in ("closed_form", "pcg") and u.n * big_d * big_d * 4 <= _OUTER_BYTES


def _inputs(xt, yt, xv, yv, base, *, outer: bool) -> dict[str, jax.Array]:
    """The data dict without the warm start; with `outer`, each training row's `x x^T`
    (bias column appended) flattened, `(n, D*D)`. Pure, so `jax.eval_shape` gives its
    shapes (`Utility.compile_fit_ahead`)."""
    data = {"xt": jnp.asarray(xt), "yt": jnp.asarray(yt), "xv": jnp.asarray(xv),
            "yv": jnp.asarray(yv), "base": jnp.asarray(base)}
    if outer:
        n = data["xt"].shape[0]
        x1 = jnp.concatenate([data["xt"], jnp.ones((n, 1), jnp.float32)], axis=1)
        data["outer"] = (x1[:, :, None] * x1[:, None, :]).reshape(n, -1)
    return data


_PROGRAMS_LOCK = threading.Lock()


def _programs_of(spec: _Spec) -> _Programs:
    """`_programs(spec)`, one set per spec even when two threads ask at once (a compile
    ahead in a second thread, `Utility.compile_fit_ahead`): `lru_cache` alone can build two,
    and their jits would compile the same program twice."""
    with _PROGRAMS_LOCK:
        try:
            return _programs(spec)
        except TypeError:  # a model or metric that cannot be hashed: programs of its own
            return _programs.__wrapped__(spec)


def _warm_start(data: dict, programs: _Programs, spec: _Spec) -> dict:
    """The full-data params every subset starts from ("full") and, for "pcg" with a shared
    preconditioner, the full data's curvature ("shared"): computed once per utility, not
    per chunk (`Utility.compile_fit_ahead` mirrors their shapes)."""
    out = {}
    if programs.full is not None:
        out["full"] = programs.full(data)
    if spec.shared:
        out["shared"] = _pick(_SHARED, data["xt"], spec.n_classes)(
            data["xt"], data["yt"], out["full"], spec.n_classes, spec.l2, data.get("outer"))
    return out


@functools.lru_cache(maxsize=32)
def _programs(spec: _Spec) -> _Programs:
    """The jitted programs of a utility with this spec (kept for the process's lifetime,
    the 32 most recent specs)."""
    k, regression = spec.n_classes, spec.task == "regression"
    loss = "squared" if regression else "cross_entropy"
    full = None
    if spec.solver == "closed_form":
        def fit_batch(d, weights, keys):
            del keys
            return glm.fit_ridge(d["xt"], d["yt"], weights, l2=spec.l2, outer=d.get("outer"))
    elif spec.solver == "pcg":
        def full(d):
            return _full_logistic_for(d, k, spec.l2)

        def fit_batch(d, weights, keys):
            del keys
            return glm.fit_logistic(d["xt"], d["yt"], weights, n_classes=k, init=d["full"],
                                    l2=spec.l2, tol=spec.tol, max_steps=spec.steps,
                                    shared=d["shared"] if spec.shared else False,
                                    outer=d.get("outer"))
    elif spec.solver == "newton":
        # Warm start from the full-data solution: subsets' optima lie near it, so a few
        # Newton steps reach float32 precision (see training.fit_logistic_newton).
        def full(d):
            return _full_logistic_for(d, k, spec.l2)

        def fit_batch(d, weights, keys):
            del keys
            return fit_logistic_newton(d["xt"], d["yt"], weights, n_classes=k, l2=spec.l2,
                                       steps=spec.steps, init=d["full"])
    elif spec.solver == "warm":
        # Compiled without LLVM's optimisations: it runs once per utility (~0.1 s either way)
        # and compiles in a third of the time.
        @functools.partial(jax.jit, compiler_options=_FAST_COMPILE)
        def full(d):
            # From a fixed initialisation: the optimizer's steps, then conjugate gradients
            # until the objective stops improving at all (or 500 steps).
            ones = d["base"]
            start = fit(spec.model, d["xt"], d["yt"], ones, key=jax.random.PRNGKey(0),
                        steps=300, optimizer=spec.optimizer, l2=spec.l2, loss=loss)
            return fit_warm(spec.model, d["xt"], d["yt"], ones, init_params=start,
                            l2=spec.l2, loss=loss, max_steps=500, tol=0.0)

        def fit_batch(d, weights, keys):
            del keys
            if regression:
                trained = weights.sum(axis=1) > 0
            else:
                counts = weights @ jax.nn.one_hot(d["yt"], k, dtype=jnp.float32)
                trained = jnp.sum(counts > 0, axis=1) >= 2  # others are scored apart
            return fit_warm_batch(spec.model, d["xt"], d["yt"], weights, init_params=d["full"],
                                  slots=spec.slots, l2=spec.l2, loss=loss, tol=spec.tol,
                                  max_steps=jnp.where(trained, spec.steps, 0))
    else:
        def fit_batch(d, weights, keys):
            def fit_one(w, key):
                return fit(spec.model, d["xt"], d["yt"], w, key=key, steps=spec.steps,
                           optimizer=spec.optimizer, l2=spec.l2, batch_size=spec.batch_size,
                           loss=loss)

            return jax.vmap(fit_one)(weights, keys)

    def score_regression(d, weights, keys):
        pred = _predict(spec.model, fit_weighted(d, weights, keys), d["xv"], "regression")
        trained = jax.vmap(spec.metric, in_axes=(0, None))(pred, d["yv"])  # (B,)
        const = (0.0 if spec.degenerate == "zero"
                 else spec.metric(jnp.full_like(d["yv"], jnp.mean(d["yt"])), d["yv"]))
        return jnp.where(weights.sum(axis=1) > 0, trained, const)

    def score_batch(d, weights, keys):
        if regression:
            return score_regression(d, weights, keys)
        probs = _predict(spec.model, fit_weighted(d, weights, keys), d["xv"])  # (B, n_valid, k)
        trained = jax.vmap(spec.metric, in_axes=(0, None))(probs, d["yv"])
        counts = weights @ jax.nn.one_hot(d["yt"], k, dtype=jnp.float32)  # (B, k)
        freq = (counts + 1.0) / (counts.sum(axis=1, keepdims=True) + k)
        const = (jnp.zeros_like(trained) if spec.degenerate == "zero"
                 else jax.vmap(spec.metric, in_axes=(0, None))(
                     jnp.broadcast_to(freq[:, None, :], probs.shape), d["yv"]))
        degenerate = jnp.sum(counts > 0, axis=1) < 2
        return jnp.where(degenerate, const, trained)

    def fit_weighted(d, weights, keys):
        # Class weights scale each sample's loss inside the fit; a subset (and the
        # degenerate-subset rules) is still the plain weight vector.
        return fit_batch(d, weights * d["base"][None, :], keys)

    options = _compiler_options() if spec.solver == "pcg" else None  # measured there only
    jit = functools.partial(jax.jit, compiler_options=options) if options else jax.jit
    return _Programs(full, jit(fit_weighted), jit(score_batch), fit_weighted, score_batch,
                     options)


_OUTER_BYTES = glm.OUTER_BYTES  # precompute [x_i x_i^T] (n, D*D) up to this size


def make_utility(
    model: Model,
    train: Dataset,
    valid: Dataset,
    *,
    metric: str | Metric | None = None,
    solver: str = "auto",
    steps: int | None = None,
    l2: float = 1.0,
    optimizer: optax.GradientTransformation | None = None,
    batch_size: int | None = None,
    chunk: int | None = None,
    memory_budget: float = 1e9,
    tol: float = 1e-4,
    class_weight: str | None = None,
    degenerate: str = "frequency",
) -> Utility:
    """A `Utility` for a target model, training set and validation set.

    Args:
      model: the target model; `models.logistic_regression` is trained by the "pcg" solver
        by default (when it has at most 256 inputs with the bias; "gd" beyond),
        `models.linear_regression` (regression targets) in closed form, any other model
        (e.g. `mlp`) by "warm": every subset from the full-data fit until its objective stops
        improving.
      train, valid: data sets; `valid` is re-coded onto `train`'s class list and must share
        its classes (see `data.align_classes`).
      metric: "accuracy" (default), "neg_log_loss" or a function `(probs, y) -> scalar` (jnp,
        higher = better); for a regression target "r2" (default), "neg_mse" or a function
        `(predictions, y) -> scalar`.
      solver: "auto", "pcg", "newton", "closed_form", "warm" or "gd" (see `Utility`).
      steps: the iteration cap of "pcg" (default 100) or "warm" (default 200), Newton steps
        (default 5, from the full-data solution) or optimizer steps (default 300).
      l2: L2 penalty (scikit-learn's `1/C`; `alpha` of `Ridge` for a regression target).
      optimizer: optax optimizer for "gd" and for the start of "warm"'s full-data fit
        (default Adam, learning rate 0.05).
      batch_size: mini-batch size for "gd" (default full batch).
      chunk: models per compiled call ("warm": `chunking.WARM_QUEUE` times the models it
        trains at a time); default from the measured cost model
        (`chunking.auto_chunk`: the fastest chunk per model that fits `memory_budget`).
        Results never depend on it; pass it to fix the compiled shape yourself.
      memory_budget: approximate bytes of working memory per chunk (default 1 GB).
      class_weight: "balanced" weighs each training sample's loss by `class_weights`, so
        that a model trained on imbalanced data does not just predict the majority class
        (use it with metric="balanced_accuracy"); None weighs every sample 1.
      tol: "pcg" stops a model once `max |grad J| <= tol` (default 1e-4, scikit-learn's own
        `LogisticRegression` tolerance on the same normalised objective); "warm" once the
        objective improved by less than `tol` on 5 consecutive steps (scikit-learn's
        `MLPClassifier` tolerance).
      degenerate: the score of a subset with fewer than two classes (and of the empty
        subset): "frequency" (default; its class-frequency predictor's score) or "zero"
        (exactly 0, pyDVL's convention; see the module docstring for the two games).
    """
    if class_weight not in (None, "balanced"):
        raise ValuationError(f"unknown class_weight {class_weight!r}; pass None or 'balanced'")
    train, valid = align_classes(train, valid)
    regression = train.task == "regression"
    if metric is None:
        metric = "r2" if regression else "accuracy"
    if isinstance(metric, str) and (metric in REGRESSION_METRICS) != regression:
        choices = REGRESSION_METRICS if regression else ("accuracy", "balanced_accuracy",
                                                         "neg_log_loss")
        raise ValuationError(f"metric {metric!r} does not fit a {train.task} target; choose "
                             f"one of {list(choices)}")
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValuationError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)} "
                                 "or pass a function (probs, y) -> score")
        metric_name, metric_fn = metric, METRICS[metric]
    else:
        metric_name, metric_fn = getattr(metric, "__name__", "custom"), metric
    is_logreg = model.name.startswith("logistic_regression")
    is_linreg = model.name == "linear_regression"
    if regression and is_logreg:
        raise ValuationError("logistic regression needs class labels but this is a regression "
                             "target; use models.linear_regression() or mlp(1)")
    if not regression and is_linreg:
        raise ValuationError("linear_regression is for regression targets but this one has "
                             "classes; use models.logistic_regression(k)")
    if solver == "auto":
        if is_linreg:
            solver = "closed_form"
        elif is_logreg:
            solver = "pcg" if train.d + 1 <= 256 else "gd"
        else:
            solver = "warm"
    if solver not in ("pcg", "newton", "closed_form", "warm", "gd"):
        raise ValuationError(f"unknown solver {solver!r}; choose 'auto', 'pcg', 'newton', "
                             "'closed_form', 'warm' or 'gd'")
    if solver in ("pcg", "newton") and not is_logreg:
        raise ValuationError(f"the {solver!r} solver (like the Newton solver) is for "
                             "models.logistic_regression only; use solver='gd' for other "
                             "models")
    if solver == "closed_form" and not is_linreg:
        raise ValuationError("the closed-form solver is for models.linear_regression only; "
                             "use solver='gd' for other models")
    if degenerate not in DEGENERATE:
        raise ValuationError(f"unknown degenerate {degenerate!r}; choose 'frequency' (score a "
                             "one-class subset as its class-frequency predictor) or 'zero' "
                             "(score it 0, as pyDVL does)")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValuationError(f"tol must be a non-negative number, got {tol!r}")
    if steps is None:
        steps = {"pcg": 100, "newton": 5, "closed_form": 1, "warm": 200}.get(solver, 300)
    if chunk is None:
        chunk = auto_chunk(model, train, valid, solver, memory_budget)
    if not (isinstance(chunk, int) and chunk >= 1 and math.isfinite(chunk)):
        raise ValuationError(f"chunk must be a positive int, got {chunk!r}")
    return Utility(model=model, train=train, valid=valid, metric=metric_fn,
                   metric_name=metric_name, solver=solver, steps=int(steps), l2=float(l2),
                   optimizer=optimizer, batch_size=batch_size, chunk=int(chunk), tol=float(tol),
                   class_weight=class_weight, degenerate=degenerate)
