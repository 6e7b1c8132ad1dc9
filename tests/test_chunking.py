"""The engine's chunk-size cost model (`valuation.chunking`) against XLA's own memory figures."""

import jax.numpy as jnp
import numpy as np
import pytest

import valuation as va
from valuation import chunking


def _temp_bytes(utility, chunk):
    """XLA's temporary buffers of the compiled scoring program for `chunk` models."""
    weights = jnp.ones((chunk, utility.n), jnp.float32)
    keys = jnp.zeros((chunk, 2), jnp.uint32)
    compiled = utility._score.lower(utility._data, weights, keys).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def _data(n, d, k):
    if k:
        data = va.make_classification(n + 200, d, n_classes=k, seed=0)
    else:
        x = np.random.default_rng(0).normal(size=(n + 200, d))
        data = va.load(x, x[:, 0] + 0.5 * x[:, 1] + 0.25, task="regression")
    return data.split(n / (n + 200), 200 / (n + 200), seed=0)


@pytest.mark.parametrize("k, model, solver", [
    (2, lambda k: va.logistic_regression(k), "pcg"),
    (3, lambda k: va.logistic_regression(k), "pcg"),
    (0, lambda k: va.linear_regression(), "closed_form"),
    (2, lambda k: va.mlp(k, (16,)), "warm"),
])
def test_memory_model_bounds_the_compiled_working_set(k, model, solver):
    train, valid = _data(2000, 8, k)
    # "warm" trains `warm_slots(chunk)` models at a time (other solvers: the called batch)
    small, large = (va.make_utility(model(k), train, valid, solver=solver,
                                    chunk=c * chunking.WARM_QUEUE) for c in (4, 12))
    measured = (_temp_bytes(large, 12) - _temp_bytes(small, 4)) / 8
    predicted = chunking.bytes_per_model(small.model, train, valid, solver)
    # An upper bound, and not a loose one: a model 3x too high would cut chunks 3x.
    assert measured <= predicted <= 3 * measured, (measured, predicted)


def test_warm_models_queued_beyond_the_chunk_cost_little_memory():
    """"warm" trains `warm_slots(chunk)` models at a time; the others of a call wait in a
    queue, which holds their weights and results only."""
    train, valid = _data(2000, 8, 2)
    utility = va.make_utility(va.mlp(2, (16,)), train, valid, chunk=4 * chunking.WARM_QUEUE)
    queued = (_temp_bytes(utility, 32) - _temp_bytes(utility, 4)) / 28
    predicted = chunking.bytes_per_model(utility.model, train, valid, "warm")
    assert queued < 0.05 * predicted, (queued, predicted)


def test_time_model_picks_128_for_convergence_solvers_and_the_cap_otherwise():
    assert chunking.time_optimal("pcg") == chunking.time_optimal("warm") == 128
    for solver in ("newton", "closed_form", "gd"):  # no stragglers: bigger is cheaper
        assert chunking.time_optimal(solver) == max(chunking.CANDIDATES)


def test_the_memory_budget_lowers_the_chunk_and_an_explicit_chunk_wins(cancer):
    train, valid = cancer
    model = va.logistic_regression(2)
    per_model = chunking.bytes_per_model(model, train, valid, "pcg")
    assert va.make_utility(model, train, valid).chunk == 128
    assert va.make_utility(model, train, valid, memory_budget=10.5 * per_model).chunk == 10
    assert va.make_utility(model, train, valid, memory_budget=1.0).chunk == 1
    assert va.make_utility(model, train, valid, chunk=7, memory_budget=1.0).chunk == 7


def test_warm_chunk_keeps_its_working_set_within_the_cache_bound(cancer):
    train, valid = cancer
    model = va.mlp(2, (64,))
    per_model = chunking.bytes_per_model(model, train, valid, "warm")
    chunk = va.make_utility(model, train, valid).chunk
    at_a_time = chunking.warm_slots(chunk)
    fits = int(chunking.CACHE_WORKING_SET["warm"] // per_model)
    assert 1 < at_a_time <= fits < 2 * at_a_time < 256  # a power of two
    assert at_a_time & (at_a_time - 1) == 0
    assert chunk == at_a_time * chunking.WARM_QUEUE  # callers batch by the chunk: queue full
    small = va.make_utility(model, train, valid, memory_budget=2.5 * per_model).chunk
    assert chunking.warm_slots(small) == 2


def test_pcg_chunk_keeps_its_working_set_within_the_cache_bound_on_cpu():
    """Many rows: the time model's 128 models would not fit the caches; the chunk is the
    largest power of two whose working set does (few rows: the time model's 128)."""
    train, valid = _data(10000, 20, 2)
    model = va.logistic_regression(2)
    per_model = chunking.bytes_per_model(model, train, valid, "pcg")
    chunk = va.make_utility(model, train, valid).chunk
    assert chunk * per_model <= chunking.CACHE_WORKING_SET["pcg"] < 2 * chunk * per_model
    assert chunk & (chunk - 1) == 0 and 8 <= chunk < 128
