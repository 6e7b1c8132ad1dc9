"""Data sets that need no download: two bundled tables and a seeded synthetic generator.

Where it sits: a source of `Dataset`s for the demo, tests and benchmarks. The breast-cancer
(569 x 30, 2 classes) and wine (178 x 13, 3 classes) tables ship inside the package (UCI data,
as distributed with scikit-learn); digits comes from scikit-learn when it is installed.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from .data import Dataset, from_arrays, from_dataframe, regression_dataset
from .errors import ValuationError

__all__ = ["BUNDLED", "load_bundled", "make_classification"]

BUNDLED = ("breast_cancer", "wine", "digits", "diabetes")


def load_bundled(name: str = "breast_cancer") -> Dataset:
    """A bundled data set by name: "breast_cancer", "wine", "digits" (needs scikit-learn) or
    "diabetes" (scikit-learn's, 442 x 10, a regression target).

    Ids are stable strings ("br0000", ...) so that results join back across runs.
    """
    if name == "diabetes":
        try:
            from sklearn.datasets import load_diabetes
        except ImportError:
            raise ValuationError(
                "the diabetes data set comes from scikit-learn, which is not installed; "
                "pip install 'valuate[bench]'"
            ) from None
        b = load_diabetes()
        return regression_dataset(b.data, b.target,
                                  ids=np.array([f"db{i:03d}" for i in range(len(b.target))]),
                                  feature_names=list(b.feature_names))
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ValuationError(
                "the digits data set comes from scikit-learn, which is not installed; "
                "pip install 'valuate[bench]'"
            ) from None
        b = load_digits()
        return from_arrays(b.data, b.target, ids=np.array([f"di{i:04d}" for i in range(len(b.target))]),
                           feature_names=[f"px{j}" for j in range(b.data.shape[1])])
    if name not in BUNDLED:
        raise ValuationError(f"unknown bundled data set {name!r}; choose one of {BUNDLED}")
    with resources.files("valuation").joinpath(f"datasets/{name}.csv.gz").open("rb") as f:
        df = pd.read_csv(f, compression="gzip")
    return from_dataframe(df, label="target", id_column="sample_id")


def make_classification(
    n: int = 1000,
    d: int = 10,
    *,
    n_classes: int = 2,
    n_informative: int | None = None,
    separation: float = 2.0,
    seed: int,
) -> Dataset:
    """Gaussian class clusters: each class is a unit-variance blob around a random centre.

    Args:
      n: number of samples (classes balanced up to rounding).
      d: number of features.
      n_classes: number of classes.
      n_informative: features on which class centres differ (default all `d`).
      separation: distance scale between class centres, in standard deviations; 2 is
        moderately hard, 4 nearly separable.
      seed: seed of the generator.
    """
    if n < 2 * n_classes or d < 1 or n_classes < 2:
        raise ValuationError("make_classification needs n >= 2 * n_classes, d >= 1, n_classes >= 2")
    rng = np.random.default_rng(seed)
    k = d if n_informative is None else min(n_informative, d)
    centres = np.zeros((n_classes, d))
    directions = rng.normal(size=(n_classes, k))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    centres[:, :k] = separation * directions
    y = rng.permutation(np.arange(n) % n_classes)
    x = centres[y] + rng.normal(size=(n, d))
    return from_arrays(x, y, ids=np.array([f"sy{i:06d}" for i in range(n)]))
