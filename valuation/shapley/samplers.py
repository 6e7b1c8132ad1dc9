"""Samplers: keyed draws of coalitions, as permutations, masks or bootstrap weights.

Where it sits: the sampler half of "utility x sampler x coefficient". Each function makes one
draw per row of `keys` `(b, 2)` (the runner gives draw j the key `fold_in(key, j)`), so a
draw never depends on how draws are batched. The outputs feed the utility engine as weight
vectors `(b, n)`.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from .weights import shapley

__all__ = [
    "bernoulli_masks",
    "bootstrap_counts",
    "log_permutation_probability",
    "permutations",
    "training_keys",
]


@jax.jit
def training_keys(keys: jax.Array) -> jax.Array:
    """The training keys of draws, `fold_in(key, 1)` per row of `keys` `(b, 2)`: kept apart
    from the key that made the draw (a permutation, coalition or bootstrap resample)."""
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 1)


@functools.partial(jax.jit, static_argnums=1)
def permutations(keys: jax.Array, n: int) -> jax.Array:
    """Uniform random orders of `n` samples, `(b, n)` int32, one per key."""
    return jax.vmap(lambda k: jax.random.permutation(k, n))(keys)


@functools.partial(jax.jit, static_argnums=1)
def bernoulli_masks(keys: jax.Array, n: int, p: float = 0.5) -> jax.Array:
    """Coalitions that hold each sample independently with probability `p`: `(b, n)` bool.

    With `p = 1/2` every coalition is equally likely (the Banzhaf sampling distribution).
    """
    return jax.vmap(lambda k: jax.random.bernoulli(k, p, (n,)))(keys)


def bootstrap_counts(keys: jax.Array, n: int) -> np.ndarray:
    """Bootstrap resamples as weights: how often each of `n` samples is drawn in `n` draws
    with replacement, `(b, n)` float32 (Efron 1979). A sample with count 0 is out-of-bag.

    Row j is drawn on the host by numpy's PCG64 generator seeded with the two words of
    `keys[j]`, so it depends on that key alone (as every keyed draw here). Cost per row: `n`
    integer draws and one `bincount`, ~28 ms at n = 800k (XLA's threefry `randint` on CPU
    is ~6x slower); memory `4 b n` bytes for the result plus `16 n` for one row's temporaries.
    """
    words = np.asarray(jax.random.key_data(keys) if jax.dtypes.issubdtype(
        keys.dtype, jax.dtypes.prng_key) else keys, np.uint32)
    out = np.empty((words.shape[0], n), np.float32)
    for row, seed in zip(out, words):
        row[:] = np.bincount(np.random.default_rng(seed).integers(0, n, n), minlength=n)
    return out


def log_permutation_probability(n: int) -> np.ndarray:
    """Log probability that a uniform permutation puts exactly a given coalition S of size k
    before sample i, for `k = 0 .. n-1`: `-log(n C(n-1, k))` (the size is uniform on
    `0..n-1`, the coalition uniform given its size)."""
    # The same numbers as the Shapley weights: that identity is why permutation sampling
    # estimates Shapley values without importance weights.
    return shapley().log_weight(n)
