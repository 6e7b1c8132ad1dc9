"""KNN-Shapley: exact Shapley values of the K-nearest-neighbour utility, in closed form.

Where it sits: the fastest value family (no model is trained); a proxy for the target model
that becomes model-specific when distances are taken in the model's own embedding.

For one validation point (x, y), the KNN utility of a coalition S is
`U(S) = (1/K) sum_{j <= min(K, |S|)} 1[y_{a_j(S)} = y]`, with `a_j(S)` the j-th nearest
member of S. Sorting the N training points by distance to x (a_1 nearest), its Shapley
values are (Jia et al., "Efficient Task-Specific Data Valuation for Nearest Neighbor
Algorithms", VLDB 2019, Theorem 1):

    s_{a_N} = 1[y_{a_N} = y] / N          (for K > N: 1[y_{a_N} = y] / K)
    s_{a_i} = s_{a_{i+1}} + (1[y_{a_i} = y] - 1[y_{a_{i+1}} = y]) / K * min(K, i) / i

which is a reversed cumulative sum. The value over a validation set is the mean over its
points (the utility is their mean).

At scale, two approximations, each with a stated error:

* Top-K* truncation (Jia et al. 2019, Theorem 4). Summing the recursion by parts gives, for
  i >= K, `s_{a_i} = m_i / i - sum_{j > i} m_j / (j (j - 1))` with `m_j in {0, 1}`, so
  `|s_{a_i}| <= 1 / i`. Keeping only the `K* = max(K, ceil(1/epsilon))` nearest neighbours,
  setting `s_{a_{K*}}` and everything beyond it to 0 and running the recursion over the first
  K* ranks changes every value by at most `1/K* <= epsilon` (units: accuracy, per validation
  point, hence also for the mean). Cost: a top-K* selection instead of a full sort per
  validation point.
* Validation subsampling. The value is a mean over validation points; with
  `valid_sample = m` of the M points drawn without replacement, the value is the sample mean
  and its standard error `sqrt((1 - m/M) var / m)` (finite-population correction: 0 when
  m = M), with `var` at least `unseen_variance(K, m)` for classification (a training point
  no sampled validation point ranks among its K* nearest would otherwise report 0). Counts
  are m.

Regression (`regression=True`; Jia et al. 2019, section 4's K-NN regression, whose
utility is minus the squared error of the K-NN mean): with targets `t_j = y_{a_j}` sorted
by distance to a validation point (x, y) and `f(S) = (1/K) sum_{j <= min(K, |S|)}
t_{a_j(S)}` (divided by K also when |S| < K, as in the classification game),
`U(S) = -(f(S) - y)^2`. Its Shapley values, derived here as for Theorem 1 (two neighbouring
ranks i, i+1 differ only in coalitions where i would be among the K nearest; there
`U(S + i) - U(S + (i+1)) = (t_{i+1} - t_i)/K * ((2 A + t_i + t_{i+1})/K - 2 y)`, with `A` the
sum of the other K-1 nearest members' targets, whose expectation under the Shapley
distribution is linear in the t_j):

    P_i = min(K, i) / i
    q_i = m (m - 1) / (2 i (i - 1)),  m = min(K, i)         (q_1 = 0)
    r_j = M (M + 1) / (2 (j - 1)(j - 2)),  M = min(K-1, j-2) (j >= 3)
    E_i = q_i sum_{j < i} t_j + sum_{j >= i+2} r_j t_j
    s_{a_N} = -(t_N / K) ((2 q_N sum_{j < N} t_j + t_N P_N) / K - 2 y P_N)
    s_{a_i} = s_{a_{i+1}} + (t_{i+1} - t_i) / K * ((2 E_i + (t_i + t_{i+1}) P_i) / K - 2 y P_i)

(`q_i` is the probability that a given nearer point is among the K nearest members of a
coalition where i is too, `r_j` the same for a farther point j.) Units: squared target
units per validation point, summing to `U(N) - U(empty) = y^2 - (f(N) - y)^2`. Every value
depends on all N targets, so the top-K* truncation does not apply: regression values are
exact (validation subsampling still does).

Memory: `O(chunk * N)` for the distances of a chunk of validation points (default about 32
million distances per chunk, 128 MB in float32) plus `O(N)` accumulators (four float64
vectors; with Ray, two more per finished block waiting for an earlier one); time
`O(M N d)` for the distances and `O(M N)` for the selection.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ..errors import ValuationError
from ..estimate import Estimate
from ..runner import progress_stream
from .neighbours import Search

__all__ = ["auto_settings", "embeddings", "knn_shapley", "truncation_rank", "unseen_variance"]

DISTANCES_PER_CHUNK = 32_000_000  # distances held at once: 128 MB in float32
BLOCK_CHUNKS = 16  # validation chunks summed per block, the unit of a Ray task
EXACT_PAIRS = 250_000_000  # training x validation pairs `auto_settings` still sorts in full


@jax.jit
def _scores(xt, sq_t, xv):
    """`2 <x_v, x_t> - |x_t|^2`, `(c, N)`: larger = nearer (the squared distance minus the
    constant `|x_v|^2`, negated), which is all that neighbour ranks need."""
    return 2.0 * xv @ xt.T - sq_t[None, :]


def _order_full(xt, sq_t, xv) -> jax.Array:
    """Every training point by distance, nearest first, `(c, N)` int32.

    On CPU the sort runs in numpy: XLA's CPU sort is ~18x slower than numpy's introsort on
    rows of 100,000 floats (measured: 2.9 s vs 0.17 s for 40 rows); elsewhere it stays on
    the device. Ties between equidistant training points are broken arbitrarily but
    deterministically.
    """
    scores = _scores(xt, sq_t, xv)
    if jax.default_backend() == "cpu":
        return jnp.asarray(np.argsort(-np.asarray(scores), axis=1).astype(np.int32))
    return jnp.argsort(-scores, axis=1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames="kstar")
def _order_top(xt, sq_t, xv, *, kstar):
    """The `kstar` nearest training points, nearest first, `(c, kstar)` int32 (one
    `lax.top_k` per row: a partial selection, ~4x cheaper than a full sort at N = 800k)."""
    return jax.lax.top_k(_scores(xt, sq_t, xv), kstar)[1].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("k",))
def _ranked_values_regression(order, yt, yv, *, k):
    """Values `(c, N)` of each validation point's training points ranked by `order` (all N,
    nearest first) in the K-NN regression game (module docstring's recursion)."""
    t = yt[order]  # (c, N) targets, nearest first
    n = t.shape[1]
    i = jnp.arange(1, n + 1, dtype=t.dtype)
    m = jnp.minimum(k, i)
    p = m / i  # P_i
    q = jnp.where(i > 1, m * (m - 1) / (2 * i * jnp.maximum(i - 1, 1)), 0.0)
    big_m = jnp.minimum(k - 1, i - 2)
    r = jnp.where(i >= 3, big_m * (big_m + 1) / (2 * (i - 1) * jnp.maximum(i - 2, 1)), 0.0)
    before = jnp.cumsum(t, axis=1) - t  # sum_{j < i} t_j
    weighted = r * t
    after = jnp.cumsum(weighted[:, ::-1], axis=1)[:, ::-1]  # sum_{j >= i} r_j t_j
    far = jnp.concatenate([after[:, 2:], jnp.zeros_like(after[:, :2])], axis=1)  # j >= i+2
    e = q * before + far
    y = yv[:, None]
    lo, hi = t[:, :-1], t[:, 1:]
    step = (hi - lo) / k * ((2 * e[:, :-1] + (lo + hi) * p[:-1]) / k - 2 * y * p[:-1])
    last = -(t[:, -1:] / k) * ((2 * q[-1] * before[:, -1:] + t[:, -1:] * p[-1]) / k
                               - 2 * y * p[-1])
    tail = jnp.cumsum(step[:, ::-1], axis=1)[:, ::-1]
    return jnp.concatenate([tail, jnp.zeros_like(last)], axis=1) + last


@functools.partial(jax.jit, static_argnames=("k", "n"))
def _ranked_values(order, yt, yv, *, k, n):
    """Values `(c, K*)` of each validation point's K* nearest training points, in the
    order of `order` (nearest first); the recursion runs along it.

    With `K* = N` the values are exact; with `K* < N` the value at rank K* and beyond is
    taken as 0 (the truncation of the module docstring).
    """
    kstar = order.shape[1]
    match = (yt[order] == yv[:, None]).astype(jnp.float32)  # (c, K*), nearest first
    i = jnp.arange(1, kstar, dtype=jnp.float32)
    step = (match[:, :-1] - match[:, 1:]) / k * jnp.minimum(k, i) / i  # (c, K*-1)
    tail = jnp.cumsum(step[:, ::-1], axis=1)[:, ::-1]
    s = jnp.concatenate([tail, jnp.zeros_like(tail[:, :1])], axis=1)
    if kstar == n:
        # farthest point: it counts only when fewer than K others are present
        # (P = min(K, N)/N)
        s = s + match[:, -1:] * (min(k, n) / (n * k))
    return s


def unseen_variance(k: int, m: int) -> float:
    """Floor on a training point's per-validation-point variance when `m` validation points
    are sampled: `(1/K)^2 / (m + 1)`.

    One validation point's contribution to one training point's value lies in [-1/K, 1/K]
    (the recursion of the module docstring). A point that is among no sampled validation
    point's K* neighbours has sample variance 0, yet the data are as consistent with a
    share of about `1 / (m + 1)` of the population giving it a contribution of size up to
    1/K, whose variance is at most `(1/K)^2 / (m + 1)`. Without the floor, sparse values
    (N much larger than m K*) got stderr 0 and their 1.96-stderr intervals covered about
    half the full-population values; with it, over 90 % (tests/shapley/test_shapley_knn).
    """
    return (1.0 / k) ** 2 / (m + 1)


def truncation_rank(epsilon: float | None, k: int, n: int) -> int:
    """Neighbours kept per validation point, `K* = min(N, max(K, ceil(1/epsilon)))`
    (all N for `epsilon=None`): values then lie within `epsilon` of the exact ones."""
    if epsilon is None:
        return n
    return int(min(n, max(k, math.ceil(1.0 / epsilon))))


def auto_settings(n: int, m: int) -> tuple[float | None, int | None]:
    """`(epsilon, valid_sample)` for N training and M validation points: exact values on
    every validation point while `N * M <= EXACT_PAIRS` (100k x 1k: seconds); beyond, a
    sample of `max(10_000, EXACT_PAIRS // N)` validation points and, if still beyond,
    the truncation `epsilon = 1e-3` (K* = 1000 neighbours).

    Example:
      >>> auto_settings(100_000, 1_000), auto_settings(800_000, 200_000)
      ((None, None), (0.001, 10000))
    """
    sample = min(m, max(10_000, EXACT_PAIRS // max(n, 1)))
    epsilon = None if n * sample <= EXACT_PAIRS else 1e-3
    return epsilon, (sample if sample < m else None)


def _check(xt, yt, xv, yv, k, epsilon, valid_sample, key):
    if xt.ndim != 2 or xv.ndim != 2 or xt.shape[1] != xv.shape[1]:
        raise ValuationError(f"KNN-Shapley needs 2-D features with equal widths, got "
                             f"{xt.shape} and {xv.shape}")
    if yt.shape != (xt.shape[0],) or yv.shape != (xv.shape[0],):
        raise ValuationError("KNN-Shapley needs one label per row of x_train and x_valid")
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValuationError(f"k must be a positive int, got {k!r}")
    if epsilon is not None and not 0.0 < epsilon < 1.0:
        raise ValuationError(f"epsilon must lie in (0, 1) (an error bound in accuracy "
                             f"units, e.g. 1e-3) or be None for exact values, got {epsilon!r}")
    if valid_sample is not None:
        if not (isinstance(valid_sample, (int, np.integer)) and valid_sample >= 2):
            raise ValuationError(f"valid_sample must be an int >= 2 (validation points "
                                 f"drawn), got {valid_sample!r}")
        if key is None:
            raise ValuationError("valid_sample draws validation points at random: pass "
                                 "key=jax.random.PRNGKey(seed)")


def knn_shapley(x_train: Any, y_train: Any, x_valid: Any, y_valid: Any, *, k: int = 10,
                epsilon: float | None = None, valid_sample: int | None = None,
                key: jax.Array | None = None, chunk: int | None = None,
                search: Search | None = None, progress: bool = False,
                regression: bool = False, ray: str | None = None) -> Estimate:
    """KNN-Shapley values of the training points (Jia et al., VLDB 2019).

    Args:
      x_train: `(N, d)` features or embeddings; y_train: `(N,)` int labels (real targets
        with `regression=True`).
      x_valid: `(M, d)`; y_valid: `(M,)`, same label coding.
      k: neighbours of the KNN classifier.
      epsilon: None for exact values (a full sort per validation point), or the error
        bound of the top-K* truncation (module docstring): every value within `epsilon` of
        the exact one, in accuracy units.
      valid_sample: use this many validation points drawn without replacement (all when
        None or >= M); the standard errors then measure the sampling error.
      key: draws the validation sample (needed with `valid_sample`).
      chunk: validation points per compiled call (default about 32 million distances per
        call, i.e. `3.2e7 / N`; 4 million for exact values, whose sort holds more); the
        last chunk is padded. Fixes memory, not values.
      search: a neighbour search such as `neighbours.hnsw_search(x_train)` (approximate:
        see its module) instead of the exact one; needs `epsilon`.
      progress: show a progress bar over blocks of validation chunks on stderr.
      regression: value the K-NN regressor's game, minus its squared error (module
        docstring); exact only (no `epsilon`, no `search`).
      ray: fan blocks of `BLOCK_CHUNKS` validation chunks out over a Ray cluster ("local"
        or an address; `pip install ray`), pooled in block order: the same values as one
        process, bit for bit. Not with `search` (an index lives in this process).

    Returns:
      `Estimate(values (N,), stderr (N,), counts = validation points used)`: the mean
      over validation points of each training point's Shapley value for the KNN utility
      (units: accuracy; squared target units with `regression`); stderr is 0 when every
      validation point is used.

    Example:
      >>> est = knn_shapley([[0.0], [1.0]], [0, 1], [[0.1]], [0], k=1)
      >>> [round(float(v), 3) for v in est.values]
      [1.0, 0.0]
    """
    xt, xv = np.asarray(x_train, np.float32), np.asarray(x_valid, np.float32)
    label = np.float32 if regression else np.int32
    yt, yv = np.asarray(y_train, label), np.asarray(y_valid, label)
    _check(xt, yt, xv, yv, k, epsilon, valid_sample, key)
    if regression and (epsilon is not None or search is not None):
        raise ValuationError("KNN-Shapley's regression form is exact only (every value "
                             "depends on all targets): drop epsilon= and search= (index=)")
    if search is not None and ray is not None:
        raise ValuationError("a neighbour index lives in this process: drop search= "
                             "(index=) or ray=")
    if search is not None and epsilon is None:
        raise ValuationError("a neighbour index returns the K* nearest points only: pass "
                             "epsilon (e.g. 1e-3) with it")
    n, total_m = xt.shape[0], xv.shape[0]
    if valid_sample is not None and valid_sample < total_m:
        rows = np.sort(np.asarray(jax.random.choice(key, total_m, (int(valid_sample),),
                                                    replace=False)))
        xv, yv = xv[rows], yv[rows]
    m = xv.shape[0]
    kstar = truncation_rank(epsilon, int(k), n)
    budget = (4_000_000 if kstar == n else DISTANCES_PER_CHUNK if search is None
              else 1024 * n)  # an index holds no distance matrix: 1024 queries per call
    chunk = int(chunk or max(1, min(m, budget // max(n, 1))))
    pad = -m % chunk
    xv = np.concatenate([xv, np.zeros((pad, xv.shape[1]), np.float32)])
    yv = np.concatenate([yv, np.zeros(pad, label)])
    setup = _Setup(xt, yt, xv, yv, chunk, m, n, kstar, int(k), regression, m < total_m)
    desc = f"knn_shapley: {m} of {total_m} validation rows, " + (
        "exact" if kstar == n else f"{kstar} neighbours each (error <= {epsilon:g})")
    blocks = [range(b, min(b + BLOCK_CHUNKS * chunk, m + pad), chunk)
              for b in range(0, m + pad, BLOCK_CHUNKS * chunk)]
    total, squares = np.zeros(n), np.zeros(n)  # float64, blocks pooled in order
    with tqdm(total=len(blocks), desc=desc, unit="block", file=progress_stream(),
              disable=not progress) as bar:
        if ray is not None:
            from ..distributed import ray_map  # Ray is an optional extra

            sums = ray_map(_block_sums, setup, blocks, address=ray)
        else:
            device = _on_device(setup)  # once for all blocks
            sums = (_block_sums(setup, block, search, device) for block in blocks)
        for block_total, block_squares in sums:
            total += block_total
            squares += block_squares
            bar.update(1)
    values = total / m
    # sample variance over validation points, finite-population corrected (0 when m = M)
    var = np.maximum(squares - m * values**2, 0.0) / (m - 1) if m > 1 else np.zeros(n)
    if m < total_m and not regression:
        var = np.maximum(var, unseen_variance(int(k), m))
    stderr = np.sqrt((1.0 - m / total_m) * var / m)
    return Estimate(values, stderr, np.full(n, m, np.int64))


class _Setup(NamedTuple):
    """What every block of validation chunks needs (numpy arrays, the validation rows
    padded to whole chunks): shipped once to Ray workers."""

    xt: np.ndarray
    yt: np.ndarray
    xv: np.ndarray
    yv: np.ndarray
    chunk: int
    m: int  # validation rows before padding
    n: int
    kstar: int
    k: int
    regression: bool
    squares: bool  # also sum squared values (validation sampling's standard errors)


def _on_device(setup: _Setup) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The training features, labels and squared norms `|x_t|^2` on the device."""
    xt_j = jnp.asarray(setup.xt)
    return xt_j, jnp.asarray(setup.yt), jnp.sum(xt_j * xt_j, axis=1)


def _block_sums(setup: _Setup, starts: range, search: Search | None = None,
                device: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sums over the validation chunks starting at `starts` of each training point's values
    and (with `setup.squares`) squared values, float64 `(N,)` each, chunks added in order.
    A block is the unit of a Ray task; one process runs the blocks in turn, so both give
    the same bits. `device`: `_on_device(setup)` if already there (else made here)."""
    xt_j, yt_j, sq_t = device or _on_device(setup)
    n, chunk = setup.n, setup.chunk
    total, squares = np.zeros(n), np.zeros(n)
    for start in starts:
        sl = slice(start, start + chunk)
        xc = jnp.asarray(setup.xv[sl])
        if search is not None:
            order = jnp.asarray(search(setup.xv[sl], setup.kstar))
        elif setup.kstar == n:
            order = _order_full(xt_j, sq_t, xc)
        else:
            order = _order_top(xt_j, sq_t, xc, kstar=setup.kstar)
        yc = jnp.asarray(setup.yv[sl])
        s = (_ranked_values_regression(order, yt_j, yc, k=setup.k) if setup.regression
             else _ranked_values(order, yt_j, yc, k=setup.k, n=n))
        # per-point sums on the host, padding rows dropped: numpy's bincount is ~40x
        # faster than an XLA CPU scatter here, and accumulates in float64
        rows = min(chunk, setup.m - start)
        s, flat = np.asarray(s)[:rows].reshape(-1), np.asarray(order)[:rows].reshape(-1)
        total += np.bincount(flat, weights=s, minlength=n)
        if setup.squares:
            squares += np.bincount(flat, weights=np.square(s, dtype=np.float64), minlength=n)
    return total, squares


def embeddings(utility, embedding: Any = "raw") -> tuple[np.ndarray, np.ndarray]:
    """Training and validation features for KNN-Shapley.

    Args:
      utility: a `Utility` (its train/valid sets and target model).
      embedding: "raw" (the features), "model" (the target model's penultimate layer,
        `model.embed`, with params trained on the full training set, so that values depend
        on the target model) or a pair `(train_embedding (N, w), valid_embedding (M, w))`.
    """
    train, valid = utility.train, utility.valid
    if isinstance(embedding, str) and embedding == "raw":
        return train.x, valid.x
    if isinstance(embedding, str) and embedding == "model":
        if utility.model.embed is None:
            raise ValuationError(f"model {utility.model.name} has no embed function; pass "
                                 "embedding='raw' or your own (train, valid) embeddings")
        params = utility.fit_full()
        return (np.asarray(utility.model.embed(params, jnp.asarray(train.x))),
                np.asarray(utility.model.embed(params, jnp.asarray(valid.x))))
    if isinstance(embedding, (tuple, list)) and len(embedding) == 2:
        et, ev = (np.asarray(e, np.float32) for e in embedding)
        if et.shape[0] != train.n or ev.shape[0] != valid.n:
            raise ValuationError(f"embeddings have {et.shape[0]} and {ev.shape[0]} rows for "
                                 f"{train.n} training and {valid.n} validation samples")
        return et, ev
    raise ValuationError(f"unknown embedding {embedding!r}; pass 'raw', 'model' or a pair "
                         "(train_embedding, valid_embedding)")
