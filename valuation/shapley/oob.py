"""Data-OOB: each sample valued by how well bagged models that never saw it predict it.

Where it sits: an `Estimator` for `runner.run`, on the engine's batched training
(`Utility.fit`): a draw is one bootstrap resample of the training set, passed as fractional
weights (how often each sample was drawn), so B bagged models train in one compiled batch.
Needs no validation set.

Value of sample i (Kwon & Zou, "Data-OOB: Out-of-bag Estimate as a Simple and Efficient Data
Value", ICML 2023, eq. 3): the mean, over bootstrap models for which i is out-of-bag (weight
0), of the score `T(y_i, f(x_i))`: by default correctness `1[argmax f(x_i) = y_i]` (ties
shared, as in `utility.accuracy`), the paper's choice for classification; or the predicted
probability of the sample's own label, a finer-grained score. A mislabelled sample is
predicted as its true class by models that did not fit it, so it scores low. The standard
error comes from the spread over those models; the count is the number of them (about
`0.368 B`). For a regression target the score is minus the squared error of the out-of-bag
prediction (`score` does not apply).

Memory (bytes; n training rows, d features, m = 1 output for two classes else k, c = the
utility's chunk of models): the data on the device once, `4 n d` (the engine's own copy,
`Utility.train_on_device`, shared by every update); the running moments,
`24 n`; per chunk, the bootstrap weights `4 c n` and their out-of-bag mask `c n` on the
host, the solver's working set about `48 m c n` (logits, probabilities, gradients: `glm`),
the scores `8 c n` (device and host); with the engine's `(n, (d+1)^2)` products on top when
they fit its 512 MB budget (`utility._OUTER_BYTES`). Peak ~ `4 n d + 24 n + (13 + 48 m) c n`
plus the runtime (~0.5 GB): at n = 800k, d = 20, c = 11, about 0.6 GB for the run itself.
Time per chunk: the draws (`samplers.bootstrap_counts`, ~28 ms per model at n = 800k), the
batched fit, one compiled scoring pass over all n rows, and the host's moment update.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import estimate as est
from ..errors import ValuationError
from ..runner import Estimator
from ..utility import _predict
from .samplers import bootstrap_counts, training_keys

__all__ = ["SCORES", "data_oob"]

SCORES = ("accuracy", "probability")


class OOBState(NamedTuple):
    """Moments of each sample's out-of-bag scores."""

    moments: est.Moments


def _sample_scores(probs: jax.Array, y: jax.Array, score: str) -> jax.Array:
    """Per-model, per-sample scores `(B, n)` from probabilities `(B, n, k)`."""
    own = jnp.take_along_axis(probs, y[None, :, None], axis=-1)[..., 0]
    if score == "probability":
        return own
    top = probs >= probs.max(axis=-1, keepdims=True)
    return (own >= probs.max(axis=-1)) / top.sum(axis=-1)


@functools.partial(jax.jit, static_argnames=("model", "task", "score"))
def _model_scores(model, params, x: jax.Array, y: jax.Array, *, task: str,
                  score: str) -> jax.Array:
    """Scores `(B, n)` of B batched models on every training sample, one compiled program:
    `_sample_scores` of their probabilities, or for a regression target minus the squared
    error of their predictions."""
    outputs = _predict(model, params, x, task)
    if task == "regression":
        return -(outputs - y[None, :]) ** 2
    return _sample_scores(outputs, y, score)


def data_oob(*, score: str = "accuracy", batch: int = 64) -> Estimator:
    """Data-OOB values (Kwon & Zou, ICML 2023) with the utility's target model.

    Args:
      score: "accuracy" (the paper's correctness) or "probability" (of the sample's label).
      batch: bootstrap models per update (trained in chunks of the utility's size).

    Returns:
      An `Estimator` for a `utility.Utility` (it uses `fit`, `predict_proba` and `train`);
      values in [0, 1], stderr and counts (out-of-bag models per sample) `(n,)`.

    Example:
      >>> data_oob(score="probability").params
      {'score': 'probability'}
    """
    if score not in SCORES:
        raise ValuationError(f"unknown Data-OOB score {score!r}; choose one of {SCORES}")
    if int(batch) < 1:
        raise ValuationError(f"batch must be a positive int, got {batch!r}")

    def init(n):
        return OOBState(est.moments(n))

    def update(state, utility, keys, limit):
        if not hasattr(utility, "fit"):
            raise ValuationError("Data-OOB trains bagged models itself: pass a Utility from "
                                 "make_utility, not a plain game function")
        n = state.moments.count.shape[0]
        x, y = utility.train_on_device  # on the device once per utility, not per update
        task = getattr(utility, "task", "classification")
        moments = state.moments
        take = int(min(keys.shape[0], limit.draws, limit.evaluations))  # one model per draw
        # One chunk of resamples at a time (see the module docstring for the memory). A chunk
        # is trained whole (one compiled shape); its rows past `take` are padding.
        for start in range(0, take, utility.chunk):
            chunk_keys = keys[start:start + utility.chunk]
            rows = min(utility.chunk, take - start)
            w = bootstrap_counts(chunk_keys, n)
            params = utility.fit(w, key=training_keys(chunk_keys))
            scores = _model_scores(utility.model, params, x, y, task=task, score=score)
            moments = est.update(moments, np.asarray(scores)[:rows], (w == 0)[:rows])
        return OOBState(moments), take, take

    def estimate(state):
        return est.estimate(state.moments)

    # version 2: bootstrap counts drawn on the host (`samplers.bootstrap_counts`); version-1
    # checkpoints hold other draws for the same key and are refused (`runner`)
    return Estimator(init, update, estimate, "data_oob", {"score": score}, int(batch),
                     version=2)
