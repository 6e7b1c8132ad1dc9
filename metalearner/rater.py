"""`DataRater`: a network that weighs training rows, learned from the target's validation loss.

Where it sits: beside `MetaValuator`, with no teacher. Instead of imitating a valuation method,
the rater `r(x, y, features) -> score` is trained by meta-gradient descent (`metagrad.py`) on
what the weights it gives do to the target model (DataRater, Calian et al. 2025; formulas
only):

* inner loop: `inner_models` copies of the target, warm-started from as many of the
  `bags` bootstrap refits of the "bagging" features (refits of its own when `groups` leaves
  "bagging" out; drawn without replacement at every outer step, so over the run the copies
  start from all of them), take `inner_steps`
  full-batch SGD steps on the training rows weighted by `w = n * softmax(r / temperature) *
  mask`; each copy sees a fresh random half of the rows (`mask`, drawn per outer step), like
  mini-batches of the outer problem. Reusing the refits costs no training and no compiled
  warm-up loop (the rater's first fit is dominated by compilation on small tasks);
* outer loop: `outer_steps` AdamW steps on the rater's parameters, descending the copies'
  mean validation cross-entropy after their inner steps, differentiated through those steps
  (`metagrad.train_steps`; rematerialised only when the states of all the copies' steps
  would take more than `_STATES_BYTES`: `_remat_every`).

The whole outer loop is one `lax.scan`, compiled once; every draw comes from `seed`, so the
same seed gives a bit-identical rater and values. The rater reads the standardised features
of `features.FeatureMap` that say whether the label agrees with the rest of the data
(`RATER_GROUPS`): the label and the cross-fitted loss, p(label), margin and entropy, the
10-NN label agreement in input and embedding space with the distances, and out-of-bag
predictions of copies of the target that never trained on the row. So it scores a new row
exactly as it scores a training row, without retraining the target. The raw input columns
are left out (with them it detected flipped labels worse in the comparison that chose
`hidden`), and so is the "gradient" group: without it, on wine and breast_cancer (seeds
10-11, not the benchmark's), training-row AUROC moved by -0.015 to +0.044 (mean +0.008)
over the 8 fits (logistic and MLP targets) and a fit took 1.3-4.5x less time (a loaded
machine). Rows are matched to training rows by content and columns by name
(`FeatureMap.conform`, `FeatureMap.membership`).

An ensemble of `members` raters is trained at once (one `jax.vmap` over member keys: each
its own initialisation, warm starts and masks). A member's value of a row is its log-weight
relative to the training rows' mean weight, `log(n * softmax(r / temperature)_i)` over the
training rows (new rows: the same shift), in nats: 0 is an average row, below 0 the rater
down-weights it. The value is the members' mean and the standard error their spread,
`std / sqrt(members)` (ddof 1): the seed-to-seed uncertainty of the meta-training, not of
the features (computed once, from `seed`).

Example:
  >>> import valuation as va
  >>> train, valid = va.make_classification(80, 3, seed=0).split(0.6, 0.4, seed=0)
  >>> utility = va.make_utility(va.logistic_regression(2), train, valid)
  >>> rater = DataRater(members=2, outer_steps=5, k=5, bags=4).fit(utility)
  >>> rater.value().values.shape
  (48,)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from valuation import (
    Dataset,
    Model,
    Utility,
    ValuationError,
    ValuationResult,
    align_classes,
    mlp,
)
from valuation.api import METHODS, Method
from valuation.results import atomic_write, package_versions, write_json

from .features import (
    FeatureMap,
    bootstrap_refits,
    column_scale,
    compile_features_ahead,
    feature_names,
    features_for_utility,
)
from .metagrad import train_steps, validation_loss
from .persistence import _flatten, _unflatten, feature_map_arrays, feature_map_from

__all__ = ["DataRater"]

_FORMAT = "valuate.datarater/3"  # /3: no warm_steps (copies start from the refits)
# The label-agreement groups of the FeatureMap; "gradient" left out (module docstring).
RATER_GROUPS = ("model", "neighbours", "bagging", "label")

Params = Any


@dataclasses.dataclass(frozen=True, eq=False)
class _Rated:
    """What `DataRater.fit` learns: the features, their scaling and the rater's params."""

    features: FeatureMap
    train: Dataset  # the training rows (their ids, labels and class list)
    mean: np.ndarray  # (f,) of the rater's inputs
    std: np.ndarray  # (f,)
    params: Params  # leading axis (members,)
    shift: np.ndarray  # (members,) logsumexp of the training rows' scores - log n
    target: dict  # Utility.describe()
    losses: np.ndarray  # (members, outer_steps) mean validation CE of the inner copies


@dataclasses.dataclass(frozen=True, eq=False)
class DataRater:
    """Learns per-row weights for a target model from its validation loss (meta-gradients).

    Configure, then `fit` (returns a fitted copy), then `value` (training rows) or `predict`
    (any rows of the task). Every setting is keyword-only.

    Attributes:
      hidden: hidden widths of the rater MLP (SiLU); `()` (default) is a linear rater.
        With `inner_steps=30` it found flipped training labels with AUROC 0.88-0.95,
        against 0.74-0.91 for one hidden layer of 32 and 10 inner steps, in an ad-hoc
        comparison on wine and breast_cancer, seeds 0-1 (the benchmark's tasks).
      outer_steps: AdamW steps on the rater. Short on purpose: validation sets are small
        (35 rows on wine, 115 on breast_cancer) and a long meta-training fits their noise.
        With a logistic target on wine / breast_cancer (seeds 0-2, the benchmark's
        splits), 200 steps gave training-row AUROC 0.937 +- 0.039 / 0.892 +- 0.064 (mean
        +- sd over seeds), 20 steps 0.980 +- 0.020 / 0.995 +- 0.002, and the members of
        one fit agreed (their mean AUROC within 0.003 of the ensemble's): the spread was
        the splits' and the overfitting's, not the meta-training's draws. Chosen on those
        seeds (experiments/README.md, "Data rater"); checked since on held-out seeds 3-5
        of synthetic_3k and synthetic_1k_cyclic, where 10, 40 and 80 steps and `hidden=(16,)`
        were no more stable than 20.
      outer_lr, weight_decay: the rater's AdamW settings.
      inner_models: target copies per outer step (their mean loss is the outer objective),
        warm-started from that many of the `bags` bootstrap refits (at most `bags`).
      inner_steps: SGD steps of each copy per outer step (the unrolled depth).
      inner_lr: SGD learning rate of the copies.
      temperature: softness of the weights `softmax(r / temperature)`.
      k, groups, folds, bags: the `FeatureMap` the rater reads (`features_for_utility`).
      members: raters in the ensemble (2 or more: their spread is the standard error).
        Each member costs one more meta-training (vmapped: one compile); 4 is not tuned.
      seed: every random draw (features, initialisations, masks).
    """

    hidden: tuple[int, ...] = ()
    outer_steps: int = 20
    outer_lr: float = 1e-2
    weight_decay: float = 1e-3
    inner_models: int = 4
    inner_steps: int = 30
    inner_lr: float = 0.3
    temperature: float = 1.0
    k: int = 10
    groups: tuple[str, ...] = RATER_GROUPS
    folds: int = 5
    bags: int = 32
    members: int = 4
    seed: int = 0
    state: _Rated | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "groups", tuple(self.groups))
        for name in ("outer_steps", "inner_models", "inner_steps"):
            if int(getattr(self, name)) < 1:
                raise ValuationError(f"{name}={getattr(self, name)} must be at least 1")
        if int(self.members) < 2:
            raise ValuationError(f"members={self.members}: an ensemble needs at least 2 "
                                 "raters to report a spread")
        if int(self.inner_models) > int(self.bags):
            raise ValuationError(f"inner_models={self.inner_models} copies are drawn from "
                                 f"bags={self.bags} bootstrap refits; raise bags or lower "
                                 "inner_models")
        if not self.temperature > 0:
            raise ValuationError(f"temperature={self.temperature} must be positive")

    def config(self) -> dict[str, Any]:
        """The settings, JSON-ready."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "state"}

    @property
    def _fitted(self) -> _Rated:
        if self.state is None:
            raise ValuationError("this DataRater is not fitted; call rater = "
                                 "rater.fit(utility) first")
        return self.state

    def fit(self, utility: Utility) -> DataRater:
        """Train the rater on `utility`'s task: its target model, training and validation set.

        Returns:
          A fitted copy; `value().extra` holds the outer objective's first and last value.
        """
        _check_utility(utility)
        train, valid = utility.train, utility.valid
        draws = _draws(self.seed, members=self.members, outer_steps=self.outer_steps,
                       inner_models=self.inner_models, bags=self.bags)
        training = {"l2": utility.l2, **{f: getattr(self, f) for f in _TRAINING}}
        # The target's batched fits, the feature program and the meta-training compile from
        # the shapes in a second thread while the full-data fit compiles and runs (XLA
        # compiles outside the GIL); the calls below reuse them.
        pool = concurrent.futures.ThreadPoolExecutor(1)
        try:
            features_ahead = pool.submit(compile_features_ahead, utility, groups=self.groups,
                                         k=self.k, folds=self.folds, bags=self.bags)
            refits_ahead = (None if "bagging" in self.groups  # else the starts' own refits
                            else pool.submit(utility.compile_fit_ahead, self.bags))
            ahead = pool.submit(_compile_ahead, utility, starts=self.bags, draws=draws,
                                width=len(feature_names(self.groups, train.n_classes)),
                                **training)
            fmap, z, mean, std = self._read(utility, ready=features_ahead)
            starts = fmap.bagged  # the "bagging" group's refits, else refits of their own
            if starts is None:
                refits_ahead.result()
                starts = bootstrap_refits(utility, key=_feature_key(self.seed),
                                          bags=self.bags)[0]
            ahead.result()
            params, losses, scores = _meta_train(
                utility.model, z, jnp.asarray(train.x), jnp.asarray(train.y),
                jnp.asarray(valid.x), jnp.asarray(valid.y), starts, *draws, **training)
        finally:
            pool.shutdown(wait=False)
        state = _Rated(fmap, train, mean, std, params, self._shift(scores),
                       utility.describe(), np.asarray(losses))
        return dataclasses.replace(self, state=state)

    def for_target(self, utility: Utility) -> DataRater:
        """This rater, unchanged, reading the features of another target model.

        Transfer without meta-training: the `FeatureMap` (cross-fitted copies of
        `utility.model`) and the standardisation of the rater's inputs are rebuilt on
        `utility`'s training rows; the rater's parameters are kept. The task must have the
        same input columns and classes.
        """
        s = self._fitted
        fmap, z, mean, std = self._read(utility)
        if fmap.names != s.features.names:
            raise ValuationError(f"the new task's features {list(fmap.names)} differ from "
                                 f"the rater's {list(s.features.names)}; use a task with "
                                 "the same columns and classes")
        state = dataclasses.replace(s, features=fmap, train=utility.train, mean=mean,
                                    std=std, shift=self._shift(_score(s.params, z, self.hidden)),
                                    target=utility.describe())
        return dataclasses.replace(self, state=state)

    def _read(self, utility: Utility, *, ready: concurrent.futures.Future | None = None):
        """The `FeatureMap` of `utility` and its training rows' standardised rater inputs;
        `ready`: the feature program's ahead-of-time compile, awaited before its first call
        (two threads compiling one program would compile it twice)."""
        _check_utility(utility)
        fmap = features_for_utility(utility, key=_feature_key(self.seed), k=self.k,
                                    groups=self.groups, folds=self.folds, bags=self.bags)
        if ready is not None:
            ready.result()
        inputs = _inputs(fmap, utility.train)
        mean, std = column_scale(inputs)
        return fmap, jnp.asarray((inputs - mean) / std, jnp.float32), mean, std

    def _shift(self, scores: jax.Array) -> np.ndarray:
        """Per member, `logsumexp(r / temperature) - log n` of the training rows' scores
        `r (members, n)`: `(members,)`."""
        scores = np.asarray(scores, np.float64) / self.temperature
        return np.logaddexp.reduce(scores, axis=1) - np.log(scores.shape[1])

    def value(self) -> ValuationResult:
        """Values of the training rows the rater was fitted on, in their order."""
        return self.predict(self._fitted.train)

    def predict(self, samples: Dataset, *, id_conflict: str = "error") -> ValuationResult:
        """Values of any rows of the task (training rows or new ones), without retraining.

        Args:
          samples: the task's feature columns (by name, any order, same scaling) and labels
            of its class list; ids travel to the result.
          id_conflict: a row with a training row's id but other content is an error
            ("error") or a new row ("new") (`FeatureMap.membership`).

        Returns:
          A `ValuationResult` (method "data_rater"): values = the members' mean log-weight
          relative to the training rows' mean (module docstring), stderr = their spread
          over `sqrt(members)`, counts = members.
        """
        s = self._fitted
        start = time.perf_counter()
        if not isinstance(samples, Dataset):
            raise ValuationError(f"expected a valuation Dataset, got "
                                 f"{type(samples).__name__}; build one with "
                                 "valuation.load(x, y)")
        if tuple(samples.classes) != tuple(s.train.classes):
            samples = align_classes(s.train, samples)[1]
        samples = s.features.conform(samples)
        inputs = _inputs(s.features, samples, id_conflict=id_conflict)
        z = jnp.asarray((inputs - s.mean) / s.std, jnp.float32)
        scores = np.asarray(_score(s.params, z, self.hidden), np.float64)
        per_member = scores / self.temperature - s.shift[:, None]  # (members, n)
        return ValuationResult(
            values=per_member.mean(0),
            stderr=per_member.std(0, ddof=1) / np.sqrt(self.members), ids=samples.ids,
            counts=np.full(samples.n, self.members), method="data_rater",
            params={"rater": self.config(), "target": s.target}, seed=self.seed,
            versions=package_versions(),
            extra={"seconds": time.perf_counter() - start,
                   "outer_loss_first_last": [float(s.losses[:, 0].mean()),
                                             float(s.losses[:, -1].mean())]})

    def save(self, path: str | os.PathLike) -> None:
        """Write the rater to `path` (npz) and its settings to `path + ".json"`, atomically.

        The npz holds the rater's parameters, its input scaling and the `FeatureMap` (the
        target copies and the training rows); the JSON the settings, the feature and column
        names, the class list and the target model's description.
        """
        s = self._fitted
        path = os.fspath(path)
        arrays = {"mean": s.mean, "std": s.std, "losses": s.losses, "shift": s.shift,
                  **feature_map_arrays(s.features),
                  **{f"rater/{k}": v for k, v in _flatten(s.params).items()}}
        meta = {"format": _FORMAT, "config": self.config(),
                "feature_names": list(s.features.names), "columns": list(s.features.columns),
                "classes": list(s.train.classes), "n_classes": s.features.n_classes,
                "target": s.target, "target_model": s.features.model.name,
                "versions": package_versions()}

        def write_npz(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(path, write_npz)
        write_json(path + ".json", meta)

    @classmethod
    def load(cls, path: str | os.PathLike, model: Model) -> DataRater:
        """Read a rater written by `save`, for the target model it was fitted with.

        Raises:
          ValuationError: missing files, another format, another target model.
        """
        path = os.fspath(path)
        if not (os.path.exists(path) and os.path.exists(path + ".json")):
            raise ValuationError(f"{path!r} or its sidecar {path + '.json'!r} is missing; "
                                 "pass the path given to DataRater.save")
        with open(path + ".json") as f:
            meta = json.load(f)
        if meta.get("format") != _FORMAT:
            raise ValuationError(f"{path!r} is a DataRater in format "
                                 f"{meta.get('format')!r}, not this version's {_FORMAT!r}; "
                                 "fit and save the rater again")
        if model.name != meta["target_model"]:
            raise ValuationError(f"this rater reads target model {meta['target_model']!r}, "
                                 f"not {model.name!r}; load it with that model")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        config = {**meta["config"], "hidden": tuple(meta["config"]["hidden"]),
                  "groups": tuple(meta["config"]["groups"])}
        columns = tuple(meta["columns"])
        fmap = feature_map_from(arrays, model, path=path, n_classes=int(meta["n_classes"]),
                                k=int(config["k"]), groups=config["groups"], columns=columns)
        a = fmap.arrays
        train = Dataset(x=a["ref_x"], y=a["ref_y"], ids=a["ref_ids"],
                        classes=tuple(meta["classes"]), feature_names=columns)
        params = _unflatten({k.split("/", 1)[1]: v for k, v in arrays.items()
                             if k.startswith("rater/")})
        state = _Rated(fmap, train, arrays["mean"], arrays["std"], params,
                       arrays["shift"], meta["target"], arrays["losses"])
        return cls(**config, state=state)


# Every draw is made on the host from `seed` (numpy's SeedSequence and Generator): eager
# `jax.random` calls each compile a small program, and threefry inside the outer loop made
# the meta-training's compiled program about 3x slower to compile (4.8-6.9 s against
# 1.7-2.0 s on wine, at load 4-5).


def _feature_key(seed: int) -> jax.Array:
    """The `FeatureMap`'s key (folds, bootstrap draws, the refits' training): a raw uint32
    key `(2,)`."""
    return jnp.asarray(np.random.SeedSequence([seed, 0]).generate_state(2), jnp.uint32)


def _draws(seed: int, *, members: int, outer_steps: int, inner_models: int,
           bags: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The meta-training's draws: per member its initialisation key `(members, 2)`; per
    member and outer step which `inner_models` of the `bags` refits start the copies
    (without replacement) `(members, outer_steps, inner_models)`, and each copy's uint32
    row-mask seed (`_half_mask`), same shape."""
    init = np.random.SeedSequence([seed, 1]).generate_state(2 * members).reshape(members, 2)
    rng = np.random.default_rng([seed, 2])
    shape = (members, outer_steps)
    picks = np.argsort(rng.random(shape + (bags,)), axis=-1)[..., :inner_models]
    seeds = rng.integers(0, 2**32, shape + (inner_models,), dtype=np.uint32)
    return init, picks.astype(np.int32), seeds  # numpy: no conversion compiled


def _half_mask(seed: jax.Array, n: int) -> jax.Array:
    """`(n,)` float32 of 0 and 1, each row kept with probability 1/2: the top bit of
    MurmurHash3's 32-bit finaliser (fmix32, a bijective mixer with full avalanche) of
    `seed + row * 0x9E3779B9`. A few integer ops instead of threefry (module notes)."""
    h = jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9) + seed
    for shift, mult in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h = (h ^ (h >> shift)) * jnp.uint32(mult)
    return ((h ^ (h >> 16)) >> 31).astype(jnp.float32)


_TRAINING = ("hidden", "outer_steps", "outer_lr", "weight_decay", "inner_models",
             "inner_steps", "inner_lr", "temperature")


def _check_utility(utility: Any) -> None:
    if not isinstance(utility, Utility):
        raise ValuationError(f"expected a Utility, got {type(utility).__name__}; build "
                             "one with valuation.make_utility(model, train, valid)")


def _compile_ahead(utility: Utility, *, starts: int, width: int, draws, **training) -> None:
    """Lower and compile `_meta_train` for `utility`'s shapes with JAX's ahead-of-time API:
    the rater's inputs `(n, width)` float32 and `starts` refits shaped like
    `utility.model.init`'s params. A later `_meta_train` call on arrays of those shapes and
    dtypes reuses the program (JAX's in-memory cache); any other shapes compile anew."""
    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(shape, jax.dtypes.canonicalize_dtype(dtype))

    train, valid = utility.train, utility.valid
    x = spec(train.x.shape, train.x.dtype)
    init = jax.eval_shape(utility.model.init, spec((2,), np.uint32), x)
    refits = jax.tree_util.tree_map(lambda a: spec((starts,) + a.shape, a.dtype), init)
    _meta_train.lower(utility.model, spec((train.n, width), np.float32), x,
                      spec(train.y.shape, train.y.dtype), spec(valid.x.shape, valid.x.dtype),
                      spec(valid.y.shape, valid.y.dtype), refits, *draws,
                      **training).compile()


def _inputs(fmap: FeatureMap, data: Dataset, *, id_conflict: str = "error") -> np.ndarray:
    """The rater's inputs `(n, f)`: the `FeatureMap` features (the label among them)."""
    feats = fmap(data, id_conflict=id_conflict)
    if not np.isfinite(feats).all():
        raise ValuationError("the rater's features are NaN or infinite for some rows; check "
                             "the inputs (NaN features, a diverged target model)")
    return feats


def _rater_net(hidden: tuple[int, ...]):
    """The rater: an MLP (linear for `hidden=()`) from the `(n, f)` standardised features
    to one score per row."""
    return mlp(1, hidden, activation=jax.nn.silu)


@functools.partial(jax.jit, static_argnames="hidden")
def _score(params: Params, z: jax.Array, hidden: tuple[int, ...]) -> jax.Array:
    """Every member's scores `(members, n)` of the standardised features `z (n, f)`."""
    apply = _rater_net(hidden).apply
    return jax.vmap(lambda p: apply(p, z)[:, 0])(params)


@functools.partial(jax.jit, static_argnames=("model", "hidden", "outer_steps",
                                             "inner_models", "inner_steps"))
def _meta_train(model, z, x, y, x_val, y_val, starts, init, picks, seeds, *, l2, hidden,
                outer_steps, outer_lr, weight_decay, inner_models, inner_steps, inner_lr,
                temperature):
    """Every member's rater, one per row of the draws (`_draws`), in one vmap: params with
    a leading `(members,)` axis, losses `(members, outer_steps)` and the trained raters'
    scores of the training rows `(members, n)`."""
    del outer_steps  # the draws' shape
    remat_every = _remat_every(starts, x.shape[0], copies=init.shape[0] * inner_models,
                               steps=inner_steps)
    return jax.vmap(lambda *draws: _meta_train_one(
        model, z, x, y, x_val, y_val, starts, *draws, l2=l2, hidden=hidden,
        outer_lr=outer_lr, weight_decay=weight_decay, inner_steps=inner_steps,
        inner_lr=inner_lr, temperature=temperature, remat_every=remat_every))(
            init, picks, seeds)


def _meta_train_one(model, z, x, y, x_val, y_val, starts, init, picks, seeds, *, l2, hidden,
                    outer_lr, weight_decay, inner_steps, inner_lr, temperature,
                    remat_every):
    """One rater's outer loop (module docstring) as one scan over its draws: its params,
    per-step losses and final scores of the rows `z`."""
    net = _rater_net(hidden)
    params = net.init(init, z)
    # Zero output layer: the rater starts from uniform weights.
    params["out"] = jax.tree_util.tree_map(jnp.zeros_like, params["out"])
    n = x.shape[0]
    outer = optax.adamw(outer_lr, weight_decay=weight_decay)
    inner = optax.sgd(inner_lr)

    def outer_loss(p, warm, masks):
        w = n * jax.nn.softmax(net.apply(p, z)[:, 0] / temperature)

        def one(start, mask):
            trained = train_steps(model, start, x, y, w * mask, steps=inner_steps,
                                  optimizer=inner, l2=l2, remat_every=remat_every)
            return validation_loss(model, trained, x_val, y_val)

        return jnp.mean(jax.vmap(one)(warm, masks))

    def step(carry, draws):
        p, s = carry
        pick, mask_seeds = draws
        warm = jax.tree_util.tree_map(lambda a: a[pick], starts)
        masks = jax.vmap(lambda seed: _half_mask(seed, n))(mask_seeds)
        loss, g = jax.value_and_grad(outer_loss)(p, warm, masks)
        updates, s = outer.update(g, s, p)
        return (optax.apply_updates(p, updates), s), loss

    (params, _), losses = jax.lax.scan(step, (params, outer.init(params)), (picks, seeds))
    return params, losses, net.apply(params, z)[:, 0]


_STATES_BYTES = 256 * 2**20


def _remat_every(starts: Params, n: int, *, copies: int, steps: int) -> int | None:
    """`train_steps`' segment length for the inner copies: all `steps` (a plain scan, the
    smallest compiled program) when every step's state of all `copies` (members x inner
    models, trained at once in one outer step) fits in `_STATES_BYTES`, else the default
    (about `sqrt(steps)`).

    The state per copy and step is estimated as 4 float32 copies of the params and of each
    layer's outputs for `n` rows (a layer: a weight leaf `(bags, in, out)` of `starts`).
    """
    leaves = jax.tree_util.tree_leaves(starts)
    floats = sum(math.prod(a.shape[1:]) for a in leaves) + n * sum(
        a.shape[-1] for a in leaves if a.ndim == 3)
    return steps if 4 * 4 * floats * copies * steps <= _STATES_BYTES else None


def _value_with_rater(utility: Utility, *, seed: int, stop, progress, checkpoint,
                      checkpoint_every, **options) -> ValuationResult:
    """`value(..., method="rater")`: fit a `DataRater` (options: its settings) and value the
    training rows."""
    del stop, progress, checkpoint, checkpoint_every  # one deterministic meta-training run
    accepted = sorted(f.name for f in dataclasses.fields(DataRater)
                      if f.name not in ("state", "seed"))
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValuationError(f"unknown option(s) {unknown} for method 'rater'; it accepts "
                             f"{accepted}")
    return DataRater(seed=seed, **options).fit(utility).value()


# The registry lives in `valuation`, which never imports `metalearner`: the rater registers
# itself when `metalearner` is imported (as `valuation.api` invites families to do).
METHODS["rater"] = Method(
    _value_with_rater, needs_valid=True,
    about="learned data rater: row weights trained by meta-gradients of the validation "
          "loss; moderate (a few unrolled fits); also scores new rows")
