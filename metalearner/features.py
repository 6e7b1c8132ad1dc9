"""Sample features for the meta-model, computable for unseen samples without any training.

Where it sits: between a trained target model (its final parameters, optionally its saved
checkpoints) and the meta-model. `make_features(...)` freezes everything a feature needs (the
target's parameters, the reference pool in input and embedding space, class centroids, the
mean validation gradient) into a `FeatureMap`; calling it on a `Dataset` gives an `(n, f)`
matrix whose columns are named in `FeatureMap.names`. Nothing here fits or retrains a model:
a feature vector costs a forward pass and a distance computation against the pool.

Feature groups (all computed at the target's final parameters `theta`; `h(x)` is the model's
embedding, `model.embed`, or `x` itself when the model has none):

* "model": cross-entropy loss, p(label), margin `z_y - max_{c != y} z_c` of the logits `z`,
  predictive entropy (nats).
* "gradient": the last-layer gradient of the sample's loss, `g = [h, 1] (p - e_y)^T` (the
  gradient w.r.t. a linear map from `[h, 1]` to the logits), through its norm `|[h, 1]| |p - e_y|`
  and its cosine with the mean validation gradient `G`. A descent step on the sample changes
  the validation loss by `-lr <g, G>` to first order, so a positive cosine means the sample
  helps (higher = more helpful; the first-order argument of TracIn, Pruthi et al., NeurIPS
  2020).
* "neighbours": share of the `k` nearest reference samples (Euclidean) with the same label, in
  input space and in embedding space; mean distance to those `k` in embedding space; distance
  to the own-class centroid and to the nearest other-class centroid of the reference pool, and
  their difference. A sample that is itself in the reference pool (same id) is excluded from
  its own neighbourhood.
* "bagging": out-of-bag predictions of `bags` bootstrap refits of the target (made once, when
  the feature map is built, with the utility's own solver; no training at prediction time):
  mean cross-entropy loss, mean p(label) and share of models whose argmax is the label, over
  the models that did not train on the sample: for a reference-pool sample, those whose
  bootstrap missed it (about `bags / e` of them); for a new sample, all of them. The same
  held-out view of a sample whether or not the target trained on it (the signal of Data-OOB,
  Kwon & Zou, ICML 2023, here with probabilities as well as hits).
* "label": one-hot label (`n_classes` columns). Tied to the task's class list, so it is left
  out of model-agnostic feature sets (see `MODEL_AGNOSTIC`).
* "dynamics": the learning-dynamics signals of `valuation.dynamics` (confidence, variability,
  forgetting, AUM, EL2N, GraNd, validation-gradient alignment, ...), computed over the
  checkpoints of a recorded training run of the target as by
  `valuation.dynamics.features_for_new_samples`, which gives a sample the same numbers
  whether or not it was trained on (only when checkpoints are given).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from valuation import Dataset, Model, Utility, ValuationError, align_classes
from valuation.data import from_arrays
from valuation.dynamics import FEATURE_COLUMNS, record, signal_matrix, trajectory

__all__ = [
    "DEFAULT_GROUPS",
    "GROUPS",
    "MODEL_AGNOSTIC",
    "FeatureMap",
    "bootstrap_refits",
    "column_scale",
    "default_groups",
    "features_for_utility",
    "make_features",
]

GROUPS = ("model", "gradient", "neighbours", "bagging", "label", "dynamics")
MODEL_AGNOSTIC = ("model", "gradient", "neighbours", "bagging", "dynamics")
# The meta-model's default for teachers that score a sample out of sample (Data-OOB,
# KNN-Shapley): the groups that mean the same for a pool sample (one the target trained on)
# and for a new row. "model", "gradient" and "dynamics" read the target at parameters fitted
# on the pool sample itself, so a mislabelled training row looks better fitted than a
# mislabelled new row: a shift the meta-model cannot learn from a pool of training rows.
# Measured (`experiments/bench_metalearner.py`, Data-OOB teacher, 3 seeds): new-row
# detection AUROC 0.964 -> 0.985 (breast_cancer), 0.967 -> 0.989 (digits), with Spearman to
# the teacher on unseen training rows no worse. Teachers that measure a training row's effect
# on the fitted target (Shapley, Banzhaf, leave-one-out, influence) need the in-sample groups:
# without them mean Spearman to TMC / Banzhaf fell by up to 0.4 in the same benchmark
# (synthetic_1k Banzhaf 0.62 -> 0.21), though their noisy-label detection improved.
DEFAULT_GROUPS = ("neighbours", "bagging", "label")
OUT_OF_SAMPLE_TEACHERS = ("data_oob", "knn_shapley")


def default_groups(teacher: str) -> tuple[str, ...]:
    """The feature groups a meta-model of `teacher`'s values reads by default: only the
    shift-free `DEFAULT_GROUPS` for out-of-sample teachers, every group otherwise."""
    return DEFAULT_GROUPS if teacher in OUT_OF_SAMPLE_TEACHERS else GROUPS


_ROWS = 512  # most samples per compiled feature call; the last chunk is padded

Params = Any


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureMap:
    """Everything a feature needs, frozen: call it on samples to get their features.

    Build it with `make_features`. The arrays are the state `save`/`load` round-trip.

    Attributes:
      model: the target model.
      params: the target model's final parameters.
      arrays: reference pool and summaries: `ref_x (N, d)`, `ref_h (N, w)` (embeddings),
        `ref_y (N,)`, `ref_ids (N,)`, `centroids (k, w)`, `valid_grad (w + 1, k)`, the
        validation set `valid_x (V, d)`, `valid_y (V,)` (for the dynamics features) and, with
        "bagging", `bag_in (B, N)`: whether bootstrap model `b` trained on pool sample `i`.
      checkpoints: the target's params with leading axes `(seeds, epochs)`, from
        `valuation.dynamics.record`, or None (then no "dynamics" group).
      bagged: the bootstrap refits' params with a leading axis `(B,)`, or None (then no
        "bagging" group).
      n_classes: number of classes of the task.
      k: neighbours per sample.
      groups: the feature groups, in column order.
    """

    model: Model
    params: Params
    arrays: dict
    checkpoints: Params | None
    bagged: Params | None
    n_classes: int
    k: int
    groups: tuple

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in order."""
        per_group = {
            "model": ("loss", "p_label", "margin", "entropy"),
            "gradient": ("grad_norm", "grad_alignment"),
            "neighbours": (
                "knn_same_label_input",
                "knn_same_label_embed",
                "knn_distance",
                "dist_own_centroid",
                "dist_other_centroid",
                "centroid_gap",
            ),
            "bagging": ("oob_loss", "oob_p_label", "oob_correct"),
            "label": tuple(f"label_{c}" for c in range(self.n_classes)),
            "dynamics": tuple(f"dyn_{c}" for c in FEATURE_COLUMNS),
        }
        return tuple(name for g in self.groups for name in per_group[g])

    @property
    def width(self) -> int:
        """Number of features `f`."""
        return len(self.names)

    def __call__(self, data: Dataset) -> np.ndarray:
        """Features of `data`'s samples, float32 `(data.n, f)`, columns as in `names`.

        Raises:
          ValuationError: `data` has a different number of input features than the target
            model, or labels outside the task's `n_classes` classes.
        """
        d = self.arrays["ref_x"].shape[1]
        if data.d != d:
            raise ValuationError(
                f"the samples have {data.d} feature columns but the target model was trained "
                f"on {d}; pass the same columns, scaled the same way"
            )
        if data.n_classes != self.n_classes or (
            data.n and data.y.max() >= self.n_classes
        ):
            raise ValuationError(
                f"the samples' class list has {data.n_classes} classes but the task has "
                f"{self.n_classes}; re-code them onto the training set's class list "
                "(valuation.align_classes(train, samples))"
            )
        self_index = self._ref_index.get_indexer(np.asarray(data.ids))
        static = tuple(g for g in self.groups if g != "dynamics")
        # Rows per compiled call: a power of two up to _ROWS, the last chunk padded, so a
        # few shapes serve every batch size (no recompiling per call) with little padding.
        rows = min(_ROWS, 1 << max(data.n - 1, 1).bit_length())
        out = [np.zeros((0, self.width), np.float32)]
        for start in range(0, data.n, rows):
            x = data.x[start : start + rows]
            y = data.y[start : start + rows]
            own = self_index[start : start + rows]
            size = x.shape[0]
            pad = rows - size
            x = np.pad(x, ((0, pad), (0, 0)))
            y, own = np.pad(y, (0, pad)), np.pad(own, (0, pad), constant_values=-1)
            cols = []
            if static:
                cols.append(np.asarray(_features(self.model, self.params, self.bagged,
                                                 self._device_arrays, x, y, own,
                                                 n_classes=self.n_classes, k=self.k,
                                                 groups=static,
                                                 embed_is_input=self._embed_is_input)))
            if "dynamics" in self.groups:  # last: groups follow the order of GROUPS
                trace = trajectory(self.model, self.checkpoints, x, y,
                                   n_classes=self.n_classes, valid=self._valid)
                cols.append(signal_matrix(trace))
            out.append(np.concatenate(cols, axis=1)[:size].astype(np.float32))
        return np.concatenate(out)

    @functools.cached_property
    def _embed_is_input(self) -> bool:
        """The embedding is the input itself (a linear model): one neighbour search serves
        both spaces."""
        a = self.arrays
        return a["ref_h"].shape == a["ref_x"].shape and np.array_equal(a["ref_h"], a["ref_x"])

    @functools.cached_property
    def _ref_index(self) -> pd.Index:
        return pd.Index(self.arrays["ref_ids"])

    @functools.cached_property
    def _valid(self) -> Dataset:
        a = self.arrays
        return from_arrays(a["valid_x"], a["valid_y"], classes=tuple(range(self.n_classes)))

    @functools.cached_property
    def _device_arrays(self) -> dict:
        return {
            name: jnp.asarray(a)
            for name, a in self.arrays.items()
            if name not in ("ref_ids", "valid_x", "valid_y")
        }


def make_features(
    model: Model,
    params: Params,
    reference: Dataset,
    valid: Dataset,
    *,
    k: int = 10,
    groups: Sequence[str] | None = None,
    checkpoints: Params | None = None,
    bagged: Params | None = None,
    bag_in: Any = None,
) -> FeatureMap:
    """Freeze a trained target model and its reference pool into a `FeatureMap`.

    Args:
      model: the target model.
      params: its trained (final) parameters, unbatched.
      reference: the samples neighbourhoods are measured against (the training set the
        target was fitted on, which contains the valued pool).
      valid: validation samples; their mean last-layer gradient is the direction that
        "gradient" features align with.
      k: neighbours per sample (at most `reference.n - 1`).
      groups: feature groups to compute, a subset of `GROUPS` (columns follow the order of
        `GROUPS`); default all of them, "dynamics" only when `checkpoints` are given.
      checkpoints: params with leading axes `(seeds, epochs)` from
        `valuation.dynamics.record(model, reference, valid=valid, ...)`, for "dynamics".
      bagged, bag_in: for "bagging", the params of `B` models refitted on bootstrap samples
        of `reference` (leading axis `(B,)`) and `(B, reference.n)` whether model `b` trained
        on sample `i` (see `bootstrap_refits`).

    Returns:
      A `FeatureMap`; `fmap(data)` gives the features of any samples of the task.
    """
    if groups is None:
        groups = tuple(
            g
            for g in GROUPS
            if (g != "dynamics" or checkpoints is not None)
            and (g != "bagging" or bagged is not None)
        )
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise ValuationError(f"unknown feature groups {unknown}; choose from {GROUPS}")
    groups = tuple(g for g in GROUPS if g in groups)
    if "dynamics" in groups and checkpoints is None:
        raise ValuationError(
            "the 'dynamics' features need the checkpoints of a recorded run; "
            "pass checkpoints=valuation.dynamics.record(...)[0] or drop the "
            "group"
        )
    if "bagging" in groups and (bagged is None or bag_in is None):
        raise ValuationError(
            "the 'bagging' features need bootstrap refits of the target; pass "
            "bagged, bag_in = bootstrap_refits(utility, key=..., bags=...) or drop the group"
        )
    if not 1 <= k < reference.n:
        raise ValuationError(
            f"k={k} neighbours needs a reference pool of more than {k} "
            f"samples (it has {reference.n}); lower k"
        )
    reference, valid = align_classes(reference, valid)
    n_classes = reference.n_classes
    ref_x = jnp.asarray(reference.x)
    ref_h = _embed(model, params, ref_x)
    onehot = jax.nn.one_hot(jnp.asarray(reference.y), n_classes)
    counts = onehot.sum(axis=0)
    if np.any(np.asarray(counts) == 0):
        missing = [
            reference.classes[c] for c in np.flatnonzero(np.asarray(counts) == 0)
        ]
        raise ValuationError(
            f"the reference pool has no samples of classes {missing[:5]}; "
            "neighbourhood features need every class (use a stratified split)"
        )
    centroids = (onehot.T @ ref_h) / counts[:, None]
    xv = jnp.asarray(valid.x)
    resid = jax.nn.softmax(model.apply(params, xv)) - jax.nn.one_hot(valid.y, n_classes)
    hv = _with_bias(_embed(model, params, xv))
    valid_grad = hv.T @ resid / valid.n  # mean of the outer products [h, 1] (p - e_y)^T
    arrays = {
        "ref_x": np.asarray(ref_x),
        "ref_h": np.asarray(ref_h),
        "ref_y": np.asarray(reference.y),
        "ref_ids": np.asarray(reference.ids),
        "centroids": np.asarray(centroids),
        "valid_grad": np.asarray(valid_grad),
        "valid_x": np.asarray(valid.x),
        "valid_y": np.asarray(valid.y),
    }
    if "bagging" in groups:
        arrays["bag_in"] = np.asarray(bag_in, bool)
    return FeatureMap(
        model=model,
        params=params,
        arrays=arrays,
        checkpoints=checkpoints if "dynamics" in groups else None,
        bagged=bagged if "bagging" in groups else None,
        n_classes=n_classes,
        k=int(k),
        groups=groups,
    )


def column_scale(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std of `feats (n, f)` for standardising; a constant column gets
    std 1 (it standardises to 0 instead of dividing by zero)."""
    mean, std = feats.mean(0), feats.std(0)
    return mean, np.where(std > 1e-8, std, 1.0)


def features_for_utility(
    utility: Utility,
    *,
    key: jax.Array,
    k: int = 10,
    groups: Sequence[str] = GROUPS,
    epochs: int = 30,
    bags: int = 32,
    params: Params | None = None,
    checkpoints: Params | None = None,
) -> FeatureMap:
    """`make_features` for the target model, training and validation sets of a `Utility`.

    Args:
      utility: the target model with its training set (the reference pool) and validation
        set.
      key: seeds the recorded training run behind the "dynamics" features.
      k, groups: as in `make_features`.
      epochs: recorded epochs for "dynamics" (`valuation.dynamics.record` with the utility's
        `l2`, 10 full-batch Adam steps per epoch).
      params: the target's trained parameters; default: trained on all of `utility.train`
        with the utility's own solver and settings (`utility.fit`).
      checkpoints: recorded checkpoints for "dynamics"; default: recorded here.
    """
    if params is None:
        params = utility.fit_full()
    k_record, k_bags = jax.random.split(key)
    bagged = bag_in = None
    if "bagging" in groups:
        bagged, bag_in = bootstrap_refits(utility, key=k_bags, bags=bags)
    if "dynamics" in groups and checkpoints is None:
        checkpoints, _ = record(
            utility.model,
            utility.train,
            key=k_record,
            epochs=epochs,
            l2=utility.l2,
            valid=utility.valid,
        )
    return make_features(
        utility.model,
        params,
        utility.train,
        utility.valid,
        k=k,
        groups=groups,
        checkpoints=checkpoints,
        bagged=bagged,
        bag_in=bag_in,
    )


def bootstrap_refits(
    utility: Utility, *, key: jax.Array, bags: int = 32
) -> tuple[Params, np.ndarray]:
    """Refit the target on `bags` bootstrap samples of its training set (one batched call).

    Returns:
      `(params, bag_in)`: the params with a leading axis `(bags,)` and `(bags, n)` booleans,
      whether model `b` drew training sample `i` at least once.
    """
    if bags < 2:
        raise ValuationError(f"bags={bags}: the bagging features need at least 2 refits")
    k_draw, k_fit = jax.random.split(key)
    n = utility.n
    draws = jax.random.randint(k_draw, (bags, n), 0, n)
    counts = np.asarray(jax.vmap(lambda d: jnp.bincount(d, length=n))(draws), np.float32)
    return utility.fit(counts, key=k_fit), counts > 0


def _embed(model: Model, params: Params, x: jax.Array) -> jax.Array:
    return x if model.embed is None else model.embed(params, x)


def _with_bias(h: jax.Array) -> jax.Array:
    return jnp.concatenate([h, jnp.ones((h.shape[0], 1), h.dtype)], axis=1)


def _distances(a: jax.Array, b: jax.Array) -> jax.Array:
    """Euclidean distances `(m, N)`, via |a|^2 + |b|^2 - 2ab (one matrix product)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return jnp.sqrt(jnp.maximum(sq, 0.0))


@functools.partial(
    jax.jit, static_argnames=("model", "n_classes", "k", "groups", "embed_is_input")
)
def _features(model, params, bagged, arrays, x, y, own, *, n_classes, k, groups,
              embed_is_input):
    logits = model.apply(params, x)
    logp = jax.nn.log_softmax(logits)
    p = jnp.exp(logp)
    onehot = jax.nn.one_hot(y, n_classes)
    h = _embed(model, params, x)
    cols = []
    if "model" in groups:
        other = jnp.max(jnp.where(onehot > 0, -jnp.inf, logits), axis=1)
        cols += [
            -(logp * onehot).sum(1),
            (p * onehot).sum(1),
            (logits * onehot).sum(1) - other,
            -(p * logp).sum(1),
        ]
    if "gradient" in groups:
        a, r, g = _with_bias(h), p - onehot, arrays["valid_grad"]
        a_norm, r_norm = jnp.linalg.norm(a, axis=1), jnp.linalg.norm(r, axis=1)
        inner = jnp.einsum("nw,wc,nc->n", a, g, r)  # <[h,1] r^T, G> without forming it
        cos = inner / jnp.maximum(a_norm * r_norm * jnp.linalg.norm(g), 1e-12)
        cols += [a_norm * r_norm, cos]
    if "neighbours" in groups:
        n_ref = arrays["ref_y"].shape[0]
        is_self = own[:, None] == jnp.arange(n_ref)[None, :]
        same = (y[:, None] == arrays["ref_y"][None, :]).astype(jnp.float32)

        def knn(dist):
            neg, idx = jax.lax.top_k(-jnp.where(is_self, jnp.inf, dist), k)
            return jnp.take_along_axis(same, idx, axis=1).mean(1), -neg.mean(1)

        share_x, dist_x = knn(_distances(x, arrays["ref_x"]))
        share_h, dist_h = (share_x, dist_x) if embed_is_input else knn(
            _distances(h, arrays["ref_h"])
        )
        to_centroid = _distances(h, arrays["centroids"])
        own_c = (to_centroid * onehot).sum(1)
        other_c = jnp.min(jnp.where(onehot > 0, jnp.inf, to_centroid), axis=1)
        cols += [share_x, share_h, dist_h, own_c, other_c, other_c - own_c]
    if "bagging" in groups:
        # weight of model b for sample i: 1 unless b trained on i (a pool sample's own id)
        trained = jnp.where(own[None, :] >= 0, arrays["bag_in"][:, jnp.maximum(own, 0)], False)
        w = 1.0 - trained.astype(jnp.float32)  # (B, m)
        w = jnp.where(w.sum(0) > 0, w, 1.0)  # drawn by every bag: fall back to all models
        w = w / w.sum(0)
        blogp = jax.nn.log_softmax(jax.vmap(model.apply, in_axes=(0, None))(bagged, x))
        blab = (blogp * onehot[None]).sum(-1)  # (B, m) log p(label)
        hit = (jnp.argmax(blogp, -1) == y[None, :]).astype(jnp.float32)
        cols += [-(w * blab).sum(0), (w * jnp.exp(blab)).sum(0), (w * hit).sum(0)]
    if "label" in groups:
        cols += list(onehot.T)
    return jnp.stack(cols, axis=1)
