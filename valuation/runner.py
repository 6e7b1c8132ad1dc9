"""The one host loop that drives Monte Carlo estimators: keyed draws, stopping, checkpoints.

Where it sits: between an `Estimator` (permutation/Banzhaf semivalues, Data-OOB, ...) and the
`ValuationResult` that `api.value` builds. The loop lives on the host because each update
calls the utility engine, which trains whole batches of models in compiled programs.

Determinism: draw j (a permutation, a coalition, a bootstrap model) always uses the key
`jax.random.fold_in(key, j)`, whatever the number of draws per update (`batch`) or the
utility's chunk size. The same key therefore gives the same values (up to float64 rounding in
the running statistics) for any batch size, and a resumed run repeats an uninterrupted one.

Budgets: before each update the runner asks the stopping rule what is left of its budgets
(`Rule.left`, a `Limit` of draws and evaluations) and the estimator spends no more: the last
update is shortened to what is left, so `max_draws(d)` makes exactly d draws and
`max_evaluations(e)` spends exactly e evaluations (a permutation the budget cannot finish is
dropped, its evaluations counted; see `shapley.permutation`), whatever the batch size. The
estimator still receives a whole batch of keys and trains whole chunks of models (static
shapes, no recompilation); the draws past the limit are padding, neither folded in nor
counted.

Checkpoint API (for long jobs and the CLI's `--job-dir`):

    out = run(estimator, utility, key=0, stop=max_draws(1000),
              checkpoint="job/state.npz", checkpoint_every=1)

* After every `checkpoint_every` updates, and once more at the end, the file `checkpoint`
  is replaced atomically (`results.atomic_write`: a kill at any moment leaves either the old
  or the new file, never a torn one). It holds the estimator state, the number of draws,
  evaluations and seconds so far, the previous estimate (for `rank_stable`) and a hash of
  the configuration (estimator name, parameters and batch, key, the utility's settings and a
  fingerprint of its data, plus the caller's `config`).
* If the file exists when `run` starts, the run resumes from it: the next draw is the one the
  interrupted run would have made next, so a resumed run returns exactly what an
  uninterrupted run would (apart from `max_time`, whose clock keeps counting). A file from a
  different configuration raises `ValuationError`; delete it or pass another path.
* The file also records the estimator's name and `Estimator.version`, which each estimator
  raises whenever the same key starts to give other draws or another state (Data-OOB's
  version 2 draws its bootstrap counts on the host). A checkpoint written by another version,
  or before versions were recorded, is refused with one error: its draws would mix with
  this version's. `distributed.ray_run` writes and resumes the same files.
* A finished run leaves its final checkpoint behind; running again returns the same result
  at once (the stopping rule fires before any new draw).

Long runs: after the first update of a session, a run projected to take more than
`ESTIMATE_AFTER` seconds prints a cost estimate (evaluations to go and the measured rate)
on stderr with the progress bar.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .errors import ValuationError
from .estimate import Estimate
from .results import atomic_write

__all__ = ["Estimator", "Limit", "Progress", "RunOutput", "Saved", "as_key", "config_hash",
           "cost_estimate", "draw_keys", "load_checkpoint", "run", "save_checkpoint"]

ESTIMATE_AFTER = 60.0  # print a cost estimate when a run projects to more seconds than this


class Limit(NamedTuple):
    """What an update may spend: draws (an int) and utility evaluations (`math.inf`: no
    limit)."""

    draws: float = math.inf
    evaluations: float = math.inf


class Estimator(NamedTuple):
    """A Monte Carlo estimator as pure functions of an explicit state.

    Attributes:
      init: `init(n) -> state`, a pytree of numpy arrays for `n` training samples.
      update: `update(state, utility, keys, limit) -> (state, evaluations, draws)`: make the
        draws of the rows of `keys` `(b, 2)` in order, at most `limit.draws` of them and
        spending at most `limit.evaluations` utility evaluations (models trained), score
        them with `utility` and fold them into the state; returns the evaluations spent and
        the draws folded in (the first `draws` rows of `keys`).
      estimate: `estimate(state) -> Estimate`.
      name: method name stored with results, e.g. "tmc_shapley".
      params: JSON-ready parameters stored with results.
      batch: default draws per update (a multiple of `batch_multiple`), or None for the
        utility's chunk (models per compiled call).
      batch_multiple: draws that must share an update (2 for antithetic pairs).
      extra: `extra(state) -> dict` of JSON-ready records for the result's `extra` (e.g.
        truncation positions), or None.
      version: the estimator's draw/state format, recorded in checkpoints; raise it when
        the same key starts to give other draws or another state, so that older
        checkpoints are refused instead of mixed with the new draws.
    """

    init: Callable[[int], Any]
    update: Callable[[Any, Any, jax.Array, Limit], tuple[Any, int, int]]
    estimate: Callable[[Any], Estimate]
    name: str
    params: dict
    batch: int | None
    batch_multiple: int = 1
    extra: Callable[[Any], dict] | None = None
    version: int = 1


@dataclasses.dataclass(frozen=True)
class Progress:
    """What a stopping rule may look at (see `shapley.stopping`).

    Attributes:
      estimate: the current estimate.
      previous: the estimate at the previous check (None before the first update).
      evaluations: utility evaluations (models trained) so far.
      draws: Monte Carlo draws so far (permutations, coalitions, bootstrap models).
      seconds: wall time spent so far, in seconds (summed over resumed runs).
    """

    estimate: Estimate
    previous: Estimate | None
    evaluations: int
    draws: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class RunOutput:
    """What `run` returns: the final estimate, state and bookkeeping.

    Attributes:
      estimate: values, stderr, counts, each `(n,)`.
      state: the estimator's final state.
      evaluations: utility evaluations spent (all sessions of a resumed run).
      draws: Monte Carlo draws made.
      seconds: wall time, summed over sessions.
      reason: the stopping rule(s) that fired.
      resumed: whether this session started from a checkpoint.
    """

    estimate: Estimate
    state: Any
    evaluations: int
    draws: int
    seconds: float
    reason: str
    resumed: bool


def as_key(key_or_seed) -> jax.Array:
    """A `jax.random` key from an int seed or a key."""
    if isinstance(key_or_seed, (int, np.integer)):
        return jax.random.PRNGKey(int(key_or_seed))
    return jnp.asarray(key_or_seed)


def draw_keys(key: jax.Array, start: int, count: int) -> jax.Array:
    """Keys of draws `start .. start + count - 1`: `fold_in(key, j)`, shape `(count, 2)`."""
    return _draw_keys(key, np.uint32(start), int(count))


class _PlainLines:
    """tqdm's stream when stderr is not a terminal (a log file, a pipe): each refresh becomes
    one plain line, at most one per `interval` seconds plus the finished bar, instead of
    carriage-return redraws that fill the log."""

    def __init__(self, stream, interval: float = 10.0):
        self.stream, self.interval, self.last, self.line = stream, interval, -math.inf, ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        now = time.monotonic()
        if line and line != self.line and (now - self.last >= self.interval
                                           or "100%" in line):
            self.stream.write(line + "\n")
            self.last, self.line = now, line

    def flush(self) -> None:
        self.stream.flush()


def progress_stream():
    """Where progress bars write: stderr itself on a terminal, else plain lines."""
    return sys.stderr if sys.stderr.isatty() else _PlainLines(sys.stderr)


@functools.partial(jax.jit, static_argnums=2)
def _draw_keys(key, start, count):
    # compiled once per batch size; `start` is traced, so later updates reuse the program
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
        key, start + jnp.arange(count, dtype=jnp.uint32))


def _fingerprint(utility) -> dict:
    out = {}
    if hasattr(utility, "describe"):
        out["utility"] = utility.describe()
    for name in ("train", "valid"):
        data = getattr(utility, name, None)
        if data is not None:
            h = hashlib.sha256(np.ascontiguousarray(data.x).tobytes())
            h.update(np.ascontiguousarray(data.y).tobytes())
            out[name] = h.hexdigest()[:16]
    return out


def config_hash(estimator: Estimator, utility, n: int, key: jax.Array, batch: int,
                config: dict | None) -> str:
    """Hash of everything that determines a run's draws and values."""
    blob = {"name": estimator.name, "version": estimator.version, "params": estimator.params,
            "batch": batch, "n": n,
            "key": np.asarray(jax.random.key_data(key) if jnp.issubdtype(
                key.dtype, jax.dtypes.prng_key) else key).tolist(),
            "utility": _fingerprint(utility), "config": config or {}}
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Saved(NamedTuple):
    """A checkpoint's contents: the estimator state, the draws, evaluations and seconds so
    far, and the estimate before the last update (None if there was none)."""

    state: Any
    draws: int
    evaluations: int
    seconds: float
    previous: Estimate | None


def _version(estimator: Estimator) -> str:
    return f"{estimator.name}/{estimator.version}"


def save_checkpoint(path, estimator: Estimator, saved: Saved, digest: str) -> None:
    """Replace the checkpoint file `path` atomically with `saved` (module docstring);
    `digest` is the run's `config_hash`."""
    arrays = {f"leaf_{i}": np.asarray(a)
              for i, a in enumerate(jax.tree_util.tree_leaves(saved.state))}
    arrays.update(draws=np.int64(saved.draws), evaluations=np.int64(saved.evaluations),
                  seconds=np.float64(saved.seconds), config_hash=np.array(digest),
                  version=np.array(_version(estimator)))
    if saved.previous is not None:
        arrays.update(prev_values=saved.previous.values, prev_stderr=saved.previous.stderr,
                      prev_counts=saved.previous.counts)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, write)


def load_checkpoint(path, estimator: Estimator, n: int, digest: str) -> Saved:
    """The checkpoint `path` of a run of `estimator` on `n` samples whose `config_hash` is
    `digest`.

    Raises:
      ValuationError: the file was written by another version of the estimator (or before
        versions were recorded), or by a run with another configuration.
    """
    fresh = ("delete it (with `valuate value`: delete the job folder) to start afresh, or "
             "pass another checkpoint path (a fresh --job-dir)")
    with np.load(path) as z:
        written = str(z["version"]) if "version" in z.files else None
        # another estimator's file is a configuration mismatch, which the hash tells
        if written is None or (written.split("/")[0] == estimator.name
                               and written != _version(estimator)):
            raise ValuationError(
                f"checkpoint {os.fspath(path)!r} was written by "
                f"{written or 'an unrecorded version'} of the estimator, "
                f"this is {_version(estimator)}: their draws may differ and must not be mixed; "
                + fresh)
        if str(z["config_hash"]) != digest:
            raise ValuationError(
                f"checkpoint {os.fspath(path)!r} belongs to a different configuration (method, "
                "parameters, seed, batch or data changed); " + fresh)
        _, treedef = jax.tree_util.tree_flatten(estimator.init(n))
        leaves = [z[f"leaf_{i}"] for i in range(treedef.num_leaves)]
        previous = None
        if "prev_values" in z.files:
            previous = Estimate(z["prev_values"], z["prev_stderr"], z["prev_counts"])
        return Saved(jax.tree_util.tree_unflatten(treedef, leaves), int(z["draws"]),
                     int(z["evaluations"]), float(z["seconds"]), previous)


def cost_estimate(evaluations: int, completion: float, rate: float) -> tuple[float, str]:
    """Seconds left and a one-line cost estimate, from the evaluations so far, the stopping
    rule's completion in (0, 1] (exact for budget rules; a guess for convergence rules,
    whose completion need not grow linearly) and the measured evaluations per second."""
    total = evaluations / max(completion, 1e-9)
    left = (total - evaluations) / max(rate, 1e-9)
    return left, (f"cost estimate: about {total:,.0f} utility evaluations (models trained) "
                  f"at {rate:.3g}/s -> about {left / 60:.1f} min to go")


def run(
    estimator: Estimator,
    utility,
    *,
    key,
    stop,
    n: int | None = None,
    batch: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    progress: bool = True,
    config: dict | None = None,
) -> RunOutput:
    """Drive `estimator` until `stop` fires; optionally checkpoint and resume.

    Args:
      estimator: the `Estimator` to run.
      utility: passed to `estimator.update`; a `utility.Utility` or any callable game
        `(B, n) -> (B,)`.
      key: int seed or `jax.random` key; draw j uses `fold_in(key, j)`.
      stop: a stopping rule (`shapley.stopping`), checked before every update.
      n: number of training samples (default `utility.n`).
      batch: draws per update (default `estimator.batch`, else `utility.chunk`); results
        do not depend on it, and the last update is shortened to what is left of a budget.
      checkpoint: file path of the checkpoint (see the module docstring), or None.
      checkpoint_every: save after every this many updates.
      progress: show a tqdm bar on stderr with the rule's completion and evaluations/s.
      config: extra JSON-ready settings that must match for a resume (e.g. a job's
        data path).

    Returns:
      A `RunOutput`.
    """
    n = int(utility.n if n is None else n)
    batch = int(batch or estimator.batch or getattr(utility, "chunk", 64))
    if batch < 1 or batch % estimator.batch_multiple:
        raise ValuationError(f"batch must be a positive multiple of "
                             f"{estimator.batch_multiple} for {estimator.name}, got {batch}")
    if int(checkpoint_every) < 1:
        raise ValuationError(f"checkpoint_every must be >= 1, got {checkpoint_every!r}")
    key = as_key(key)
    state = estimator.init(n)
    digest = config_hash(estimator, utility, n, key, batch, config)
    draws = evaluations = 0
    spent, previous, resumed = 0.0, None, False
    if checkpoint is not None and os.path.exists(checkpoint):
        state, draws, evaluations, spent, previous = load_checkpoint(checkpoint, estimator, n,
                                                                     digest)
        resumed = True
    start = time.perf_counter()
    session_evals, updates = 0, 0
    bar = tqdm(total=100, file=progress_stream(), disable=not progress, desc=estimator.name,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
    current = estimator.estimate(state)
    try:
        while True:
            seconds = spent + time.perf_counter() - start
            status = Progress(current, previous, evaluations, draws, seconds)
            if stop.check(status):
                reason = ", ".join(stop.fired(status))
                break
            left = stop.left(status)
            limit = Limit(min(batch, left.draws), left.evaluations)
            state, used, made = estimator.update(state, utility, draw_keys(key, draws, batch),
                                                 limit)
            if not (used or made):
                raise ValuationError(f"{estimator.name} could not spend what is left of the "
                                     f"budget ({limit}); raise the budget")
            draws, evaluations, previous = draws + int(made), evaluations + int(used), current
            current = estimator.estimate(state)
            session_evals, updates = session_evals + int(used), updates + 1
            if checkpoint is not None and updates % int(checkpoint_every) == 0:
                save_checkpoint(checkpoint, estimator, Saved(
                    state, draws, evaluations, spent + time.perf_counter() - start, previous),
                    digest)
            elapsed = time.perf_counter() - start
            status = Progress(current, previous, evaluations, draws, spent + elapsed)
            completion = stop.completion(status)
            if progress and updates == 1 and 0 < completion < 1:
                left, line = cost_estimate(evaluations, completion, session_evals / elapsed)
                if left > ESTIMATE_AFTER:
                    bar.write(line, file=sys.stderr)
            bar.update(int(100 * completion) - bar.n)
            bar.set_postfix_str(f"{evaluations} evals, {session_evals / elapsed:.0f} evals/s",
                                refresh=True)
    finally:
        bar.close()
    if checkpoint is not None:
        save_checkpoint(checkpoint, estimator, Saved(state, draws, evaluations, seconds,
                                                     previous), digest)
    return RunOutput(current, state, evaluations, draws, seconds, reason, resumed)


