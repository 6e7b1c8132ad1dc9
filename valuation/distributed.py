"""Past one device: the utility's batch of models sharded across all local devices.

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
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from .errors import ValuationError
from .utility import Utility, _chunks, _per_model_keys

__all__ = ["ShardedUtility", "shard"]

_BATCH = PartitionSpec("batch")


def _split(fn, mesh: Mesh):
    """`fn(weights (B, n), keys (B, 2))` run on `B / devices` rows per device, jitted.

    check_vma is off: the batch programs hold a `lax.scan` whose carry starts replicated
    and becomes per-device; every row is independent, so there is nothing to check.
    """
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(_BATCH, _BATCH), out_specs=_BATCH,
                                 check_vma=False))


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
        weights = np.asarray(weights, dtype=np.float32)
        single = weights.ndim == 1
        weights = np.atleast_2d(weights)
        if weights.shape[1] != self.n:
            raise ValuationError(f"weights have {weights.shape[1]} columns for {self.n} "
                                 "training samples; pass one weight per training sample")
        keys = _per_model_keys(key, weights.shape[0])
        size = -(-(chunk or self.chunk) // self.devices) * self.devices
        out = np.concatenate([np.asarray(self._score(jnp.asarray(w), k))[:rows]
                              for w, k, rows in _chunks(weights, keys, size)])
        return float(out[0]) if single else out.astype(np.float64)

    def fit(self, weights: Any, *, key: jax.Array | None = None) -> Any:
        """Batched params of the models trained on `weights` `(B, n_train)`, split over the
        devices (B is padded to a multiple of them); as `Utility.fit`."""
        weights = np.atleast_2d(np.asarray(weights, np.float32))
        rows = weights.shape[0]
        keys = _per_model_keys(key, rows)
        (w, k, _), = _chunks(weights, keys, -(-rows // self.devices) * self.devices)
        params = self._fit(jnp.asarray(w), k)
        return jax.tree_util.tree_map(lambda a: a[:rows], params)

    @functools.cached_property
    def _score(self):
        return _split(self.utility._score, self.mesh)

    @functools.cached_property
    def _fit(self):
        return _split(self.utility._fit, self.mesh)


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
