"""Per-sample trajectory features as a table, for training samples and for unseen ones.

Where it sits: after `record`; the meta-learner (issue 6) calls `features_for_new_samples` at
prediction time, so its columns are a contract: the same names, in the same order, computed the
same way for a training sample (from its recorded `Trace`) and for a new sample (from the saved
checkpoints alone).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data import Dataset
from ..errors import ValuationError
from ..models import Model
from . import signals as sg
from .record import Trace, trajectory

__all__ = ["FEATURE_COLUMNS", "features_for_new_samples", "signal_matrix", "signals_frame"]

FEATURE_COLUMNS = ("confidence", "variability", "correctness", "forgetting_events",
                   "never_learned", "aum", "el2n", "grand", "alignment")
"""The numeric columns of `signals_frame`, in order (a `region` column follows them)."""


def signals_frame(trace: Trace, ids: Any = None, *, early_epoch: int | None = None) -> pd.DataFrame:
    """One row per sample (input order), one column per signal, averaged over seeds.

    Columns: `id`, then `FEATURE_COLUMNS` in the papers' own signs (see `signals`):
    confidence, variability and correctness (Swayamdipta et al. 2020); forgetting_events and
    never_learned (Toneva et al. 2019; averaged over seeds, so never_learned is the share of
    seeds in which the sample was never learned); aum (Pleiss et al. 2020); el2n and grand
    at `early_epoch` (Paul et al. 2021); alignment (summed validation-gradient alignment, NaN
    without a validation set); and finally `region`, the data-map region of the seed-averaged
    confidence and variability.

    Args:
      trace: a `Trace` of shape `(seeds, epochs, n)`.
      ids: `(n,)` sample ids; default `0..n-1`.
      early_epoch: 1-based epoch for EL2N and GraNd; default `signals.default_early_epoch`.
    """
    n = trace.shape[2]
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if ids.shape != (n,):
        raise ValuationError(f"{ids.shape} ids for {n} samples; pass one id per sample")
    frame = pd.DataFrame(signal_matrix(trace, early_epoch=early_epoch), columns=FEATURE_COLUMNS)
    frame.insert(0, "id", ids)
    frame["region"] = sg.region(frame["confidence"].to_numpy(), frame["variability"].to_numpy())
    return frame


def signal_matrix(trace: Trace, *, early_epoch: int | None = None) -> np.ndarray:
    """The `FEATURE_COLUMNS` of `signals_frame` as a float64 `(n, 9)` array (no table)."""
    epochs = trace.shape[1]
    early = sg.default_early_epoch(epochs) if early_epoch is None else int(early_epoch)
    per_seed = {
        "confidence": sg.confidence(trace.prob),
        "variability": sg.variability(trace.prob),
        "correctness": sg.correctness(trace.correct),
        "forgetting_events": sg.forgetting_events(trace.correct),
        "never_learned": sg.never_learned(trace.correct),
        "aum": sg.aum(trace.margin),
        "el2n": sg.el2n(trace.error_norm, early),
        "grand": sg.grand(trace.grad_norm, early),
        "alignment": sg.alignment(trace.alignment),
    }
    return np.stack([np.mean(per_seed[name], axis=0, dtype=np.float64)
                     for name in FEATURE_COLUMNS], axis=1)


def features_for_new_samples(
    model: Model,
    checkpoints: Any,
    x: Any,
    y: Any,
    *,
    n_classes: int,
    valid: Dataset | None = None,
    ids: Any = None,
    early_epoch: int | None = None,
) -> pd.DataFrame:
    """The trajectory features of `signals_frame` for samples the model never trained on.

    Scores `(x, y)` against every saved checkpoint (forward passes and closed-form last-layer
    gradients, no training) and summarises the resulting trajectories exactly as for the
    training samples, so for training samples the result equals `signals_frame` of the
    recorded trace. The data-map `region` column is relative (its ambiguous share is taken
    within the given samples).

    Args:
      model: the target model the checkpoints belong to.
      checkpoints: params with leading axes `(seeds, epochs)`, from `record`.
      x: features `(m, d)`, standardised like the training data.
      y: label codes `(m,)` on the training class list (see `data.align_classes`).
      n_classes: number of classes of the training set.
      valid: the validation set used when recording, for the alignment column (else NaN).
      ids: `(m,)` ids of the new samples; default `0..m-1`.
      early_epoch: as in `signals_frame` (pass the same value as for the training set).

    Returns:
      DataFrame with columns `id`, `FEATURE_COLUMNS`, `region`; one row per new sample.
    """
    trace = trajectory(model, checkpoints, x, y, n_classes=n_classes, valid=valid)
    return signals_frame(trace, ids, early_epoch=early_epoch)
