"""`MetaValuator`: learn a target model's values on a valued pool, predict them for new samples.

Where it sits: the user-facing end of the meta-learner. It ties `features.features_for_utility` (what
the meta-model sees) to `model.fit_ensemble` (the regressor) and returns `ValuationResult`s
like every value family, with the ensemble's spread as the standard error.

A meta-model belongs to one target model: the values it learns (and the features it reads:
losses, gradients and embeddings of cross-fitted copies of the target) are that model's.
`save` records the target's description, its input columns and the feature names; `load`
refuses a different target model or a different feature set rather than predicting nonsense
(`persistence.py`).

What a predicted value means. For a training row (inside or outside the valued pool) it is
the teacher's value of that row in the game it was valued in. For a new row it is the value
the row would have had, had it been part of that game: the features of a new row are those
of a training row that the models never saw (`features.py`: cross-fitting), so the
meta-model answers "what would the teacher have said of this row?". Rows are matched to
training rows by content, not id, and columns by name.

Example:
  >>> import valuation as va, numpy as np
  >>> train, valid = va.make_classification(120, 3, seed=0).split(0.7, 0.3, seed=0)
  >>> utility = va.make_utility(va.logistic_regression(2), train, valid)
  >>> values = va.ValuationResult(values=train.x[:, 0], stderr=np.zeros(train.n),
  ...                             counts=np.ones(train.n, int), ids=train.ids, method="toy")
  >>> meta = MetaValuator(members=2, steps=100, k=5).fit(utility, values[:60])
  >>> meta.predict(train.subset(np.arange(60, 84))).values.shape
  (24,)
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import pandas as pd

from valuation import Dataset, Model, Utility, ValuationError, ValuationResult
from valuation.data import from_arrays
from valuation.results import package_versions

from .features import DEFAULT_GROUPS, column_scale, features_for_utility
from .model import fit_ensemble, predict_members
from .persistence import _Fitted, load_state, save_state

__all__ = ["TARGETS", "MetaValuator"]

TARGETS = ("standardized", "ranks")

@dataclasses.dataclass(frozen=True, eq=False)
class MetaValuator:
    """Predicts a target model's per-sample values for samples it has never seen.

    Configure, then `fit` (which returns a fitted copy; the object itself never changes),
    then `predict`. Every setting is keyword-only and recorded by `save`.

    Attributes:
      members: ensemble size.
      hidden: hidden widths of each member MLP.
      steps: full-batch AdamW steps per member.
      learning_rate, weight_decay: AdamW settings.
      holdout: share of the pool each member holds out for early stopping.
      targets: "standardized" (regress `(v - mean) / std`) or "ranks" (regress the values'
        quantiles in the pool; predictions are mapped back through the pool's quantiles).
        Either way predictions are in value units and never leave the range of the pool's
        values (a value no pool sample was given is extrapolation; e.g. Data-OOB's many
        values of exactly 1 stay tied instead of spreading above 1). The standard errors
        are not clipped.
      k: neighbours for the neighbourhood features.
      groups: feature groups (see `features.GROUPS`; default `features.DEFAULT_GROUPS`,
        every group but the costlier "dynamics"). Every group means the same for a training
        row and a new row (cross-fitted or out-of-bag), whatever the teacher.
      folds: folds `K` of the cross-fitted groups (K refits of the target, one batched call).
      epochs: recorded epochs of each fold's training run for the "dynamics" features
        (`valuation.dynamics.record` with the utility's `l2`; 10 full-batch Adam steps each).
      bags: bootstrap refits of the target for the "bagging" features.
      seed: the meta-model's seed (initialisation and held-out splits); same seed, same
        pool, same values => bit-identical meta-model.
    """

    members: int = 8
    hidden: tuple[int, ...] = (64, 64)
    steps: int = 1500
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    holdout: float = 0.2
    targets: str = "standardized"
    k: int = 10
    groups: tuple[str, ...] = DEFAULT_GROUPS
    folds: int = 5
    epochs: int = 30
    bags: int = 32
    seed: int = 0
    state: _Fitted | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "groups", tuple(self.groups))
        if self.targets not in TARGETS:
            raise ValuationError(
                f"targets={self.targets!r} is unknown; choose one of {TARGETS}"
            )
        if self.members < 2:
            raise ValuationError(
                f"members={self.members}: an ensemble needs at least 2 "
                "members to report a spread"
            )
        if not 0.0 < self.holdout < 1.0:
            raise ValuationError(
                f"holdout={self.holdout} must lie strictly between 0 and 1"
            )

    def config(self) -> dict[str, Any]:
        """The settings, JSON-ready."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "state"
        }

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the features the fitted meta-model reads."""
        return self._fitted.features.names

    @property
    def teacher(self) -> str:
        """The method whose values the meta-model learned (e.g. "knn_shapley")."""
        return self._fitted.teacher

    @property
    def classes(self) -> tuple:
        """The task's class labels, in code order."""
        return self._fitted.classes

    @property
    def _fitted(self) -> _Fitted:
        if self.state is None:
            raise ValuationError(
                "this MetaValuator is not fitted; call "
                "meta = meta.fit(utility, values) first"
            )
        return self.state

    # -- fitting -----------------------------------------------------------------------

    def fit(
        self,
        utility: Utility,
        values: ValuationResult,
    ) -> MetaValuator:
        """Fit the meta-model to the values of a pool of training samples.

        Args:
          utility: the target model with its training and validation sets (the `Utility`
            the teacher valued); neighbourhoods are measured against `utility.train`.
          values: the teacher's values of a pool, whose ids are training-set ids (any subset
            of `utility.train`, in any order, at least 10 samples).

        Returns:
          A fitted copy of this `MetaValuator`.
        """
        train = utility.train
        position = pd.Index(train.ids).get_indexer(np.asarray(values.ids))
        if (position < 0).any():
            missing = np.asarray(values.ids)[position < 0][:3].tolist()
            raise ValuationError(
                f"{(position < 0).sum()} valued ids are not in the utility's "
                f"training set (e.g. {missing}); value samples of that set"
            )
        if len(values) < 10:
            raise ValuationError(
                f"{len(values)} valued samples are too few to fit a "
                "meta-model; value at least 10"
            )
        v = np.asarray(values.values, np.float64)
        if not np.all(np.isfinite(v)):
            raise ValuationError("some values are NaN or infinite; drop those samples")
        k_features, k_fit = jax.random.split(jax.random.PRNGKey(self.seed))
        fmap = features_for_utility(
            utility,
            key=k_features,
            k=self.k,
            groups=self.groups,
            folds=self.folds,
            epochs=self.epochs,
            bags=self.bags,
        )
        feats = _finite(fmap(train.subset(position)), fmap.names)
        mean, std = column_scale(feats)
        t, t_mean, t_std = self._encode(v)
        ensemble = fit_ensemble(
            (feats - mean) / std,
            t,
            key=k_fit,
            members=self.members,
            hidden=self.hidden,
            steps=self.steps,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            holdout=self.holdout,
        )
        state = _Fitted(
            features=fmap,
            classes=tuple(train.classes),
            feature_mean=mean,
            feature_std=std,
            target_mean=t_mean,
            target_std=t_std,
            pool_values=np.sort(v),
            ensemble=ensemble,
            teacher=values.method,
            target=utility.describe(),
        )
        return dataclasses.replace(self, state=state)

    def _encode(self, v: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Targets for the regressor, with the mean and std that standardised them."""
        if self.targets == "ranks":
            v = (pd.Series(v).rank(method="average").to_numpy() - 0.5) / len(v)
        mean, std = float(v.mean()), float(v.std())
        std = std if std > 0 else 1.0
        return (v - mean) / std, mean, std

    def _decode(self, z: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Regressor outputs back to value units; with `clip`, inside the pool's range."""
        s = self._fitted
        u = s.target_mean + s.target_std * z
        if self.targets == "ranks":  # inside the pool's range by construction
            grid = (np.arange(len(s.pool_values)) + 0.5) / len(s.pool_values)
            u = np.interp(u, grid, s.pool_values)
        elif clip:
            u = np.clip(u, s.pool_values[0], s.pool_values[-1])
        return u

    # -- prediction --------------------------------------------------------------------

    def features(self, samples: Dataset, *, id_conflict: str = "error") -> np.ndarray:
        """Raw (unstandardised) features of `samples`, `(n, f)`, columns `feature_names`."""
        s = self._fitted
        return s.features(self._recode(samples), id_conflict=id_conflict)

    def predict(self, samples: Dataset, *, id_conflict: str = "error") -> ValuationResult:
        """Predicted values of `samples` for the target model, without retraining it.

        Args:
          samples: a `Dataset` with the training set's feature columns (matched by name, in
            any order; same scaling) and labels from its class list; ids travel to the
            result. A row whose content is a training row's is that training row, whatever
            its id.
          id_conflict: a row whose id is a training row's id but whose content differs is
            an error ("error", default) or a new row ("new").

        Returns:
          A `ValuationResult` (method `"meta_<teacher>"`): values = the ensemble mean mapped
          back to value units, stderr = the ensemble's standard deviation in the same units
          (an epistemic spread, not a Monte Carlo error), counts = number of members.

        Raises:
          ValuationError: not fitted, missing or extra feature columns, labels the task
            does not know, an id conflict (with `id_conflict="error"`).
        """
        start = time.perf_counter()
        values, stderr = self._from_features(self.features(samples, id_conflict=id_conflict))
        return self._result(values, stderr, samples.ids, start)

    def label_probabilities(self, samples: Dataset | pd.DataFrame) -> np.ndarray:
        """The target model's label distribution `p(c | x)` of `samples`, `(n, n_classes)`,
        columns in the task's class order (`FeatureMap.label_probabilities`; labels, if
        any, are ignored). `samples` as for `predict_unlabelled`."""
        return self._fitted.features.label_probabilities(self.as_unlabelled(samples))

    def predict_unlabelled(
        self, samples: Dataset | pd.DataFrame, *, id_conflict: str = "error"
    ) -> ValuationResult:
        """Predicted values of rows whose labels are unknown: the value each would have once
        labelled, in expectation over its label.

        The meta-model's features read the label (loss, p(label), margin, ...), so each row
        is valued under every candidate label `c`, giving `v(x, c)` with ensemble stderr
        `s(x, c)`, and the values are averaged under the target's label distribution
        `p(c | x)` (`label_probabilities`):

          value  = sum_c p(c | x) v(x, c)
          stderr = sqrt(sum_c p(c | x) [s(x, c)^2 + (v(x, c) - value)^2])

        the total variance of the row's value once labelled (law of total variance): the
        meta-model's uncertainty within a label plus the spread between labels.

        Args:
          samples: a `Dataset` (its labels are ignored) or a DataFrame of the training
            set's feature columns (matched by name, any order, same scaling; the index holds
            the ids).
          id_conflict: a row whose id is a training row's id but whose features differ is
            an error ("error", default) or a new row ("new").

        Returns:
          A `ValuationResult` like `predict`'s (method `"meta_<teacher>"`, counts = members),
          with `extra["unlabelled"] = True`.

        Raises:
          ValuationError: not fitted, missing or extra feature columns, NaN features, an id
            conflict (with `id_conflict="error"`).
        """
        s = self._fitted
        start = time.perf_counter()
        data = s.features.conform(self.as_unlabelled(samples))
        s.features.check_unlabelled_ids(data, id_conflict=id_conflict)
        probs = s.features.label_probabilities(data)
        probs = probs / probs.sum(1, keepdims=True)
        per_label = [
            self._from_features(s.features(
                data.replace(y=np.full(data.n, c, np.int32)), id_conflict="new"))
            for c in range(len(s.classes))
        ]
        v = np.stack([values for values, _ in per_label], axis=1)  # (n, k)
        se = np.stack([stderr for _, stderr in per_label], axis=1)
        values = (probs * v).sum(1)
        stderr = np.sqrt((probs * (se**2 + (v - values[:, None]) ** 2)).sum(1))
        result = self._result(values, stderr, data.ids, start)
        return dataclasses.replace(result, extra={**result.extra, "unlabelled": True})

    def _from_features(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw features `(n, f)` -> the ensemble's values and stderr in value units."""
        s = self._fitted
        feats = _finite(feats, s.features.names)
        z = np.asarray(
            predict_members(
                s.ensemble.params, (feats - s.feature_mean) / s.feature_std
            ),
            np.float64,
        )
        center, spread = z.mean(0), z.std(0, ddof=1)
        high, low = (self._decode(center + spread, clip=False),
                     self._decode(center - spread, clip=False))
        return self._decode(center), np.abs(high - low) / 2

    def _result(self, values: np.ndarray, stderr: np.ndarray, ids: np.ndarray,
                start: float) -> ValuationResult:
        s = self._fitted
        return ValuationResult(
            values=values,
            stderr=stderr,
            counts=np.full(len(ids), self.members),
            ids=ids,
            method=f"meta_{s.teacher}",
            params={"meta": self.config(), "teacher": s.teacher, "target": s.target},
            seed=self.seed,
            versions=package_versions(),
            extra={"seconds": time.perf_counter() - start,
                   "feature_names": list(s.features.names)},
        )

    def as_unlabelled(self, samples: Dataset | pd.DataFrame) -> Dataset:
        """`samples` (a `Dataset`, or a DataFrame of feature columns indexed by id) as a
        `Dataset` on the task's class list whose labels are placeholders (class 0)."""
        s = self._fitted
        if isinstance(samples, pd.DataFrame):
            return from_arrays(samples.to_numpy(), np.full(len(samples), s.classes[0]),
                               ids=samples.index.to_numpy(),
                               feature_names=[str(c) for c in samples.columns],
                               classes=s.classes)
        if not isinstance(samples, Dataset):
            raise ValuationError(
                f"expected a valuation Dataset or a pandas DataFrame of feature columns, "
                f"got {type(samples).__name__}"
            )
        return samples.replace(y=np.zeros(samples.n, np.int32), classes=s.classes)

    def _recode(self, samples: Dataset) -> Dataset:
        """`samples` with labels coded onto the task's class list."""
        s = self._fitted
        if not isinstance(samples, Dataset):
            raise ValuationError(
                f"expected a valuation Dataset, got {type(samples).__name__}; "
                "build one with valuation.load(x, y)"
            )
        if tuple(samples.classes) == s.classes:
            return samples
        code = {c: i for i, c in enumerate(s.classes)}
        labels = samples.labels.tolist()
        unknown = sorted({str(v) for v in labels if v not in code})
        if unknown:
            raise ValuationError(
                f"labels {unknown[:5]} are not classes of the task "
                f"{list(s.classes)[:10]}; drop those rows or fix the labels"
            )
        y = np.array([code[v] for v in labels], dtype=np.int32)
        return samples.replace(y=y, classes=s.classes)

    # -- persistence -------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the parameters to `path` (npz) and the configuration to `path + ".json"`.

        The JSON holds the settings, the feature names, the teacher method, the target
        model's description and the class list; the npz holds the ensemble, the target
        model's parameters, the reference pool and the standardisation statistics. Both are
        written atomically.
        """
        save_state(self._fitted, self.config(), path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: Model,
        *,
        feature_names: Sequence[str] | None = None,
    ) -> MetaValuator:
        """Read a meta-model written by `save`, for the same target model.

        Args:
          path: the npz path given to `save` (the JSON sits at `path + ".json"`).
          model: the target model (its functions are not saved); must be the one the
            meta-model was fitted for.
          feature_names: optionally, the feature names the caller expects.

        Raises:
          ValuationError: missing files, a different target model (name or parameter
            shapes), or a feature set that differs from the saved one.
        """
        config, state = load_state(path, model, feature_names=feature_names)
        return cls(**config, state=state)


def _finite(feats: np.ndarray, names: Sequence[str]) -> np.ndarray:
    bad = ~np.isfinite(feats).all(axis=0)
    if bad.any():
        raise ValuationError(
            f"features {[n for n, b in zip(names, bad) if b]} are NaN or "
            "infinite for some samples; check the inputs (NaN features, a "
            "diverged target model) or drop those feature groups"
        )
    return feats
