"""Dynamics signals as `ValuationResult`s: the family's entry point.

Where it sits: the top of the dynamics family. `dynamics_values` trains the target model once
(per seed), records the trajectories and returns one signal as values, higher = more valuable,
with the standard error over seeds; `signal_values` turns an existing `Trace` into any signal
without retraining; `aum_threshold_values` runs the threshold-sample experiment of AUM; `dynamics_from_utility`
has the signature of a `valuation.api.METHODS` entry.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax

from ..data import Dataset
from ..errors import ValuationError
from ..models import Model
from ..results import ValuationResult
from . import signals as sg
from .record import Trace, record, train_checkpoints, trajectory, with_extra_class

__all__ = ["SIGNAL_NAMES", "aum_threshold_values", "dynamics_from_utility", "dynamics_values",
           "signal_values"]

SIGNAL_NAMES = tuple(sg.SIGNALS) + ("aum_threshold",)
"""Every `signal` that `dynamics_values` accepts."""


def _key_and_seed(key: Any) -> tuple[jax.Array, int | None]:
    if isinstance(key, (int, np.integer)):
        return jax.random.PRNGKey(int(key)), int(key)
    key = jax.numpy.asarray(key)
    if key.shape != (2,):
        raise ValuationError(f"key must be a jax.random.PRNGKey or an int seed, got shape "
                             f"{key.shape}")
    return key, None


def _check_signal(signal: str, regression: bool) -> None:
    """A class-only signal on a regression target -> one error naming the ones that work."""
    if regression and signal in sg.CLASS_SIGNALS:
        works = [s for s in SIGNAL_NAMES if s not in sg.CLASS_SIGNALS]
        raise ValuationError(f"dynamics signal {signal!r} reads class probabilities or "
                             f"margins, which a regression target has not; use one of "
                             f"{works} (default 'loss')")


def _run(checkpoints: Any, r: int) -> Any:
    """Run `r` of checkpoints with a leading run axis, keeping that axis (length 1)."""
    return jax.tree_util.tree_map(lambda a: a[r:r + 1], checkpoints)


def signal_values(
    trace: Trace,
    ids: Any,
    signal: str,
    *,
    early_epoch: int | None = None,
    params: dict | None = None,
    seed: int | None = None,
) -> ValuationResult:
    """One signal of a recorded `Trace` as a `ValuationResult` (higher = more valuable).

    The value is the signal's mean over the trace's seeds with the library's sign (see
    `signals.SIGNALS`: e.g. minus the forgetting count, minus EL2N, AUM as is); `stderr` is the
    standard error of that mean over seeds (NaN with a single seed) and `counts` the number of
    seeds.

    Args:
      trace: `(seeds, epochs, n)` trace from `record` or `trajectory`.
      ids: `(n,)` sample ids.
      signal: a name in `signals.SIGNALS`.
      early_epoch: 1-based epoch of EL2N / GraNd (default `signals.default_early_epoch`).
      params, seed: provenance stored in the result.
    """
    if signal not in sg.SIGNALS:
        raise ValuationError(f"unknown dynamics signal {signal!r}; choose one of "
                             f"{sorted(sg.SIGNALS)}")
    seeds, epochs, n = trace.shape
    _check_signal(signal, bool(n) and bool(np.isnan(trace.prob).all()))  # regression trace
    if signal == "alignment" and np.isnan(trace.alignment).all():
        raise ValuationError("the alignment signal needs a validation set; pass valid= when "
                             "recording")
    early = sg.default_early_epoch(epochs) if early_epoch is None else int(early_epoch)
    per_seed = np.asarray(sg.SIGNALS[signal][0](trace, early), np.float64)  # (seeds, n)
    stderr = (np.std(per_seed, axis=0, ddof=1) / np.sqrt(seeds) if seeds > 1
              else np.full(n, np.nan))
    params = {**(params or {}), "signal": signal, "epochs": epochs, "seeds": seeds}
    if signal in ("el2n", "grand"):
        params["early_epoch"] = early
    return ValuationResult(values=per_seed.mean(axis=0), stderr=stderr,
                           counts=np.full(n, seeds), ids=np.asarray(ids),
                           method=f"dynamics_{signal}", params=params, seed=seed,
                           extra={"description": sg.SIGNALS[signal][1]})


def dynamics_values(
    model: Model,
    train: Dataset,
    valid: Dataset | None = None,
    *,
    signal: str | None = None,
    key: Any,
    epochs: int = 30,
    steps_per_epoch: int | None = None,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    l2: float = 1.0,
    seeds: int = 3,
    early_epoch: int | None = None,
) -> ValuationResult:
    """Value every training sample by a learning-dynamics signal of one training run per seed.

    Args:
      model: the target model (needs `embed`).
      train: training set; valid: validation set (needed by `signal="alignment"`).
      signal: one of `SIGNAL_NAMES`: "confidence", "variability", "correctness",
        "forgetting", "aum", "el2n", "grand", "alignment", "loss", "loss_variability" (see
        `signals.SIGNALS`), or "aum_threshold" (`aum_threshold_values`; `seeds` and
        `early_epoch` unused). Default "aum", or "loss" for a regression target, which takes
        "el2n" (`-|residual|`), "grand", "alignment", "loss" and "loss_variability" only
        (`signals.CLASS_SIGNALS` need classes).
      key: a `jax.random.PRNGKey` or an int seed.
      epochs, steps_per_epoch, batch_size, optimizer, l2: training schedule (see `record`).
      seeds: independent training runs (one `vmap`); the values are their mean and `stderr`
        the standard error over them.
      early_epoch: 1-based epoch for "el2n" and "grand".

    Returns:
      A `ValuationResult` with method `f"dynamics_{signal}"`, ids in `train`'s order.

    Example:
      >>> import valuation as va
      >>> data = va.make_classification(60, 3, separation=3.0, seed=0)
      >>> r = dynamics_values(va.logistic_regression(2), data, signal="forgetting", key=0,
      ...                     epochs=6, seeds=2)
      >>> r.method, len(r)
      ('dynamics_forgetting', 60)
    """
    if signal is None:
        signal = "loss" if train.task == "regression" else "aum"
    if signal not in SIGNAL_NAMES:
        raise ValuationError(f"unknown dynamics signal {signal!r}; choose one of "
                             f"{list(SIGNAL_NAMES)}")
    _check_signal(signal, train.task == "regression")
    if signal == "alignment" and valid is None:
        raise ValuationError("signal='alignment' scores gradients against a validation set; "
                             "pass valid=")
    key, seed = _key_and_seed(key)
    schedule = {"epochs": epochs, "steps_per_epoch": steps_per_epoch,
                "batch_size": batch_size, "optimizer": optimizer, "l2": l2}
    if signal == "aum_threshold":
        return aum_threshold_values(model, train, key=key, seed=seed, **schedule)
    _, trace = record(model, train, key=key, valid=valid, seeds=seeds, **schedule)
    params = {"model": model.name, "steps_per_epoch": steps_per_epoch,
              "batch_size": batch_size, "l2": l2}
    return signal_values(trace, train.ids, signal, early_epoch=early_epoch, params=params,
                         seed=seed)


def dynamics_from_utility(
    utility: Any,
    *,
    seed: int,
    stop: Any = None,
    progress: bool = False,
    checkpoint: Any = None,
    checkpoint_every: int = 1,
    signal: str | None = None,
    epochs: int = 30,
    steps_per_epoch: int | None = None,
    seeds: int = 3,
    early_epoch: int | None = None,
) -> ValuationResult:
    """`dynamics_values` for a `utility.Utility`, as a `valuation.api.METHODS` entry.

    Trains `utility.model` on `utility.train` with the utility's optimizer, `l2` and
    `batch_size`; "alignment" uses `utility.valid` (which `api.value` sets to the training
    set itself when no validation set is passed: pass one for a meaningful alignment). One training run per seed, no Monte Carlo
    sampling: `stop`, `progress`, `checkpoint` and `checkpoint_every` are accepted and unused.
    Register it with `METHODS["dynamics"] = Method(dynamics_from_utility, needs_valid=False)`.
    """
    del stop, progress, checkpoint, checkpoint_every
    result = dynamics_values(utility.model, utility.train, utility.valid, signal=signal,
                             key=seed, epochs=epochs, steps_per_epoch=steps_per_epoch,
                             batch_size=utility.batch_size, optimizer=utility.optimizer,
                             l2=utility.l2, seeds=seeds, early_epoch=early_epoch)
    return dataclasses.replace(result, params={**result.params,
                                               "utility": utility.describe()})


def aum_threshold_values(
    model: Model,
    train: Dataset,
    *,
    key: jax.Array,
    epochs: int = 30,
    steps_per_epoch: int | None = None,
    batch_size: int | None = None,
    optimizer: optax.GradientTransformation | None = None,
    l2: float = 1.0,
    percentile: float = 99.0,
    seed: int | None = None,
) -> ValuationResult:
    """AUM relative to the threshold-sample cut-off; negative = flagged as mislabelled.

    The threshold-sample trick of Pleiss et al. (NeurIPS 2020, section 3): give a random
    `n / (k + 1)` of the samples a fake label `k` (an extra class the model gets an output
    for, `record.with_extra_class`), train, and take the `percentile` (99th) of those
    deliberately mislabelled samples' AUM as the threshold below which a sample is called
    mislabelled. As in the paper, two runs with disjoint threshold sets (trained as one
    `vmap`) give every sample an AUM from a run where it kept its own label.

    value = mean over the runs where the sample kept its label of (AUM - that run's threshold);
    counts = 1 or 2 such runs; stderr = standard error over the two runs (NaN for one).

    Args:
      model, key, epochs, steps_per_epoch, batch_size, optimizer, l2: as in `record`.
      percentile: percentile of the threshold samples' AUM used as the cut-off, in [0, 100].
      seed: stored in the result for provenance.

    Returns:
      A `ValuationResult` (method "dynamics_aum_threshold"); `extra["thresholds"]` holds the
      two runs' cut-offs and `extra["n_flagged"]` the number of negative values.
    """
    n, k = train.n, train.n_classes
    size = n // (k + 1)
    if size < 1:
        raise ValuationError(f"{n} samples are too few for threshold samples with {k} classes; "
                             "need at least k + 1")
    if not 0.0 <= percentile <= 100.0:
        raise ValuationError(f"percentile must lie in [0, 100], got {percentile}")
    k_perm, k_fit = jax.random.split(key)
    order = np.asarray(jax.random.permutation(k_perm, n))
    is_threshold = np.zeros((2, n), bool)
    is_threshold[0, order[:size]] = True
    is_threshold[1, order[size:2 * size]] = True
    y_runs = np.where(is_threshold, k, train.y[None, :]).astype(np.int32)
    augmented = with_extra_class(model)
    checkpoints = train_checkpoints(augmented, train.x, y_runs, jax.random.split(k_fit, 2),
                                    epochs=epochs, steps_per_epoch=steps_per_epoch,
                                    batch_size=batch_size, optimizer=optimizer, l2=l2)
    aums = np.stack([
        sg.aum(trajectory(augmented, _run(checkpoints, r), train.x, y_runs[r],
                          n_classes=k + 1).margin[0])
        for r in range(2)])  # (2, n)
    thresholds = np.array([np.percentile(aums[r, is_threshold[r]], percentile)
                           for r in range(2)])
    excess = aums - thresholds[:, None]
    kept = ~is_threshold
    counts = kept.sum(axis=0)
    values = np.where(kept, excess, 0.0).sum(axis=0) / counts
    stderr = np.where(counts == 2, np.abs(excess[0] - excess[1]) / 2.0, np.nan)
    params = {"model": model.name, "signal": "aum_threshold", "epochs": epochs,
              "steps_per_epoch": steps_per_epoch, "batch_size": batch_size, "l2": l2,
              "percentile": percentile, "threshold_samples_per_run": size}
    return ValuationResult(values=values, stderr=stderr, counts=counts, ids=train.ids,
                           method="dynamics_aum_threshold", params=params, seed=seed,
                           extra={"thresholds": thresholds.tolist(),
                                  "n_flagged": int(np.sum(values < 0))})
