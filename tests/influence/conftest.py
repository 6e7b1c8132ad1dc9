"""Fixtures of the influence tests: an L2 logistic regression at its exact optimum."""

import numpy as np
import pytest
from influence_setup import newton, unbatch

import valuation as va


@pytest.fixture(scope="session")
def logreg(cancer):
    """(model, params at the exact optimum with l2=L2, train, valid) on breast cancer."""
    train, valid = cancer
    model = va.logistic_regression(2)
    return model, unbatch(newton(train, np.ones((1, train.n)))), train, valid
