"""Signals: per-sample summaries of a recorded trajectory, pure numpy functions.

Where it sits: after `record.trajectory`. Every function takes arrays laid out like a `Trace`
field, `(..., epochs, n)` (time on the second-to-last axis, samples last, any leading axes
such as seeds), and returns `(..., n)`. None of them trains anything, so they apply equally to
training samples and to unseen samples scored against saved checkpoints.

Signs here are the papers' own (a high forgetting count or EL2N marks a hard or mislabelled
sample); `SIGNALS` says how each becomes a value with the library's convention, higher = more
valuable.
"""

from __future__ import annotations

import numpy as np

from ..errors import ValuationError

__all__ = [
    "CLASS_SIGNALS",
    "SIGNALS",
    "alignment",
    "aum",
    "confidence",
    "correctness",
    "default_early_epoch",
    "el2n",
    "forgetting_events",
    "forgetting_value",
    "grand",
    "loss_variability",
    "mean_loss",
    "never_learned",
    "region",
    "variability",
]


def confidence(prob: np.ndarray) -> np.ndarray:
    """Data-map confidence: mean probability of the given label over epochs.

    Swayamdipta et al., "Dataset Cartography", EMNLP 2020, eq. 1.
    """
    return np.mean(prob, axis=-2)


def variability(prob: np.ndarray) -> np.ndarray:
    """Data-map variability: standard deviation over epochs of the given label's probability.

    The population standard deviation (divisor = epochs), Swayamdipta et al. 2020, eq. 2.
    As a value it ranks ambiguous samples high, following the paper; it is no mislabel
    detector: a model that memorises a flipped label moves its `p_y` from near 0 to near 1,
    so flipped labels often have the *highest* variability (see `bench_dynamics`).
    """
    return np.std(prob, axis=-2)


def correctness(correct: np.ndarray) -> np.ndarray:
    """Data-map correctness: share of epochs at which the sample is classified correctly.

    Swayamdipta et al. 2020, section 2.
    """
    return np.mean(correct, axis=-2)


def region(conf: np.ndarray, var: np.ndarray, *, ambiguous_share: float = 1 / 3) -> np.ndarray:
    """Data-map region of each sample: "easy-to-learn", "ambiguous" or "hard-to-learn".

    Swayamdipta et al. 2020 (section 2.1) name the regions of the confidence-variability plane
    without fixed boundaries and select the top 33 % by variability as the ambiguous ones. We
    follow that: the `ambiguous_share` most variable samples are "ambiguous", the others are
    "easy-to-learn" if their confidence is at least 0.5 and "hard-to-learn" otherwise.

    Args:
      conf, var: `(n,)` confidence and variability.

    Returns:
      `(n,)` array of region names (dtype object).
    """
    conf, var = np.asarray(conf, float), np.asarray(var, float)
    n_ambiguous = round(ambiguous_share * var.size)
    ambiguous = np.zeros(var.shape, bool)
    ambiguous[np.argsort(-var, kind="stable")[:n_ambiguous]] = True
    out = np.where(conf >= 0.5, "easy-to-learn", "hard-to-learn").astype(object)
    out[ambiguous] = "ambiguous"
    return out


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Number of forgetting events: transitions from correct at epoch t-1 to wrong at t.

    Toneva et al., "An Empirical Study of Example Forgetting during Deep Neural Network
    Learning", ICLR 2019, section 2. Returns int counts `(..., n)`, at most `epochs // 2`.
    """
    correct = np.asarray(correct, bool)
    return np.sum(correct[..., :-1, :] & ~correct[..., 1:, :], axis=-2)


def never_learned(correct: np.ndarray) -> np.ndarray:
    """True for samples never classified correctly at any recorded epoch (Toneva et al. 2019)."""
    return ~np.any(np.asarray(correct, bool), axis=-2)


def forgetting_value(correct: np.ndarray) -> np.ndarray:
    """Minus the forgetting count; never-learned samples get `-(epochs // 2 + 1)`.

    Toneva et al. (2019) rank never-learned samples as forgotten infinitely often; one more than
    the largest possible count keeps that order with finite numbers.
    """
    epochs = np.shape(correct)[-2]
    count = forgetting_events(correct).astype(float)
    return -np.where(never_learned(correct), epochs // 2 + 1, count)


def aum(margin: np.ndarray) -> np.ndarray:
    """Area under the margin: the margin `z_y - max_{c != y} z_c` averaged over epochs.

    Pleiss et al., "Identifying Mislabeled Data using the Area Under the Margin Ranking",
    NeurIPS 2020, eq. 1-2 (mean rather than sum over epochs: the ranking is the same and the
    value does not grow with the number of epochs). Mislabelled samples have low or negative
    AUM.
    """
    return np.mean(margin, axis=-2)


def default_early_epoch(epochs: int) -> int:
    """The epoch (1-based) at which EL2N and GraNd are read: 10 % of training, at least 1.

    Paul et al. (2021) score after 20 of 200 epochs.
    """
    return max(1, round(0.1 * epochs))


def _at(stat: np.ndarray, epoch: int) -> np.ndarray:
    epochs = np.shape(stat)[-2]
    if not 1 <= epoch <= epochs:
        raise ValuationError(f"early epoch {epoch} is outside the recorded 1..{epochs}")
    return np.asarray(stat)[..., epoch - 1, :]


def el2n(error_norm: np.ndarray, epoch: int) -> np.ndarray:
    """EL2N score: `||p - e_y||_2` after `epoch` epochs (1-based).

    Paul et al., "Deep Learning on a Data Diet", NeurIPS 2021, section 2 (they average it over
    training runs with different seeds: pass a `(seeds, epochs, n)` trace and average the
    result over the first axis). High = hard or mislabelled.
    """
    return _at(error_norm, epoch)


def grand(grad_norm: np.ndarray, epoch: int) -> np.ndarray:
    """GraNd score: the norm of the sample's loss gradient after `epoch` epochs (1-based).

    Paul et al. 2021, section 2, with the gradient restricted to the last layer (the trace's
    `grad_norm`), which is what their bound is dominated by in practice and cheap in closed
    form. High = hard or mislabelled.
    """
    return _at(grad_norm, epoch)


def mean_loss(loss: np.ndarray) -> np.ndarray:
    """Mean training loss over epochs (cross-entropy, or the squared loss `r^2 / 2` of a
    regression target): the loss-trajectory score of small-loss selection (Jiang et al.,
    "MentorNet", ICML 2018; Arazo et al., "Unsupervised Label Noise Modeling and Loss
    Correction", ICML 2019). High = hard, mislabelled or, for a regression target, an
    outlying target."""
    return np.mean(loss, axis=-2)


def loss_variability(loss: np.ndarray) -> np.ndarray:
    """Standard deviation over epochs of the training loss (population, divisor = epochs):
    the data-map variability of Swayamdipta et al. 2020 read on the loss instead of `p_y`,
    so that it exists for a regression target too. High = the model's fit of the sample
    kept changing (ambiguous)."""
    return np.std(loss, axis=-2)


def alignment(align: np.ndarray) -> np.ndarray:
    """Gradient alignment with the validation set, summed over checkpoints.

    `sum_t g_i(theta_t) . g_valid(theta_t)`: TracIn's self-to-validation influence with the
    learning rate factored out (Pruthi et al., "Estimating Training Data Influence by Tracing
    Gradient Descent", NeurIPS 2020, eq. 3), a first-order in-run value in the spirit of
    In-Run Data Shapley (Wang et al. 2024). Positive = its gradient steps lowered the
    validation loss.
    """
    return np.sum(align, axis=-2)


# name -> (value(trace, early_epoch) -> (..., n), description): the value of each signal with
# the library's sign convention, higher = more valuable.
SIGNALS = {
    "confidence": (lambda t, e: confidence(t.prob),
                   "data-map confidence (Swayamdipta et al. 2020)"),
    "variability": (lambda t, e: variability(t.prob),
                    "data-map variability, ambiguous samples high (Swayamdipta et al. 2020)"),
    "correctness": (lambda t, e: correctness(t.correct),
                    "share of epochs classified correctly (Swayamdipta et al. 2020)"),
    "forgetting": (lambda t, e: forgetting_value(t.correct),
                   "minus the forgetting count, never-learned lowest (Toneva et al. 2019)"),
    "aum": (lambda t, e: aum(t.margin), "area under the margin (Pleiss et al. 2020)"),
    "el2n": (lambda t, e: -el2n(t.error_norm, e),
             "minus EL2N at an early epoch (Paul et al. 2021)"),
    "grand": (lambda t, e: -grand(t.grad_norm, e),
              "minus last-layer GraNd at an early epoch (Paul et al. 2021)"),
    "alignment": (lambda t, e: alignment(t.alignment),
                  ("summed last-layer gradient alignment with the validation set "
                   "(Pruthi et al. 2020; Wang et al. 2024)")),
    "loss": (lambda t, e: -mean_loss(t.loss),
             "minus the mean training loss over epochs (Jiang et al. 2018)"),
    "loss_variability": (lambda t, e: loss_variability(t.loss),
                         ("variability of the training loss over epochs, ambiguous "
                          "samples high (Swayamdipta et al. 2020)")),
}

# The signals read from class probabilities, margins or correctness: undefined for a
# regression target (the others read the loss and the residual).
CLASS_SIGNALS = ("confidence", "variability", "correctness", "forgetting", "aum",
                 "aum_threshold")
