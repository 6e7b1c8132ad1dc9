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
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .compile_cache import enable_compile_cache
from .data import Dataset
from .distributed import ShardedUtility, ray_run, shard
from .dynamics import dynamics_from_utility
from .errors import ValuationError, ValuationWarning
from .estimate import Estimate
from .influence import influence
from .models import Model, linear_regression, logistic_regression
from .results import ValuationResult
from .runner import Estimator, as_key, run
from .shapley import exact, knn, msr, neighbours, oob, permutation
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
        non-iterative methods, which take no `stop`, `checkpoint` or `batch`).
      about: one line for `--help`: what it is, its cost and when to use it.
    """

    compute: Callable[..., ValuationResult]
    needs_valid: bool = True
    default_stop: Any = None
    about: str = ""


def result_from_estimate(utility: Utility, estimate: Estimate, *, method: str,
                         params: dict, seed: int | None, extra: dict) -> ValuationResult:
    """Wrap an `Estimate` over `utility.train` into a `ValuationResult` with its ids."""
    return ValuationResult(values=estimate.values, stderr=estimate.stderr,
                           counts=estimate.counts, ids=utility.train.ids, method=method,
                           params={**params, "utility": utility.describe()}, seed=seed,
                           extra=extra)


def _monte_carlo(factory: Callable[..., Estimator]):
    accepted = sorted(inspect.signature(factory).parameters)

    def compute(utility, *, seed, stop, progress, checkpoint, checkpoint_every,
                ray: str | None = None, **options):
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValuationError(f"unknown option(s) {unknown} for this method; it accepts "
                                 f"{accepted + ['ray']}")
        estimator = factory(**options)
        if ray is None:
            out = run(estimator, utility, key=seed, stop=stop, checkpoint=checkpoint,
                      checkpoint_every=checkpoint_every, progress=progress)
        else:  # fanned out over Ray workers: a fixed budget, the runner's checkpoints
            out = ray_run(estimator, utility, key=as_key(seed), address=ray,
                          draws=_fixed_draws(stop), progress=progress, checkpoint=checkpoint,
                          checkpoint_every=checkpoint_every)
        extra = {"evaluations": out.evaluations, "draws": out.draws,
                 "seconds": out.seconds, "stop": repr(stop), "stopping_reason": out.reason,
                 "resumed": out.resumed,
                 **(estimator.extra(out.state) if estimator.extra else {})}
        _warn_if_mostly_zero(out.estimate.values, estimator.name, extra)
        return result_from_estimate(utility, out.estimate, method=estimator.name,
                                    params=estimator.params, seed=seed, extra=extra)

    return compute


def _warn_if_mostly_zero(values: np.ndarray, name: str, extra: dict) -> None:
    """A `ValuationWarning` when the budget completed no draw, or when more than half of the
    values are exactly 0."""
    if extra["draws"] == 0:
        warnings.warn(ValuationWarning(
            f"{name} completed no draw within its budget of {extra['evaluations']} "
            "evaluations (a permutation costs up to n + 1): every value is 0 with an infinite "
            "standard error; raise the budget"), stacklevel=4)
        return
    zeros = float(np.mean(np.asarray(values) == 0)) if np.size(values) else 0.0
    if zeros <= 0.5:
        return
    why = "the utility rarely changes when one row is added (a flat metric)"
    record = extra.get("truncation")
    if record and record["share_of_marginals_zeroed"] > 0.5:
        why = (f"truncation zeroed {100 * record['share_of_marginals_zeroed']:.0f} % of the "
               f"marginals (median truncation position {record['median_position']:g}; "
               "extra['truncation'])")
    warnings.warn(ValuationWarning(
        f"{100 * zeros:.0f} % of the {name} values are exactly 0: {why}; try more draws, "
        "truncation_rtol=None or a smaller one, or metric='neg_log_loss'"), stacklevel=4)


def _fixed_draws(stop) -> int:
    """Draws a budget rule allows (one evaluation per draw: Data-OOB and MSR Banzhaf, the
    estimators `ray_run` takes)."""
    if not isinstance(stop, (st._MaxDraws, st._MaxEvaluations)):
        raise ValuationError(f"with ray, stop must be max_draws(...) or "
                             f"max_evaluations(...), a fixed budget; got {stop!r}")
    return stop.limit


def _loo(utility, *, seed, stop, progress, checkpoint, checkpoint_every):
    del seed, stop, progress, checkpoint, checkpoint_every  # deterministic, one batch
    start = time.perf_counter()
    estimate = exact.leave_one_out(utility)
    extra = {"evaluations": utility.n + 1, "seconds": time.perf_counter() - start}
    return result_from_estimate(utility, estimate, method="leave_one_out", params={},
                                seed=None, extra=extra)


def _knn(utility, *, seed, stop, progress, checkpoint, checkpoint_every, k: int = 10,
         embedding: Any = "raw", epsilon: Any = "auto", valid_sample: Any = "auto",
         index: str = "exact", ray: str | None = None):
    """KNN-Shapley: the mean over validation points of their closed-form values.

    `epsilon` and `valid_sample` default to `knn.auto_settings` (exact up to 250 million
    training x validation pairs, then sampled and truncated); `index` "exact" or "hnsw"
    (approximate neighbours, `shapley.neighbours`; epsilon at least 1e-3 there); `ray`
    fans blocks of validation rows out over a Ray cluster (the same values). With
    `utility.class_weight == "balanced"` each validation class weighs the same (the mean of
    the per-class means), so the majority class's points do not decide alone. A regression
    target gets the K-NN regressor's game (minus its squared error; `knn` module docstring),
    exact: `epsilon` must stay "auto" (or None) and `index` "exact".
    """
    del stop, checkpoint, checkpoint_every  # closed form, no training
    if index not in ("exact", "hnsw"):
        raise ValuationError(f"unknown index {index!r}; choose 'exact' or 'hnsw'")
    if index == "hnsw" and ray is not None:
        raise ValuationError("a neighbour index lives in this process: drop index='hnsw' "
                             "or ray=")
    regression = utility.task == "regression"
    if regression and (epsilon not in ("auto", None) or index != "exact"):
        raise ValuationError("KNN-Shapley's regression form is exact only: drop epsilon= "
                             "and index= for a regression target")
    start = time.perf_counter()
    train_emb, valid_emb = knn.embeddings(utility, embedding)
    auto = knn.auto_settings(utility.train.n, utility.valid.n)
    if regression:
        auto = (None, auto[1])
    epsilon = auto[0] if epsilon == "auto" else epsilon
    valid_sample = auto[1] if valid_sample == "auto" else valid_sample
    search = None
    if index == "hnsw":
        epsilon = epsilon or 1e-3
        search = neighbours.hnsw_search(train_emb)
    yv = np.asarray(utility.valid.y)
    groups = ([yv == c for c in np.unique(yv)]
              if utility.class_weight == "balanced" and not regression
              else [np.ones(yv.shape, bool)])
    parts = [knn.knn_shapley(train_emb, utility.train.y, np.asarray(valid_emb)[g], yv[g],
                             k=k, epsilon=epsilon, valid_sample=valid_sample,
                             key=jax.random.PRNGKey(seed), search=search, progress=progress,
                             regression=regression, ray=ray)
             for g in groups]
    estimate = Estimate(np.mean([p.values for p in parts], axis=0),
                        np.sqrt(np.sum([np.square(p.stderr) for p in parts], axis=0))
                        / len(parts),
                        np.sum([p.counts for p in parts], axis=0))
    name = embedding if isinstance(embedding, str) else "user"
    params = {"k": int(k), "embedding": name, "epsilon": epsilon, "index": index,
              "valid_sample": valid_sample, "class_weight": utility.class_weight,
              "neighbours": knn.truncation_rank(epsilon, int(k), utility.train.n)}
    return result_from_estimate(utility, estimate, method="knn_shapley", params=params,
                                seed=None if valid_sample is None else seed,
                                extra={"evaluations": 0,
                                       "seconds": time.perf_counter() - start})


def _influence(utility, *, seed, stop, progress, checkpoint, checkpoint_every,
               solver: str = "cg", **options):
    """Influence of each sample on the validation loss (log-loss; half the squared error
    for a regression target), at the full-data optimum.

    Trains `utility.model` on all of `utility.train` with the utility's solver and L2, then
    calls `influence.influence` with `method=solver` ("exact", "cg", "lissa", "lowrank",
    "trak"); the utility's metric is not used (influence is defined on the loss).
    """
    del stop, progress, checkpoint, checkpoint_every  # one fit, no Monte Carlo sampling
    key = jax.random.PRNGKey(seed)
    return influence(utility.model, utility.fit_full(key=key), utility.train, utility.valid, method=solver,
                     l2=utility.l2, key=key, **options)


def _check_model_classes(model: Model, data: Dataset) -> None:
    """A model whose output width is not the data's class count -> one clear error.

    Only shapes are traced (`jax.eval_shape`): no parameters are built, nothing is compiled.
    """
    x = jax.ShapeDtypeStruct((1, data.d), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    width = jax.eval_shape(model.apply, params, x).shape[-1]
    if data.task == "regression":
        if width != 1:
            raise ValuationError(f"the model outputs {width} scores but a regression target "
                                 "needs one; use linear_regression() or mlp(1, ...)")
        return
    if width != data.n_classes:
        raise ValuationError(f"the model outputs {width} class scores but the data has "
                             f"{data.n_classes} classes {list(data.classes)[:5]}; build it "
                             f"for the data, e.g. logistic_regression(data.n_classes)")


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
    "tmc": Method(_monte_carlo(permutation.tmc_shapley), True, st.max_draws(100),
                  "truncated Monte Carlo Data Shapley; costly (n models per permutation); "
                  "the reference marginal-contribution value"),
    "beta": Method(_monte_carlo(permutation.beta_shapley), True, st.max_draws(100),
                   "Beta(16,1) Shapley, weighting small subsets; costly like tmc; "
                   "better at finding noisy labels than tmc"),
    "banzhaf": Method(_monte_carlo(msr.msr_banzhaf), True, st.max_draws(5000),
                      "Data Banzhaf by maximum sample reuse; moderate (one model per "
                      "coalition); values robust to a noisy utility"),
    "oob": Method(_monte_carlo(oob.data_oob), False, st.max_draws(800),
                  "Data-OOB: out-of-bag score of bagged models; cheap (no validation set); "
                  "a good default for finding mislabelled rows"),
    "loo": Method(_loo, True, None,
                  "leave-one-out; n+1 models; exact but flat with accuracy on large data "
                  "(use --metric neg_log_loss)"),
    "knn": Method(_knn, True, None,
                  "closed-form KNN-Shapley; cheapest (no training); for large tables or "
                  "a quick first look"),
    "influence": Method(_influence, True, None,
                        "influence functions on the validation log-loss; one fit plus "
                        "Hessian solves; for smooth models, no retraining"),
    "dynamics": Method(dynamics_from_utility, False, None,
                       "a learning-dynamics signal (AUM by default) from a few training "
                       "runs; cheap; flags hard or mislabelled rows"),
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

    The first call switches on JAX's persistent compilation cache in the user cache folder
    (`compile_cache.enable_compile_cache`; `VALUATE_COMPILE_CACHE=off` turns it off), so
    later processes skip the compiles; within one process the engine keeps its compiled
    programs anyway.

    Args:
      data: the training `Dataset`, or a ready `Utility` (then `model`, `valid` and
        `utility_options` are ignored). With several local devices (GPUs), the utility's
        batches of models are split over all of them (`distributed.shard`).
      model: the target model (default `logistic_regression` over the data's classes;
        `linear_regression` for a regression target).
      method: one of `METHODS`: "tmc" (truncated Monte Carlo Shapley), "beta" (Beta(16, 1)
        Shapley), "banzhaf" (MSR Data Banzhaf), "loo" (leave-one-out), "oob" (Data-OOB),
        "knn" (KNN-Shapley), "influence" (influence functions; `solver="cg"|"exact"|
        "lissa"|"lowrank"|"trak"`), "dynamics" (a learning-dynamics signal; `signal="aum"|
        "confidence"|"forgetting"|"el2n"|"grand"|"alignment"|"loss"|"loss_variability"`).
        A regression target (`data.task == "regression"`) is valued on the squared error
        by every method except "trak", the class-only dynamics signals and "rater" (see
        the README's table).
      valid: validation `Dataset` the utility scores models on (not needed for "oob").
      stop: stopping rule for Monte Carlo methods (`shapley.stopping`); default per method:
        100 permutations (tmc, beta), 5000 coalitions (banzhaf), 800 bagged models (oob);
        rules are checked between updates (32 permutations, 256 coalitions, 64 models).
      seed: seed of every random draw (results are reproducible from it).
      progress: show a progress bar on stderr.
      checkpoint: checkpoint file for Monte Carlo methods; an existing one is resumed
        (see `runner`).
      checkpoint_every: updates between checkpoint saves.
      utility_options: keyword arguments for `make_utility` (metric, solver, steps, l2,
        `degenerate="zero"` for the game pyDVL computes, ...).
      **options: method options, e.g. `ray="local"` or a Ray address (Data-OOB and
        Banzhaf draws fanned out over Ray workers, `distributed.ray_run`; a fixed budget,
        checkpointed and resumed as without Ray; KNN-Shapley's validation blocks), `truncation_rtol=0.05` (tmc), `alpha=4`
        (beta), `score="probability"` (oob), `k=5, embedding="model", epsilon=1e-3,
        valid_sample=10_000` (knn; default `knn.auto_settings`), `batch=...`.

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
    enable_compile_cache()  # compiled programs persist across processes (`compile_cache`)
    entry = METHODS[method]
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValuationError(f"seed must be an int, got {seed!r}")
    if isinstance(data, (Utility, ShardedUtility)):
        utility = data
    elif isinstance(data, Dataset):
        if valid is None and entry.needs_valid:
            raise ValuationError(f"method {method!r} scores models on a validation set; "
                                 "pass valid=<Dataset> (e.g. from data.split(0.7, 0.3, "
                                 "seed=0))")
        if valid is not None and not isinstance(valid, Dataset):
            raise ValuationError(f"valid must be a Dataset, got {type(valid).__name__}; "
                                 "build one with valuation.load(...)")
        if valid is not None:
            valid = valid.select_features(data.feature_names, what="the validation set")
        if model is None:
            model = (linear_regression() if data.task == "regression"
                     else logistic_regression(data.n_classes))
        _check_model_classes(model, data)
        # Data-OOB never touches the validation set; the training set stands in for it.
        utility = make_utility(model, data, data if valid is None else valid,
                               **(utility_options or {}))
    else:
        raise ValuationError(f"data must be a Dataset or a Utility, got "
                             f"{type(data).__name__}; build one with valuation.load(...)")
    utility = shard(utility)  # several local devices: each chunk of models split over them
    stop = stop if stop is not None else entry.default_stop
    if stop is not None and not isinstance(stop, st.Rule):
        raise ValuationError(f"stop must be a stopping rule such as "
                             f"valuation.shapley.max_draws(100), got {stop!r}")
    _check_options(entry.compute, options)
    return entry.compute(utility, seed=seed, stop=stop, progress=progress,
                         checkpoint=checkpoint, checkpoint_every=checkpoint_every, **options)
