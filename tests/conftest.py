"""Shared fixtures: small, deterministic data sets (no downloads)."""

import os

import jax
import numpy as np
import pytest
from split_helpers import standardized_split

import valuation as va

# Tests leave the user's cache folder alone: `value(...)` would switch JAX's persistent
# compilation cache on there (set VALUATE_COMPILE_CACHE to a folder to use one).
os.environ.setdefault("VALUATE_COMPILE_CACHE", "off")


@pytest.fixture(scope="session")
def cancer():
    """breast_cancer split 70/30, standardised: (train, valid)."""
    return standardized_split(va.load_bundled("breast_cancer"))


@pytest.fixture(scope="session")
def blobs():
    """A small, well-separated 2-class synthetic set split 60/40: (train, valid)."""
    return standardized_split(va.make_classification(200, 5, separation=3.0, seed=1),
                              fractions=(0.6, 0.4))


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
