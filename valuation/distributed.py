"""Past one device and one process: the utility's batch sharded over local devices, and
Monte Carlo draws fanned out over Ray workers.

Where it sits: between the estimators and the utility engine. `shard(utility)` wraps a
`Utility` so that every chunk of models it trains is split over the local devices (GPUs in
real use; CPU devices under `XLA_FLAGS=--xla_force_host_platform_device_count=N`).
`jax.shard_map` runs the utility's own compiled batch program on `utility.chunk` models per
device, so a chunk of `N * utility.chunk` models on N devices gives, bit for bit, the scores
of the single-device run with chunk `utility.chunk`. The training data are replicated on
every device (they are constants of that program); only the weight vectors and keys are
split.

The wrapper answers to everything a `Utility` does (its configuration, data sets and
`describe()` are the wrapped utility's), so a checkpoint written on one device resumes on
four and vice versa; Monte Carlo estimators draw each sample from its own key
(`runner.draw_keys`), so their values do not depend on the chunking either.

`ray_map(fn, shared, items)` runs `fn(shared, item)` as Ray tasks and yields the results
in item order (KNN-Shapley's blocks of validation rows, `knn.knn_shapley(..., ray=...)`).

`ray_run(estimator, utility, key=..., draws=...)` runs the draws of an estimator whose
state is running moments (Data-OOB, MSR Banzhaf) as Ray tasks over processes and hosts
(`pip install ray`; an optional extra): task i makes draws `i*batch .. (i+1)*batch - 1`
from the keys `fold_in(key, draw)`, exactly the draws `runner.run` makes, and the driver
pools the tasks' moments in task order (Chan et al.'s update, `estimate.combine`). A task
whose worker dies is re-run by Ray and its result pooled once, so nothing is counted twice;
with `batch` at most `utility.chunk` the result is bit for bit that of `runner.run` with the
same batch (otherwise equal up to float64 summation order).

Checkpoints: with `checkpoint=path`, the driver writes `runner`'s checkpoint file (the same
format, configuration hash and estimator version) whenever the tasks finished so far extend
the pooled prefix of draws: tasks finish in any order, but the file only ever holds draws
`0 .. d - 1` pooled in task order. Run again after an interruption (the driver killed, Ctrl-C,
the cluster lost), `ray_run` resumes from draw d, so the result is the uninterrupted one;
`runner.run` resumes the same file and vice versa.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from tqdm.auto import tqdm

from . import estimate as est
from . import runner
from .errors import ValuationError
from .runner import Estimator, Limit, RunOutput, Saved, config_hash, draw_keys
from .utility import Utility, padded_batches, per_model_keys, weight_rows

__all__ = ["ShardedUtility", "merge", "ray_map", "ray_run", "shard"]

_BATCH = PartitionSpec("batch")


def _split(fn, mesh: Mesh, options: dict | None = None):
    """`fn(data, weights (B, n), keys (B, 2))` run on `B / devices` rows per device, jitted
    (with the utility's compiler `options`); `data` (the utility's arrays) is replicated on
    every device.

    check_vma is off: the batch programs hold a `lax.scan` whose carry starts replicated
    and becomes per-device; every row is independent, so there is nothing to check.
    """
    jit = functools.partial(jax.jit, compiler_options=options) if options else jax.jit
    return jit(jax.shard_map(fn, mesh=mesh, in_specs=(PartitionSpec(), _BATCH, _BATCH),
                             out_specs=_BATCH, check_vma=False))


@dataclasses.dataclass(frozen=True, eq=False)
class ShardedUtility:
    """A `Utility` whose chunks of models are split over the devices of `mesh`.

    Build it with `shard`. Attributes other than the ones below are the wrapped utility's.

    Attributes:
      utility: the wrapped `Utility`; its `chunk` is the models per device.
      mesh: a one-axis mesh ("batch") of the devices.
    """

    utility: Utility
    mesh: Mesh

    def __getattr__(self, name: str) -> Any:
        return getattr(self.utility, name)

    @property
    def devices(self) -> int:
        """Number of devices the batch is split over."""
        return self.mesh.devices.size

    @property
    def chunk(self) -> int:
        """Models per compiled call: `utility.chunk` on each device."""
        return self.utility.chunk * self.devices

    def __call__(self, weights: Any, *, key: jax.Array | None = None,
                 chunk: int | None = None) -> np.ndarray:
        """Scores of the models trained on each weight vector, as `Utility.__call__`.

        Every call runs whole chunks of `chunk` (rounded up to a multiple of the devices),
        the last one padded, so one program serves all batch sizes.
        """
        weights, single = weight_rows(weights, self.n)
        keys = per_model_keys(key, weights.shape[0])
        size = -(-(chunk or self.chunk) // self.devices) * self.devices
        out = np.concatenate([np.asarray(self._score(self.utility._data, jnp.asarray(w), k))[:rows]
                              for w, k, rows in padded_batches(weights, keys, size)])
        return float(out[0]) if single else out.astype(np.float64)

    def fit(self, weights: Any, *, key: jax.Array | None = None) -> Any:
        """Batched params of the models trained on `weights` `(B, n_train)`, split over the
        devices (B is padded to a multiple of them); as `Utility.fit`."""
        weights = np.atleast_2d(np.asarray(weights, np.float32))
        rows = weights.shape[0]
        keys = per_model_keys(key, rows)
        (w, k, _), = padded_batches(weights, keys, -(-rows // self.devices) * self.devices)
        params = self._fit(self.utility._data, jnp.asarray(w), k)
        return jax.tree_util.tree_map(lambda a: a[:rows], params)

    @functools.cached_property
    def _score(self):
        programs = self.utility._programs
        return _split(programs.score_fn, self.mesh, programs.options)

    @functools.cached_property
    def _fit(self):
        programs = self.utility._programs
        return _split(programs.fit_fn, self.mesh, programs.options)


def shard(utility: Utility, devices: list | None = None) -> Utility | ShardedUtility:
    """Split `utility`'s batches of models over `devices` (default: all local devices).

    Returns `utility` itself when there is one device.

    Example:
      >>> import valuation as va
      >>> train, valid = va.make_classification(40, 3, seed=0).split(0.5, 0.5, seed=0)
      >>> u = va.make_utility(va.logistic_regression(2), train, valid)
      >>> shard(u, jax.local_devices()[:1]) is u
      True
    """
    devices = jax.local_devices() if devices is None else list(devices)
    if not devices:
        raise ValuationError("shard needs at least one device; pass devices=None for all "
                             "local devices")
    if isinstance(utility, ShardedUtility):
        utility = utility.utility
    if len(devices) == 1:
        return utility
    return ShardedUtility(utility, Mesh(np.array(devices), ("batch",)))


def merge(state: Any, part: Any) -> Any:
    """Pool two states of an estimator whose state is a tuple of `estimate.Moments`
    (Data-OOB, MSR Banzhaf): the moments of all draws of both (Chan et al. 1979)."""
    return type(state)(*(est.combine(a, b) for a, b in zip(state, part)))


_WORKER_UTILITIES: dict[str, Any] = {}  # per Ray worker: compile each utility once


def _draw_chunk(token: str, estimator: Estimator, utility, key, start: int, batch: int,
                size: int):
    """One Ray task: draws `start .. start + size - 1` folded into a fresh state (keys for a
    whole `batch`: one compiled shape for every task)."""
    utility = _WORKER_UTILITIES.setdefault(token, utility)
    state, used, _ = estimator.update(estimator.init(utility.n), utility,
                                      draw_keys(key, start, batch), Limit(size))
    return state, int(used)


def ray_run(estimator: Estimator, utility, *, key: jax.Array, draws: int,
            batch: int | None = None, address: str = "local", workers: int | None = None,
            retries: int = 3, progress: bool = True,
            checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1,
            config: dict | None = None) -> RunOutput:
    """Make `draws` draws of `estimator` as Ray tasks and pool them (module docstring).

    Args:
      estimator: an estimator whose state holds only running moments (`data_oob`,
        `msr_banzhaf`).
      utility: a `Utility` (sent to every worker once per task; each worker compiles it
        once).
      key: `jax.random` key; draw j uses `fold_in(key, j)` as in `runner.run`.
      draws: total draws (the last task makes what is left of them).
      batch: draws per task (default the estimator's batch).
      address: "local" starts a Ray cluster on this machine (unless one is running in this
        process); otherwise the address of a running cluster ("ray://host:10001", "auto").
      workers: CPUs of the local cluster (default all).
      retries: times Ray re-runs a task whose worker died.
      progress: show a progress bar over finished tasks.
      checkpoint: checkpoint file (`runner`'s format), resumed when it exists, or None.
      checkpoint_every: save after every this many tasks pooled.
      config: extra settings that must match for a resume, as in `runner.run`.

    Returns:
      A `RunOutput` as `runner.run` returns (evaluations summed over tasks and sessions).
    """
    ray = _import_ray()
    if isinstance(utility, ShardedUtility):
        utility = utility.utility
    batch = int(batch or estimator.batch or utility.chunk)
    if not all(isinstance(f, est.Moments) for f in estimator.init(1)):
        raise ValuationError(f"{estimator.name} keeps more than running moments in its "
                             "state; the Ray fan-out runs data_oob and msr_banzhaf")
    if draws < 1:
        raise ValuationError(f"draws must be a positive int, got {draws}")
    if int(checkpoint_every) < 1:
        raise ValuationError(f"checkpoint_every must be >= 1, got {checkpoint_every!r}")
    digest = config_hash(estimator, utility, utility.n, key, batch, config)
    saved, resumed = Saved(estimator.init(utility.n), 0, 0, 0.0, None), False
    if checkpoint is not None and os.path.exists(checkpoint):
        saved = runner.load_checkpoint(checkpoint, estimator, utility.n, digest)
        resumed = True
    start = time.perf_counter()
    if saved.draws < draws:
        _connect(ray, address, workers)
        saved = _fan_out(ray, estimator, utility, key, saved, draws, batch, retries, progress,
                         checkpoint, int(checkpoint_every), digest, start)
    seconds = saved.seconds + time.perf_counter() - start
    if checkpoint is not None:
        runner.save_checkpoint(checkpoint, estimator, saved._replace(seconds=seconds), digest)
    return RunOutput(estimator.estimate(saved.state), saved.state, saved.evaluations,
                     saved.draws, seconds, f"max_draws({draws})", resumed)


def _import_ray():
    """The `ray` module, or one error saying how to install it (an optional extra)."""
    try:
        import ray
    except ImportError:
        raise ValuationError("the Ray fan-out needs Ray: pip install ray (or run without "
                             "it: one process gives the same values)") from None
    return ray


def _connect(ray, address: str, workers: int | None) -> None:
    """Start a local Ray cluster ("local") or join the one at `address`, unless this process
    is connected already."""
    if ray.is_initialized():
        return
    if address == "local":  # local workers import this very checkout of valuate
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": root}})
    else:  # a cluster whose nodes have valuate installed
        ray.init(address=address, log_to_driver=False)


def ray_map(fn, shared: Any, items: list, *, address: str = "local",
            workers: int | None = None, retries: int = 3):
    """`fn(shared, item)` for every item as Ray tasks; yields the results in item order, each
    as soon as it and every earlier one are done (`shared` is shipped to the cluster once).

    Used for KNN-Shapley's validation blocks (`knn.knn_shapley(..., ray=...)`). Pending
    tasks are cancelled if the caller stops early.
    """
    ray = _import_ray()
    _connect(ray, address, workers)
    task = ray.remote(fn).options(max_retries=int(retries), num_cpus=1)
    shipped = ray.put(shared)
    refs = [task.remote(shipped, item) for item in items]
    try:
        for ref in refs:
            yield ray.get(ref)
    finally:
        for ref in refs:  # nothing left running on the cluster (no-op for finished ones)
            ray.cancel(ref)


def _fan_out(ray, estimator, utility, key, saved: Saved, draws, batch, retries, progress,
             checkpoint, every, digest, start) -> Saved:
    """Draws `saved.draws .. draws - 1` as Ray tasks, pooled into `saved` in task order;
    checkpointed after every `every` tasks pooled. Pending tasks are cancelled if the driver
    stops early (Ctrl-C, a task that fails for good)."""
    # a fresh copy: the compiled programs cached on `utility` stay out of the pickle
    shipped = ray.put(dataclasses.replace(utility) if dataclasses.is_dataclass(utility)
                      else utility)
    task = ray.remote(_draw_chunk).options(max_retries=int(retries), num_cpus=1)
    token = f"{id(utility)}-{time.time_ns()}"
    pending = {task.remote(token, estimator, shipped, np.asarray(key), i, batch,
                           min(batch, draws - i)): i
               for i in range(saved.draws, draws, batch)}
    finished, pooled = {}, 0
    try:
        with tqdm(total=len(pending), desc=f"{estimator.name} (ray)", unit="task",
                  file=sys.stderr, disable=not progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                finished[pending.pop(done[0])] = ray.get(done[0])
                bar.update(1)
                while saved.draws in finished:  # pooled in draw order: runner.run's sums
                    (part, used), before = finished.pop(saved.draws), saved.state
                    saved = Saved(merge(before, part), min(saved.draws + batch, draws),
                                  saved.evaluations + used, saved.seconds, None)
                    pooled += 1
                    if checkpoint is not None and pooled % every == 0:
                        runner.save_checkpoint(checkpoint, estimator, saved._replace(
                            seconds=saved.seconds + time.perf_counter() - start,
                            previous=estimator.estimate(before)), digest)
    finally:
        for ref in pending:  # stopped early: no orphaned work left on the cluster
            ray.cancel(ref)
    return saved
