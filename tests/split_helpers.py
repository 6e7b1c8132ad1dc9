"""Data shared by the tests (a module of its own: `conftest` is not importable
unambiguously when several folders have one)."""

import numpy as np
import pandas as pd


def small_table(n=40, seed=0):
    """A 2-class table with string ids in a fixed unsorted order and three numeric features:
    columns rid, f0, f1, f2, target."""
    rng = np.random.default_rng(seed)
    y = np.array(["yes", "no"])[np.arange(n) % 2]
    x = rng.normal(size=(n, 3)) + 1.5 * (y == "yes")[:, None]
    ids = [f"row{i:03d}" for i in rng.permutation(n)]
    return pd.DataFrame({"rid": ids, "f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2], "target": y})


def standardized_split(data, seed=0, fractions=(0.7, 0.3)):
    """Stratified split, standardised with the first split's statistics."""
    parts = data.split(*fractions, seed=seed)
    first, (mean, std) = parts[0].standardize()
    return (first,) + tuple(p.standardize(mean, std)[0] for p in parts[1:])
