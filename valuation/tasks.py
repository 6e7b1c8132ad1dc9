"""Benchmark tasks: bundled or synthetic data, split, standardised, with flipped labels.

Where it sits: the inputs of every benchmark. A task is built offline and deterministically
from its name, noise rate and seed: the same arguments give the same rows, splits and flipped
labels on every machine. Splits are stratified 60 / 20 / 20 into train (valued, with label
noise), valid (the utility's validation set) and test (held out for removal curves); features
are standardised with the training statistics; labels are flipped in train only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from valuation import Dataset, ValuationError, load_bundled, make_classification

__all__ = ["TASKS", "Task", "make_task"]

# Synthetic tasks by name -> rows: Gaussian clusters, 3 classes, 20 features of which 10 are
# informative, moderate separation (synthetic_3k: 2,004 training rows after the 60 % split).
# Bundled tasks come from `load_bundled`. Tasks in `_CYCLIC` flip labels c -> c + 1 mod k.
_SYNTHETIC = {"synthetic_1k": 1_000, "synthetic_3k": 3_340, "synthetic_10k": 10_000,
              "synthetic_100k": 100_000, "synthetic_1k_cyclic": 1_000}
_CYCLIC = ("synthetic_1k_cyclic",)
TASKS = ("breast_cancer", "wine", "digits", *_SYNTHETIC)


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """One benchmark task.

    Attributes:
      name: task name (see `TASKS`).
      train: the training set to value (labels partly flipped).
      valid: validation set of the utility.
      test: held-out test set for removal / addition curves.
      noisy: `(train.n,)` boolean mask of the flipped training labels.
      noise: the share of training labels flipped.
      seed: seed of the split and of the flips.
      cyclic: flips send class c to c + 1 mod k (structured noise) instead of a uniformly
        drawn other class.
    """

    name: str
    train: Dataset
    valid: Dataset
    test: Dataset
    noisy: np.ndarray
    noise: float
    seed: int
    cyclic: bool = False

    def flip(self, data: Dataset, *, seed: int) -> tuple[Dataset, np.ndarray]:
        """`data` with this task's label noise (rate and kind): `(noisy, flipped (n,))`."""
        return (_flip_cyclic if self.cyclic else Dataset.flip_labels)(data, self.noise,
                                                                     seed=seed)

    def describe(self) -> dict:
        """JSON-ready summary for result tables."""
        return {"task": self.name, "n_train": self.train.n, "n_valid": self.valid.n,
                "n_test": self.test.n, "d": self.train.d, "n_classes": self.train.n_classes,
                "noise": self.noise, "cyclic": self.cyclic, "n_noisy": int(self.noisy.sum()),
                "seed": self.seed}


def _flip_cyclic(data: Dataset, fraction: float, *, seed: int) -> tuple[Dataset, np.ndarray]:
    """Flip a seeded `fraction` of the labels from class c to c + 1 mod k."""
    if not 0.0 <= fraction <= 1.0:
        raise ValuationError(f"flip fraction {fraction} must lie in [0, 1]")
    chosen = np.random.default_rng(seed).choice(data.n, size=round(fraction * data.n),
                                                replace=False)
    y = data.y.copy()
    y[chosen] = (y[chosen] + 1) % data.n_classes
    flipped = np.zeros(data.n, dtype=bool)
    flipped[chosen] = True
    return data.replace(y=y), flipped


def _source(name: str, seed: int) -> Dataset:
    if name in _SYNTHETIC:
        return make_classification(_SYNTHETIC[name], 20, n_classes=3, n_informative=10,
                                   separation=2.5, seed=seed)
    if name not in TASKS:
        raise ValuationError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return load_bundled(name)


def make_task(name: str, *, noise: float = 0.1, seed: int = 0) -> Task:
    """Build a task deterministically from its name, noise rate and seed.

    The noise kind comes with the name: uniform flips, or c -> c + 1 on `_CYCLIC` tasks.

    Example:
      >>> task = make_task("wine", noise=0.1, seed=0)
      >>> task.train.n, int(task.noisy.sum())
      (107, 11)
    """
    data = _source(name, seed)
    train, valid, test = data.split(0.6, 0.2, 0.2, seed=seed)
    train, (mean, std) = train.standardize()
    valid, _ = valid.standardize(mean, std)
    test, _ = test.standardize(mean, std)
    task = Task(name=name, train=train, valid=valid, test=test,
                noisy=np.zeros(train.n, dtype=bool), noise=noise, seed=seed,
                cyclic=name in _CYCLIC)
    train, noisy = task.flip(train, seed=seed)
    return dataclasses.replace(task, train=train, noisy=noisy)
