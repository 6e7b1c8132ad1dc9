"""`value(...)`: the one entry point a notebook user reaches for first.

Where it sits: on top of the utility engine, the runner and the value families. It checks
its inputs, builds the `Utility`, dispatches on `method` through the `METHODS` registry and
returns a `ValuationResult` (ids in input order, method parameters, seed, versions, and in
`extra` the evaluations used, seconds and the stopping reason).

Other families register their methods by adding an entry to `METHODS`:

    METHODS["influence"] = Method(compute=my_fn, needs_valid=True)

where `compute(utility, *, seed, stop, progress, checkpoint, checkpoint_every, **options)`
returns a `ValuationResult`; methods without Monte Carlo sampling may ignore `stop`,
`checkpoint` and `checkpoint_every`.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from .data import Dataset
from .dynamics import dynamics_from_utility
from .errors import ValuationError
from .estimate import Estimate
from .influence import influence
from .models import Model, linear_regression, logistic_regression
from .results import ValuationResult
from .runner import Estimator, run
from .shapley import exact, knn, msr, oob, permutation
from .shapley import stopping as st
from .utility import Utility, make_utility

__all__ = ["METHODS", "Method", "result_from_estimate", "value"]


class Method(NamedTuple):
    """A registry entry.

    Attributes:
      compute: `compute(utility, *, seed, stop, progress, checkpoint, checkpoint_every,
        **options) -> ValuationResult`.
      needs_valid: whether the method scores models on a validation set.
      default_stop: the stopping rule used when the caller passes none (None for
        non-iterative methods).
    """

    compute: Callable[..., ValuationResult]
    needs_valid: bool = True
    default_stop: Any = None


def result_from_estimate(utility: Utility, estimate: Estimate, *, method: str,
                         params: dict, seed: int | None, extra: dict) -> ValuationResult:
    """Wrap an `Estimate` over `utility.train` into a `ValuationResult` with its ids."""
    return ValuationResult(values=estimate.values, stderr=estimate.stderr,
                           counts=estimate.counts, ids=utility.train.ids, method=method,
                           params={**params, "utility": utility.describe()}, seed=seed,
                           extra=extra)


def _monte_carlo(factory: Callable[..., Estimator]):
    accepted = sorted(inspect.signature(factory).parameters)

    def compute(utility, *, seed, stop, progress, checkpoint, checkpoint_every, **options):
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValuationError(f"unknown option(s) {unknown} for this method; it accepts "
                                 f"{accepted}")
        estimator = factory(**options)
        out = run(estimator, utility, key=seed, stop=stop, checkpoint=checkpoint,
                  checkpoint_every=checkpoint_every, progress=progress)
        extra = {"evaluations": out.evaluations, "draws": out.draws,
                 "seconds": out.seconds, "stop": repr(stop), "stopping_reason": out.reason,
                 "resumed": out.resumed}
        return result_from_estimate(utility, out.estimate, method=estimator.name,
                                    params=estimator.params, seed=seed, extra=extra)

    return compute


def _loo(utility, *, seed, stop, progress, checkpoint, checkpoint_every):
    del seed, stop, progress, checkpoint, checkpoint_every  # deterministic, one batch
    start = time.perf_counter()
    estimate = exact.leave_one_out(utility)
    extra = {"evaluations": utility.n + 1, "seconds": time.perf_counter() - start}
    return result_from_estimate(utility, estimate, method="leave_one_out", params={},
                                seed=None, extra=extra)


def _knn(utility, *, seed, stop, progress, checkpoint, checkpoint_every, k: int = 10,
         embedding: Any = "raw"):
    del seed, stop, progress, checkpoint, checkpoint_every  # closed form, no training
    start = time.perf_counter()
    train_emb, valid_emb = knn.embeddings(utility, embedding)
    estimate = knn.knn_shapley(train_emb, utility.train.y, valid_emb, utility.valid.y, k=k)
    name = embedding if isinstance(embedding, str) else "user"
    return result_from_estimate(utility, estimate, method="knn_shapley",
                                params={"k": int(k), "embedding": name}, seed=None,
                                extra={"evaluations": 0,
                                       "seconds": time.perf_counter() - start})


def _influence(utility, *, seed, stop, progress, checkpoint, checkpoint_every,
               solver: str = "cg", **options):
    """Influence of each sample on the validation log-loss, at the full-data optimum.

    Trains `utility.model` on all of `utility.train` with the utility's solver and L2, then
    calls `influence.influence` with `method=solver` ("exact", "cg", "lissa", "lowrank",
    "trak"); the utility's metric is not used (influence is defined on the loss).
    """
    del stop, progress, checkpoint, checkpoint_every  # one fit, no Monte Carlo sampling
    key = jax.random.PRNGKey(seed)
    return influence(utility.model, utility.fit_full(key=key), utility.train, utility.valid, method=solver,
                     l2=utility.l2, key=key, **options)


def _check_options(compute, options):
    """Unknown options of a method without `**options` -> one clear error."""
    params = inspect.signature(compute).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # the method checks them itself
    run_args = {"seed", "stop", "progress", "checkpoint", "checkpoint_every"}
    accepted = sorted(set(params) - run_args - {"utility"})
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValuationError(f"unknown option(s) {unknown} for this method; it accepts "
                             f"{accepted or 'none'}")


METHODS: dict[str, Method] = {
    "tmc": Method(_monte_carlo(permutation.tmc_shapley), True, st.max_draws(100)),
    "beta": Method(_monte_carlo(permutation.beta_shapley), True, st.max_draws(100)),
    "banzhaf": Method(_monte_carlo(msr.msr_banzhaf), True, st.max_draws(5000)),
    "oob": Method(_monte_carlo(oob.data_oob), False, st.max_draws(800)),
    "loo": Method(_loo, True),
    "knn": Method(_knn, True),
    "influence": Method(_influence, True),
    "dynamics": Method(dynamics_from_utility, False),
}


def value(
    data: Dataset | Utility,
    model: Model | None = None,
    *,
    method: str = "tmc",
    valid: Dataset | None = None,
    stop: st.Rule | None = None,
    seed: int = 0,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    utility_options: dict | None = None,
    **options: Any,
) -> ValuationResult:
    """Value every training sample for a target model.

    Args:
      data: the training `Dataset`, or a ready `Utility` (then `model`, `valid` and
        `utility_options` are ignored).
      model: the target model (default `logistic_regression` over the data's classes;
        `linear_regression` for a regression target).
      method: one of `METHODS`: "tmc" (truncated Monte Carlo Shapley), "beta" (Beta(16, 1)
        Shapley), "banzhaf" (MSR Data Banzhaf), "loo" (leave-one-out), "oob" (Data-OOB),
        "knn" (KNN-Shapley), "influence" (influence functions; `solver="cg"|"exact"|
        "lissa"|"lowrank"|"trak"`), "dynamics" (a learning-dynamics signal; `signal="aum"|
        "confidence"|"forgetting"|"el2n"|"grand"|"alignment"`).
      valid: validation `Dataset` the utility scores models on (not needed for "oob").
      stop: stopping rule for Monte Carlo methods (`shapley.stopping`); default per method:
        100 permutations (tmc, beta), 5000 coalitions (banzhaf), 800 bagged models (oob);
        rules are checked between updates (32 permutations, 256 coalitions, 64 models).
      seed: seed of every random draw (results are reproducible from it).
      progress: show a progress bar on stderr.
      checkpoint: checkpoint file for Monte Carlo methods; an existing one is resumed
        (see `runner`).
      checkpoint_every: updates between checkpoint saves.
      utility_options: keyword arguments for `make_utility` (metric, solver, steps, l2, ...).
      **options: method options, e.g. `truncation_rtol=0.05` (tmc), `alpha=4` (beta),
        `score="probability"` (oob), `k=5, embedding="model"` (knn), `batch=...`.

    Returns:
      A `ValuationResult` with one row per training sample, in the data's order.

    Example:
      >>> import valuation as va
      >>> data = va.make_classification(40, 3, seed=0)
      >>> train, valid = data.split(0.5, 0.5, seed=0)
      >>> result = va.value(train, method="loo", valid=valid, progress=False)
      >>> len(result), result.method
      (20, 'leave_one_out')
    """
    if method not in METHODS:
        raise ValuationError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    entry = METHODS[method]
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValuationError(f"seed must be an int, got {seed!r}")
    if isinstance(data, Utility):
        utility = data
    elif isinstance(data, Dataset):
        if valid is None and entry.needs_valid:
            raise ValuationError(f"method {method!r} scores models on a validation set; "
                                 "pass valid=<Dataset> (e.g. from data.split(0.7, 0.3, "
                                 "seed=0))")
        if valid is not None and not isinstance(valid, Dataset):
            raise ValuationError(f"valid must be a Dataset, got {type(valid).__name__}; "
                                 "build one with valuation.load(...)")
        if model is None:
            model = (linear_regression() if data.task == "regression"
                     else logistic_regression(data.n_classes))
        # Data-OOB never touches the validation set; the training set stands in for it.
        utility = make_utility(model, data, data if valid is None else valid,
                               **(utility_options or {}))
    else:
        raise ValuationError(f"data must be a Dataset or a Utility, got "
                             f"{type(data).__name__}; build one with valuation.load(...)")
    stop = stop if stop is not None else entry.default_stop
    if stop is not None and not isinstance(stop, st.Rule):
        raise ValuationError(f"stop must be a stopping rule such as "
                             f"valuation.shapley.max_draws(100), got {stop!r}")
    _check_options(entry.compute, options)
    return entry.compute(utility, seed=seed, stop=stop, progress=progress,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every, **options)
