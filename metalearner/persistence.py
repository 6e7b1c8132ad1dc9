"""Saving and loading a fitted `MetaValuator`: an npz of arrays plus a JSON sidecar.

Where it sits: behind `MetaValuator.save` and `MetaValuator.load` (`predictor.py`). `_Fitted`
is the fitted state both write and read; `load_state` refuses a different target model or a
different feature set rather than predicting nonsense.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from valuation import Model, ValuationError
from valuation.results import atomic_write, package_versions, write_json

from .features import FeatureMap
from .model import EnsembleFit

__all__ = ["load_state", "save_state"]

_FORMAT = "valuate.metavaluator/2"  # /2: cross-fitted fold models, columns by name


@dataclasses.dataclass(frozen=True, eq=False)
class _Fitted:
    """What `MetaValuator.fit` learns (all arrays numpy, all config JSON-ready)."""

    features: FeatureMap
    classes: tuple
    feature_mean: np.ndarray  # (f,)
    feature_std: np.ndarray  # (f,)
    target_mean: float
    target_std: float
    pool_values: np.ndarray  # (n_pool,) sorted: the quantile map back from rank targets
    ensemble: EnsembleFit
    teacher: str
    target: dict  # the target model's and training's description (Utility.describe())


def save_state(s: _Fitted, config: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the fitted state `s` and the settings `config` (see `MetaValuator.save`)."""
    path = os.fspath(path)
    arrays = {
        "feature_mean": s.feature_mean,
        "feature_std": s.feature_std,
        "pool_values": s.pool_values,
    }
    arrays.update(
        {f"ensemble/{k}": v for k, v in _flatten(s.ensemble.params).items()}
    )
    trees = {
        "folds": s.features.folds,
        "checkpoints": s.features.checkpoints,
        "bagged": s.features.bagged,
    }
    for prefix, tree in trees.items():
        for i, leaf in enumerate(jax.tree_util.tree_leaves(tree)):  # None has no leaves
            arrays[f"{prefix}/{i}"] = np.asarray(leaf)
    for name, a in s.features.arrays.items():
        a = np.asarray(a)
        arrays[f"features/{name}"] = a.astype(str) if a.dtype == object else a
    meta = {
        "format": _FORMAT,
        "config": config,
        "feature_names": list(s.features.names),
        "columns": list(s.features.columns),
        "teacher": s.teacher,
        "target": s.target,
        "target_model": s.features.model.name,
        "classes": list(s.classes),
        "n_classes": s.features.n_classes,
        "target_mean": s.target_mean,
        "target_std": s.target_std,
        "best_step": s.ensemble.best_step.tolist(),
        "holdout_loss": s.ensemble.holdout_loss.tolist(),
        "versions": package_versions(),
    }

    def write_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write_npz)
    write_json(path + ".json", meta)


def load_state(
    path: str | os.PathLike,
    model: Model,
    *,
    feature_names: Sequence[str] | None = None,
) -> tuple[dict[str, Any], _Fitted]:
    """The settings and fitted state written by `save_state` (see `MetaValuator.load`)."""
    path = os.fspath(path)
    if not os.path.exists(path) or not os.path.exists(path + ".json"):
        raise ValuationError(
            f"{path!r} or its sidecar {path + '.json'!r} is missing; "
            "pass the path given to MetaValuator.save"
        )
    with open(path + ".json") as f:
        meta = json.load(f)
    if meta.get("format") != _FORMAT:
        raise ValuationError(
            f"{path!r} is not a MetaValuator saved in this version's format ({_FORMAT}; "
            f"the file says {meta.get('format')!r}); fit and save the meta-model again"
        )
    if model.name != meta["target_model"]:
        raise ValuationError(
            f"this meta-model predicts values for target model {meta['target_model']!r}, "
            f"not {model.name!r}; values differ between target models: load it with the "
            "model it was fitted for, or fit a new meta-model for this one"
        )
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    config = dict(meta["config"])
    config["hidden"], config["groups"] = (
        tuple(config["hidden"]),
        tuple(config["groups"]),
    )
    feats = {
        k.split("/", 1)[1]: v
        for k, v in arrays.items()
        if k.startswith("features/")
    }
    example = np.zeros((1, feats["ref_x"].shape[1]), np.float32)
    template = model.init(jax.random.PRNGKey(0), example)
    leaves, treedef = jax.tree_util.tree_flatten(template)
    stacked = {}  # params with leading axes: (K,) folds, (K, epochs) runs, (B,) refits
    for prefix, group, lead in (
        ("folds", None, 1), ("checkpoints", "dynamics", 2), ("bagged", "bagging", 1)
    ):
        if f"{prefix}/0" not in arrays:
            if group is None or group in config["groups"]:
                raise ValuationError(
                    f"{path!r} holds no {prefix} parameters; the file is incomplete: "
                    "refit and save again"
                )
            stacked[prefix] = None
            continue
        saved_leaves = [arrays.get(f"{prefix}/{i}") for i in range(len(leaves))]
        if f"{prefix}/{len(leaves)}" in arrays or any(
            a is None or a.shape[lead:] != np.shape(b)
            for a, b in zip(saved_leaves, leaves)
        ):
            raise ValuationError(
                f"the saved {prefix} parameters do not fit {model.name!r}; load "
                "with the model the meta-model was fitted for"
            )
        stacked[prefix] = jax.tree_util.tree_unflatten(treedef, saved_leaves)
    fmap = FeatureMap(
        model=model,
        folds=stacked["folds"],
        arrays=feats,
        checkpoints=stacked["checkpoints"],
        bagged=stacked["bagged"],
        n_classes=int(meta["n_classes"]),
        k=int(config["k"]),
        groups=config["groups"],
        columns=tuple(meta["columns"]),
    )
    names = list(fmap.names)
    expected = (
        list(feature_names) if feature_names is not None else meta["feature_names"]
    )
    if names != meta["feature_names"] or expected != meta["feature_names"]:
        raise ValuationError(
            f"feature mismatch: the meta-model was fitted on features {meta['feature_names']} "
            f"but {'the caller expects' if feature_names is not None else 'this version computes'} "
            f"{expected if feature_names is not None else names}; refit the meta-model with "
            "the current features"
        )
    ensemble = EnsembleFit(
        params=_unflatten(
            {
                k.split("/", 1)[1]: v
                for k, v in arrays.items()
                if k.startswith("ensemble/")
            }
        ),
        best_step=np.asarray(meta["best_step"]),
        holdout_loss=np.asarray(meta["holdout_loss"]),
    )
    if ensemble.params["dense_0"]["w"].shape[1] != len(names):
        raise ValuationError(
            "the saved ensemble does not read the saved features; "
            "the file is corrupt: refit and save again"
        )
    state = _Fitted(
        features=fmap,
        classes=tuple(meta["classes"]),
        feature_mean=arrays["feature_mean"],
        feature_std=arrays["feature_std"],
        target_mean=float(meta["target_mean"]),
        target_std=float(meta["target_std"]),
        pool_values=arrays["pool_values"],
        ensemble=ensemble,
        teacher=meta["teacher"],
        target=meta["target"],
    )
    return config, state


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for name, v in flat.items():
        *parents, leaf = name.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out
