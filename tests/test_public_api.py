"""The exported names, so that every change to the public API shows up in review."""

import inspect

import numpy as np
import pytest

import metalearner
import valuation as va

VALUATION = {
    "METHODS", "Dataset", "Model", "Utility", "ValuationError", "ValuationResult",
    "ValuationWarning", "align_classes", "dynamics", "enable_compile_cache", "fit",
    "fit_logistic_newton", "from_equinox", "influence",
    "linear_regression", "load", "load_bundled", "logistic_regression", "make_classification",
    "make_utility", "mlp", "regression_dataset", "run", "shapley", "value",
    "acquire",  # issue 15: active learning
    "Selection", "select",
}
METALEARNER = {
    "DEFAULT_GROUPS", "DataRater", "EnsembleFit", "FeatureMap", "GROUPS", "LearnedValues", "MODEL_AGNOSTIC", "MetaValuator",
    "bootstrap_refits", "features_for_utility", "fine_tune", "fit_ensemble", "fit_tasks", "fold_refits",
    "learn_values", "make_task", "predict_members", "predict_ranks", "row_hash",
    "Labelling", "acquire_batch",  # issue 15: active learning
}


def _exported(module):
    """Public names other than submodules (which appear as attributes once imported)."""
    return {n for n, v in vars(module).items()
            if not n.startswith("_") and not inspect.ismodule(v)} - {"annotations"}


def test_exported_names():
    families = {"dynamics", "influence", "shapley"}
    assert _exported(va) | families == VALUATION
    assert all(inspect.ismodule(getattr(va, f)) for f in families)
    assert _exported(metalearner) == METALEARNER


def test_every_family_is_reachable_through_value():
    # "rater" registers itself from metalearner (imported above), which valuation never imports
    assert set(va.METHODS) == {"tmc", "beta", "banzhaf", "loo", "oob", "knn", "influence",
                               "dynamics", "rater"}


@pytest.mark.parametrize("method, options", [("influence", {"solver": "exact"}),
                                             ("dynamics", {"signal": "aum", "epochs": 5})])
def test_influence_and_dynamics_through_value(blobs, method, options):
    train, valid = blobs
    noisy, flipped = train.flip_labels(0.1, seed=0)
    result = va.value(noisy, method=method, valid=valid, progress=False, seed=0, **options)
    np.testing.assert_array_equal(result.ids, noisy.ids)
    # Flipped labels in well-separated blobs sit at the bottom of either ranking.
    lowest = np.argsort(result.values)[: flipped.sum()]
    assert flipped[lowest].mean() >= 0.8
