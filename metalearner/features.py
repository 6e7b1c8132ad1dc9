"""Sample features for the meta-model: the same numbers for a training row and a new row.

Where it sits: between the target model's task (a `Utility`: model, training set, validation
set) and the meta-model. `features_for_utility(...)` trains everything a feature needs once
(K fold models, bootstrap refits, optionally K recorded training runs) and freezes it, with the
reference pool and its summaries, into a `FeatureMap`; calling it on a `Dataset` gives an
`(n, f)` matrix whose columns are named in `FeatureMap.names`. Nothing is trained at
prediction time: a feature vector costs forward passes and a distance computation.

Cross-fitting. Every feature that reads a trained model reads one that did *not* train on
the row: the training set is cut into `K` stratified folds and fold model `j` is the target
trained on every fold but `j` (all `K` in one batched `Utility.fit`). A training row reads the
fold model of its own fold; a new row reads all `K` and gets the mean of their `K` feature
values. So no feature of any row is in-sample, and a mislabelled training row looks to the
meta-model as a mislabelled new row does (Chernozhukov et al., "Double/debiased machine
learning", 2018, for cross-fitting; the fold models play the target trained on the rest).

Which row is a training row is decided by content, not by id (`FeatureMap.membership`): a row
is training row `i` when its features and label are bit-identical to row `i`'s (a 64-bit hash
of the float32 features and the label code, recorded beside the ids). An id that names a
training row whose content differs is an error by default (`id_conflict="error"`, naming the
ids); `id_conflict="new"` treats such rows as the new rows they are. Feature columns are read
by name (`FeatureMap.columns`).

Feature groups (`h(x)` is a model's embedding, `model.embed`, or `x` itself):

* "model" (cross-fitted): cross-entropy loss, p(label), margin `z_y - max_{c != y} z_c` of the
  logits `z`, predictive entropy (nats).
* "gradient" (cross-fitted): the last-layer gradient `g = [h, 1] (p - e_y)^T` of the row's
  loss, through its norm `|[h, 1]| |p - e_y|` and its cosine with the fold model's mean
  validation gradient `G`. A descent step on the row changes the validation loss by
  `-lr <g, G>` to first order (TracIn, Pruthi et al., NeurIPS 2020): positive = helpful.
* "neighbours": share of the `k` nearest training rows (Euclidean) with the same label in input
  space, and (cross-fitted) in the fold model's embedding space, with the mean distance to
  those `k`; distance to the own-class centroid and to the nearest other-class centroid of the
  training rows in embedding space, and their difference. A training row is left out of its
  own neighbourhood.
* "bagging": out-of-bag predictions of `bags` bootstrap refits of the target: mean loss, mean
  p(label) and share of refits whose argmax is the label, over the refits that did not draw
  the row (a training row: about `bags / e` of them; a new row: all). The signal of Data-OOB
  (Kwon & Zou, ICML 2023), here with probabilities as well as hits.
* "label": one-hot label (`n_classes` columns); left out of `MODEL_AGNOSTIC`.
* "dynamics" (cross-fitted): the learning-dynamics signals of `valuation.dynamics`
  (confidence, variability, forgetting, AUM, EL2N, GraNd, validation-gradient alignment) over
  the checkpoints of `K` recorded training runs, run `j` on every fold but `j`.
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
from valuation.dynamics import FEATURE_COLUMNS, Trace, record, signal_matrix, trajectory

__all__ = [
    "DEFAULT_GROUPS",
    "GROUPS",
    "ID_CONFLICTS",
    "MODEL_AGNOSTIC",
    "FeatureMap",
    "bootstrap_refits",
    "column_scale",
    "compile_features_ahead",
    "features_for_utility",
    "fold_refits",
    "row_hash",
]

GROUPS = ("model", "gradient", "neighbours", "bagging", "label", "dynamics")
MODEL_AGNOSTIC = ("model", "gradient", "neighbours", "bagging", "dynamics")
# Every group is cross-fitted or out-of-bag, so each means the same for a training row and a
# new row, whatever the teacher; "dynamics" costs K recorded training runs and is opt-in.
DEFAULT_GROUPS = ("model", "gradient", "neighbours", "bagging", "label")
ID_CONFLICTS = ("error", "new")
_FOLD_GROUPS = ("model", "gradient", "neighbours")  # computed per fold model, in one vmap

_ROWS = 512  # most samples per compiled feature call; the last chunk is padded

Params = Any


def row_hash(x: Any, y: Any) -> np.ndarray:
    """A 64-bit content hash per row of float32 features `x (n, d)` and label codes `y (n,)`.

    Bit-identical rows (after `-0.0 -> 0.0`) get the same hash; any other difference gives
    another hash except with probability about `2**-64` per pair.
    """
    x = np.ascontiguousarray(np.asarray(x, np.float32) + np.float32(0.0))
    frame = pd.DataFrame(x.view(np.uint32))
    frame["label"] = np.asarray(y, np.int64)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)


def feature_names(groups: Sequence[str], n_classes: int) -> tuple[str, ...]:
    """The feature columns of `groups` (in that order) for a task of `n_classes`."""
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
        "label": tuple(f"label_{c}" for c in range(n_classes)),
        "dynamics": tuple(f"dyn_{c}" for c in FEATURE_COLUMNS),
    }
    return tuple(name for g in groups for name in per_group[g])


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureMap:
    """Everything a feature needs, frozen: call it on samples to get their features.

    Build it with `features_for_utility`. The arrays are the state `save`/`load` round-trip.

    Attributes:
      model: the target model.
      folds: the `K` fold models' params, leading axis `(K,)`; fold model `j` never trained
        on the training rows of fold `j`.
      arrays: the training rows and summaries: `ref_x (N, d)`, `ref_y (N,)`, `ref_ids (N,)`,
        `ref_hash (N,)` (`row_hash`), `ref_fold (N,)` (each row's fold), `ref_h (K, N, w)`
        (embeddings under each fold model; absent when the embedding is the input),
        `centroids (K, k, w)`, `valid_grad (K, w + 1, k)` (absent when neither the "gradient"
        group nor the embedding needs a compiled summary: `_fold_summaries`), the validation set `valid_x (V, d)`,
        `valid_y (V,)` and, with "bagging", `bag_in (B, N)`: whether refit `b` drew row `i`.
      checkpoints: the `K` recorded fold runs, params with leading axes `(K, epochs)`, or
        None (then no "dynamics" group).
      bagged: the bootstrap refits' params with a leading axis `(B,)`, or None (then no
        "bagging" group).
      n_classes: number of classes of the task.
      k: neighbours per sample.
      groups: the feature groups, in column order.
      columns: names of the target model's input feature columns, in the order it reads them.
    """

    model: Model
    folds: Params
    arrays: dict
    checkpoints: Params | None
    bagged: Params | None
    n_classes: int
    k: int
    groups: tuple
    columns: tuple

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in order."""
        return feature_names(self.groups, self.n_classes)

    @property
    def width(self) -> int:
        """Number of features `f`."""
        return len(self.names)


    @property
    def n_folds(self) -> int:
        """Number of fold models `K`."""
        return int(jax.tree_util.tree_leaves(self.folds)[0].shape[0])

    def conform(self, data: Dataset) -> Dataset:
        """`data` with the target's feature columns in its order, matched by name.

        Samples built from bare arrays carry the generic names `x0, x1, ...`; those are taken
        in order (arrays have no names to match), provided the width fits.

        Raises:
          ValuationError: missing or extra columns (one error naming them all), labels
            outside the task's classes.
        """
        generic = tuple(f"x{j}" for j in range(data.d))
        if data.feature_names != generic or generic == self.columns:
            data = data.select_features(self.columns, what="the samples' feature columns")
        elif data.d != len(self.columns):
            raise ValuationError(
                f"the samples have {data.d} unnamed feature columns but the target model "
                f"was trained on {len(self.columns)} ({list(self.columns)[:10]}); pass the "
                "same columns, scaled the same way"
            )
        if data.n_classes != self.n_classes or (data.n and data.y.max() >= self.n_classes):
            raise ValuationError(
                f"the samples' class list has {data.n_classes} classes but the task has "
                f"{self.n_classes}; re-code them onto the training set's class list "
                "(valuation.align_classes(train, samples))"
            )
        return data

    def membership(self, data: Dataset, *, id_conflict: str = "error") -> np.ndarray:
        """Position of each row of `data` among the training rows, or -1 for a new row.

        A row is training row `i` when its content (float32 features and label) is row `i`'s,
        whatever its id. An id equal to a training row's id whose content differs is a
        conflict: an error naming the ids (`id_conflict="error"`) or a new row (`"new"`).

        Args:
          data: samples with the target's columns in order (`conform`).
          id_conflict: "error" or "new".

        Returns:
          `(data.n,)` int64 positions into the training rows, -1 where new.
        """
        if id_conflict not in ID_CONFLICTS:
            raise ValuationError(
                f"id_conflict={id_conflict!r}; choose one of {ID_CONFLICTS}"
            )
        ref_hash = self.arrays["ref_hash"]
        h = row_hash(data.x, data.y)
        by_id = self._ref_index.get_indexer(np.asarray(data.ids))
        conflict = (by_id >= 0) & (ref_hash[np.maximum(by_id, 0)] != h)
        if conflict.any() and id_conflict == "error":
            ids = np.asarray(data.ids)[conflict]
            raise ValuationError(
                f"{conflict.sum()} rows carry the id of a training row but not its content "
                f"(features or label differ), e.g. ids {ids[:5].tolist()}; give new rows "
                "their own ids, or pass id_conflict='new' (CLI: --id-conflict new) to "
                "treat them as new rows"
            )
        unique, first = self._hash_index
        at = np.minimum(np.searchsorted(unique, h), len(unique) - 1)
        by_content = np.where(unique[at] == h, first[at], -1)
        same = (by_id >= 0) & ~conflict  # the id's own row (a duplicate keeps its id)
        return np.where(same, by_id, by_content).astype(np.int64)

    def check_unlabelled_ids(self, data: Dataset, *, id_conflict: str = "error") -> None:
        """For rows without labels: raise when an id names a training row whose features
        differ from the row's (`id_conflict="error"`); `"new"` lets such rows be new.

        Args:
          data: samples with the target's columns in order (`conform`); labels ignored.
        """
        if id_conflict not in ID_CONFLICTS:
            raise ValuationError(
                f"id_conflict={id_conflict!r}; choose one of {ID_CONFLICTS}"
            )
        by_id = self._ref_index.get_indexer(np.asarray(data.ids))
        known = by_id >= 0
        differs = np.any(self.arrays["ref_x"][by_id[known]] != data.x[known], axis=1)
        if differs.any() and id_conflict == "error":
            ids = np.asarray(data.ids)[known][differs]
            raise ValuationError(
                f"{differs.sum()} rows carry the id of a training row but not its "
                f"features, e.g. ids {ids[:5].tolist()}; give new rows their own ids, or "
                "pass id_conflict='new' (CLI: --id-conflict new) to treat them as new rows"
            )

    def __call__(self, data: Dataset, *, id_conflict: str = "error") -> np.ndarray:
        """Features of `data`'s samples, float32 `(data.n, f)`, columns as in `names`.

        Args:
          data: samples of the task: the target's feature columns (by name, any order,
            scaled as the training rows were) and labels of its class list.
          id_conflict: what an id naming a training row of other content means
            (`membership`).

        Raises:
          ValuationError: missing or extra columns, labels outside the task's classes, an
            id conflict with `id_conflict="error"`.
        """
        data = self.conform(data)
        own = self.membership(data, id_conflict=id_conflict)
        ref_fold = self.arrays["ref_fold"]
        own_fold = np.where(own >= 0, ref_fold[np.maximum(own, 0)], -1)
        static = tuple(g for g in self.groups if g != "dynamics")
        # Rows per compiled call: fixed per map (the power of two that holds the training
        # rows, at most _ROWS), the last chunk padded, so the program compiled for the
        # training rows serves every later call (new rows compile nothing).
        rows = _rows_per_call(len(self.arrays["ref_y"]))
        out = [np.zeros((0, self.width), np.float32)]
        for start in range(0, data.n, rows):
            part = slice(start, start + rows)
            size = data.x[part].shape[0]
            pad = rows - size
            x = np.pad(data.x[part], ((0, pad), (0, 0)))
            y = np.pad(data.y[part], (0, pad))
            own_p = np.pad(own[part], (0, pad), constant_values=-1)
            fold_p = np.pad(own_fold[part], (0, pad), constant_values=-1)
            cols = []
            if static:
                cols.append(np.asarray(_features(
                    self.model, self.folds, self.bagged, self._device_arrays, x, y, own_p,
                    fold_p, n_classes=self.n_classes, k=self.k, groups=static,
                    embed_is_input=self._embed_is_input)))
            if "dynamics" in self.groups:  # last: groups follow the order of GROUPS
                cols.append(self._dynamics(x, y, fold_p))
            out.append(np.concatenate(cols, axis=1)[:size].astype(np.float32))
        return np.concatenate(out)

    def label_probabilities(self, data: Dataset) -> np.ndarray:
        """The target's label distribution `p(c | x)` for `data`'s rows, `(n, n_classes)`.

        The mean of the `K` fold models' softmax outputs: the cross-fitted ensemble's
        predictive distribution, what a new row's "model" features read. Labels are ignored
        (the rows may be unlabelled); columns are matched by name (`conform`).
        """
        data = self.conform(data)
        return np.asarray(_mean_softmax(self.model, self.folds, jnp.asarray(data.x)),
                          np.float64)

    def _dynamics(self, x: np.ndarray, y: np.ndarray, own_fold: np.ndarray) -> np.ndarray:
        """The dynamics signals under each fold run `(K, m, 9)`, picked per row as in
        `_pick`."""
        trace = trajectory(self.model, self.checkpoints, x, y, n_classes=self.n_classes,
                           valid=self._valid)
        per_fold = np.stack([
            signal_matrix(Trace(*(a[j : j + 1] for a in trace)))
            for j in range(trace.shape[0])
        ])
        return np.asarray(_pick(jnp.asarray(per_fold), jnp.asarray(own_fold)))

    @property
    def _embed_is_input(self) -> bool:
        """The embedding is the input itself (a linear model): one neighbour search serves
        both spaces."""
        return "ref_h" not in self.arrays

    @functools.cached_property
    def _hash_index(self) -> tuple[np.ndarray, np.ndarray]:
        """The training rows' distinct hashes, sorted, and each one's first row."""
        return np.unique(self.arrays["ref_hash"], return_index=True)

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
            if name not in ("ref_ids", "ref_hash", "valid_x", "valid_y")
        }


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
    groups: Sequence[str] = DEFAULT_GROUPS,
    folds: int = 5,
    epochs: int = 30,
    bags: int = 32,
) -> FeatureMap:
    """Train what the features need on a `Utility`'s task and freeze it into a `FeatureMap`.

    Args:
      utility: the target model with its training set (the reference rows) and validation
        set.
      key: seeds the folds, the bootstrap draws and the recorded runs.
      k: neighbours per sample (at most `utility.n - 1`).
      groups: feature groups, a subset of `GROUPS` (columns follow the order of `GROUPS`).
      folds: number of folds `K` of the cross-fitted groups (2 or more).
      epochs: recorded epochs of each fold run for "dynamics" (`valuation.dynamics.record`
        with the utility's `l2`, 10 full-batch Adam steps per epoch).
      bags: bootstrap refits for "bagging".

    Returns:
      A `FeatureMap`; `fmap(data)` gives the features of any samples of the task.

    Raises:
      ValuationError: a regression target (the feature groups need classes), unknown
        groups, too few rows for `k` or `folds`.
    """
    if utility.task == "regression":
        # Every group reads classes (stratified folds, p(label), margins, same-label
        # neighbours, class centroids); regression features are not built yet.
        raise ValuationError("the meta-learner's features (and so MetaValuator, DataRater, "
                             "`valuate fit-meta` and method 'rater') are for classification "
                             "targets; a regression target's values cannot be learned yet")
    groups = tuple(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise ValuationError(f"unknown feature groups {unknown}; choose from {GROUPS}")
    groups = tuple(g for g in GROUPS if g in groups)
    reference, valid = align_classes(utility.train, utility.valid)
    if not 1 <= k < reference.n:
        raise ValuationError(
            f"k={k} neighbours needs a training set of more than {k} samples (it has "
            f"{reference.n}); lower k"
        )
    counts = np.bincount(reference.y, minlength=reference.n_classes)
    if np.any(counts == 0):
        missing = [reference.classes[c] for c in np.flatnonzero(counts == 0)]
        raise ValuationError(
            f"the training set has no samples of classes {missing[:5]}; neighbourhood "
            "features need every class (use a stratified split)"
        )
    # The fold models and the bootstrap refits in one batched fit: one compiled program.
    fold_w, ref_fold = _fold_weights(utility, key=key, folds=folds)
    bag_w = _bootstrap_counts(utility, key=key, bags=bags) if "bagging" in groups else None
    fitted = utility.fit(fold_w if bag_w is None else np.concatenate([fold_w, bag_w]),
                         key=key)
    # Sliced on the host: an eager slice of a device array compiles a program per shape.
    fitted = jax.tree_util.tree_map(np.asarray, fitted)
    fold_params = jax.tree_util.tree_map(lambda a: a[:folds], fitted)
    arrays = {
        "ref_x": np.asarray(reference.x),
        "ref_y": np.asarray(reference.y),
        "ref_ids": np.asarray(reference.ids),
        "ref_hash": row_hash(reference.x, reference.y),
        "ref_fold": ref_fold,
        "valid_x": np.asarray(valid.x),
        "valid_y": np.asarray(valid.y),
        **_fold_summaries(utility.model, fold_params, reference, valid,
                          gradient="gradient" in groups),
    }
    bagged = checkpoints = None
    if bag_w is not None:
        bagged, arrays["bag_in"] = jax.tree_util.tree_map(lambda a: a[folds:], fitted), bag_w > 0
    if "dynamics" in groups:
        held_out = ref_fold[None, :] == np.arange(folds)[:, None]
        checkpoints, _ = record(utility.model, reference, key=jax.random.fold_in(key, 2),
                                epochs=epochs,
                                l2=utility.l2, valid=valid, seeds=folds,
                                weights=(~held_out).astype(np.float32))
    return FeatureMap(
        model=utility.model,
        folds=fold_params,
        arrays=arrays,
        checkpoints=checkpoints,
        bagged=bagged,
        n_classes=reference.n_classes,
        k=int(k),
        groups=groups,
        columns=tuple(reference.feature_names),
    )


def fold_refits(utility: Utility, *, key: jax.Array, folds: int = 5) -> tuple[Params, np.ndarray]:
    """The target refitted `folds` times, each time without one stratified fold (one call).

    Returns:
      `(params, fold)`: params with a leading axis `(folds,)` and `(n,)` the fold of each
      training row; model `j` trained on the rows with `fold != j`.
    """
    weights, fold = _fold_weights(utility, key=key, folds=folds)
    return utility.fit(weights, key=key), fold


def _fold_weights(utility: Utility, *, key: jax.Array, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """`(weights (folds, n), fold (n,))`: stratified folds, weight 0 on the held-out fold."""
    n = utility.n
    if not 2 <= folds <= n:
        raise ValuationError(f"folds={folds} must lie between 2 and the {n} training samples")
    order = _host_generator(key, stream=0).permutation(n)
    y = np.asarray(utility.train.y)[order]
    by_class = order[np.argsort(y, kind="stable")]  # shuffled within each class
    fold = np.empty(n, np.int64)
    fold[by_class] = np.arange(n) % folds  # round-robin: every fold gets each class evenly
    return (fold[None, :] != np.arange(folds)[:, None]).astype(np.float32), fold


def _fold_summaries(model: Model, folds: Params, reference: Dataset, valid: Dataset, *,
                    gradient: bool) -> dict:
    """Per fold model: training rows' embeddings (unless the embedding is the input), class
    centroids in embedding space and, with the "gradient" group (`gradient`), the mean
    validation last-layer gradient.

    When the embedding is the input (a linear target) and no "gradient" group reads the
    validation gradient, the centroids are the input's class means, the same for every
    fold: computed on the host, with no program to compile (0.45-0.68 s of a cold rater fit
    on wine at load 3-3.5). Their float32 sums may differ from the compiled program's in the
    last bits (another summation order).
    """
    n_folds = jax.tree_util.tree_leaves(folds)[0].shape[0]
    if not gradient and _embeds_input(model, folds, reference.x):
        x = np.asarray(reference.x)
        onehot = np.eye(reference.n_classes, dtype=x.dtype)[np.asarray(reference.y)]
        centroids = (onehot.T @ x) / onehot.sum(0)[:, None]
        return {"centroids": np.repeat(centroids[None], n_folds, axis=0)}
    ref_h, centroids, valid_grad = (np.asarray(a) for a in _summaries(
        model, folds, jnp.asarray(reference.x), jnp.asarray(reference.y),
        jnp.asarray(valid.x), jnp.asarray(valid.y), n_classes=reference.n_classes))
    out = {"centroids": centroids, "valid_grad": valid_grad}
    if not (ref_h.shape[1:] == reference.x.shape and np.array_equal(ref_h[0], reference.x)):
        out["ref_h"] = ref_h
    return out


def _embeds_input(model: Model, folds: Params, x: Any) -> bool:
    """Whether `model.embed` returns its input unchanged (a linear target), read from its
    traced program (`jax.make_jaxpr`: nothing is compiled or run). `folds`: params with a
    leading fold axis, or their shapes."""
    if model.embed is None:
        return True
    params = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype),
                                    folds)
    traced = jax.make_jaxpr(model.embed)(params, jax.ShapeDtypeStruct(x.shape, x.dtype))
    return not traced.eqns and traced.jaxpr.outvars[0] is traced.jaxpr.invars[-1]


def compile_features_ahead(utility: Utility, *, groups: Sequence[str], k: int, folds: int,
                           bags: int) -> None:
    """Compile, from shapes alone, the programs that `features_for_utility(utility,
    groups=groups, k=k, folds=folds, bags=bags)` runs: the utility's batched fit of the fold
    models and bootstrap refits, and the feature program of its `FeatureMap` on `utility`'s
    training rows; that call then reuses them (JAX's in-memory cache).

    Meant for a second thread while the full-data fit compiles and runs (`DataRater.fit`).
    The shapes mirror `features_for_utility` and `FeatureMap.__call__`; were they to drift,
    the call compiles again (a test counts the compiles).
    """
    utility.compile_fit_ahead(folds + (bags if "bagging" in groups else 0))
    static = tuple(g for g in GROUPS if g in groups and g != "dynamics")
    if not static:
        return
    reference = align_classes(utility.train, utility.valid)[0]
    n, d = reference.x.shape
    n_classes = reference.n_classes

    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(tuple(shape), jax.dtypes.canonicalize_dtype(dtype))

    x = spec((n, d), reference.x.dtype)
    params = jax.eval_shape(utility.model.init, spec((2,), np.uint32), x)

    def stacked(lead):
        return jax.tree_util.tree_map(lambda a: spec((lead,) + a.shape, a.dtype), params)

    fold_params = stacked(folds)
    is_input = _embeds_input(utility.model, fold_params, x)
    width = d if is_input else jax.eval_shape(utility.model.embed, params, x).shape[-1]
    arrays = {"ref_x": x, "ref_y": spec((n,), reference.y.dtype), "ref_fold": spec((n,), np.int64),
              "centroids": spec((folds, n_classes, width), np.float32)}
    if "gradient" in static or not is_input:
        arrays["valid_grad"] = spec((folds, width + 1, n_classes), np.float32)
    if not is_input:
        arrays["ref_h"] = spec((folds, n, width), np.float32)
    bagged = None
    if "bagging" in static:
        bagged, arrays["bag_in"] = stacked(bags), spec((bags, n), np.bool_)
    rows = _rows_per_call(n)
    _features.lower(
        utility.model, fold_params, bagged, arrays, spec((rows, d), reference.x.dtype),
        spec((rows,), reference.y.dtype), spec((rows,), np.int64), spec((rows,), np.int64),
        n_classes=n_classes, k=int(k), groups=static, embed_is_input=is_input).compile()


def _rows_per_call(n_ref: int) -> int:
    """Rows per compiled feature call: fixed per map (the power of two that holds the
    `n_ref` training rows, at most `_ROWS`)."""
    return min(_ROWS, 1 << max(n_ref - 1, 1).bit_length())


@functools.partial(jax.jit, static_argnames=("model", "n_classes"))
def _summaries(model, folds, x, y, x_val, y_val, *, n_classes):
    """`_fold_summaries`' arrays, one compiled program: embeddings `(K, n, w)`, centroids
    `(K, n_classes, w)`, mean validation last-layer gradients `(K, w + 1, n_classes)`."""
    onehot = jax.nn.one_hot(y, n_classes)

    def one(params):
        h = _embed(model, params, x)
        centroids = (onehot.T @ h) / onehot.sum(0)[:, None]
        resid = jax.nn.softmax(model.apply(params, x_val)) - jax.nn.one_hot(y_val, n_classes)
        hv = _with_bias(_embed(model, params, x_val))
        return h, centroids, hv.T @ resid / x_val.shape[0]  # mean of [h, 1] (p - e_y)^T

    return jax.vmap(one)(folds)


def bootstrap_refits(
    utility: Utility, *, key: jax.Array, bags: int = 32
) -> tuple[Params, np.ndarray]:
    """Refit the target on `bags` bootstrap samples of its training set (one batched call).

    Returns:
      `(params, bag_in)`: the params with a leading axis `(bags,)` and `(bags, n)` booleans,
      whether model `b` drew training sample `i` at least once.
    """
    counts = _bootstrap_counts(utility, key=key, bags=bags)
    return utility.fit(counts, key=key), counts > 0


def _bootstrap_counts(utility: Utility, *, key: jax.Array, bags: int) -> np.ndarray:
    """`(bags, n)` float32: how often each bootstrap sample draws each training row."""
    if bags < 2:
        raise ValuationError(f"bags={bags}: the bagging features need at least 2 refits")
    n = utility.n
    draws = _host_generator(key, stream=1).integers(0, n, (bags, n))
    flat = (draws + n * np.arange(bags)[:, None]).ravel()  # row b's draws into block b
    return np.bincount(flat, minlength=bags * n).reshape(bags, n).astype(np.float32)


def _host_generator(key: jax.Array, *, stream: int) -> np.random.Generator:
    """A numpy generator seeded by `key`'s data and `stream` (0: folds, 1: bootstrap
    draws). The folds and bootstrap counts are drawn on the host: eager `jax.random` calls
    each compile a program of their own (about 1 s in all of a cold rater fit on wine)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng([*np.asarray(key, np.uint32).ravel().tolist(), stream])


def _embed(model: Model, params: Params, x: jax.Array) -> jax.Array:
    return x if model.embed is None else model.embed(params, x)


def _with_bias(h: jax.Array) -> jax.Array:
    return jnp.concatenate([h, jnp.ones((h.shape[0], 1), h.dtype)], axis=1)


def _distances(a: jax.Array, b: jax.Array) -> jax.Array:
    """Euclidean distances `(m, N)`, via |a|^2 + |b|^2 - 2ab (one matrix product)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return jnp.sqrt(jnp.maximum(sq, 0.0))


def _pick(per_fold: jax.Array, own_fold: jax.Array) -> jax.Array:
    """Rows' features from per-fold features `(K, m, f)`: a training row's own fold's
    (`own_fold >= 0`), the mean over folds for a new row (`-1`)."""
    mine = per_fold[jnp.maximum(own_fold, 0), jnp.arange(per_fold.shape[1])]
    return jnp.where(own_fold[:, None] >= 0, mine, per_fold.mean(0))


@functools.partial(jax.jit, static_argnames=("model",))
def _mean_softmax(model, folds, x):
    return jax.vmap(lambda p: jax.nn.softmax(model.apply(p, x)))(folds).mean(0)


@functools.partial(
    jax.jit, static_argnames=("model", "n_classes", "k", "groups", "embed_is_input")
)
def _features(model, folds, bagged, arrays, x, y, own, own_fold, *, n_classes, k, groups,
              embed_is_input):
    onehot = jax.nn.one_hot(y, n_classes)
    n_ref = arrays["ref_y"].shape[0]
    is_self = own[:, None] == jnp.arange(n_ref)[None, :]
    same = (y[:, None] == arrays["ref_y"][None, :]).astype(jnp.float32)

    def knn(dist):
        neg, idx = jax.lax.top_k(-jnp.where(is_self, jnp.inf, dist), k)
        return jnp.take_along_axis(same, idx, axis=1).mean(1), -neg.mean(1)

    share_x, dist_x = knn(_distances(x, arrays["ref_x"]))  # no fold: computed once

    def per_fold(params, ref_h, centroids, valid_grad):
        logits = model.apply(params, x)
        logp = jax.nn.log_softmax(logits)
        p = jnp.exp(logp)
        h = _embed(model, params, x)
        cols = []
        if "model" in groups:
            other = jnp.max(jnp.where(onehot > 0, -jnp.inf, logits), axis=1)
            cols += [-(logp * onehot).sum(1), (p * onehot).sum(1),
                     (logits * onehot).sum(1) - other, -(p * logp).sum(1)]
        if "gradient" in groups:
            a, r = _with_bias(h), p - onehot
            a_norm, r_norm = jnp.linalg.norm(a, axis=1), jnp.linalg.norm(r, axis=1)
            inner = jnp.einsum("nw,wc,nc->n", a, valid_grad, r)  # <[h,1] r^T, G>
            cos = inner / jnp.maximum(a_norm * r_norm * jnp.linalg.norm(valid_grad), 1e-12)
            cols += [a_norm * r_norm, cos]
        if "neighbours" in groups:
            share_h, dist_h = (share_x, dist_x) if embed_is_input else knn(
                _distances(h, ref_h))
            to_centroid = _distances(h, centroids)
            own_c = (to_centroid * onehot).sum(1)
            other_c = jnp.min(jnp.where(onehot > 0, jnp.inf, to_centroid), axis=1)
            cols += [share_x, share_h, dist_h, own_c, other_c, other_c - own_c]
        return jnp.stack(cols, axis=1)

    cols = []
    if any(g in groups for g in _FOLD_GROUPS):
        ref_h = arrays["ref_x"] if embed_is_input else arrays["ref_h"]
        per = jax.vmap(per_fold, in_axes=(0, None if embed_is_input else 0, 0, 0))(
            folds, ref_h, arrays["centroids"], arrays.get("valid_grad"))  # None: unused
        cols.append(_pick(per, own_fold))
    if "bagging" in groups:
        # weight of refit b for row i: 1 unless b drew i (a training row)
        drawn = jnp.where(own[None, :] >= 0, arrays["bag_in"][:, jnp.maximum(own, 0)], False)
        w = 1.0 - drawn.astype(jnp.float32)  # (B, m)
        w = jnp.where(w.sum(0) > 0, w, 1.0)  # drawn by every refit: fall back to all
        w = w / w.sum(0)
        blogp = jax.nn.log_softmax(jax.vmap(model.apply, in_axes=(0, None))(bagged, x))
        blab = (blogp * onehot[None]).sum(-1)  # (B, m) log p(label)
        hit = (jnp.argmax(blogp, -1) == y[None, :]).astype(jnp.float32)
        cols.append(jnp.stack([-(w * blab).sum(0), (w * jnp.exp(blab)).sum(0),
                               (w * hit).sum(0)], axis=1))
    if "label" in groups:
        cols.append(onehot)
    return jnp.concatenate(cols, axis=1)
