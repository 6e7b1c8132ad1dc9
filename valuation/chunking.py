"""Models per compiled chunk of the utility engine, from a measured cost model.

Where it sits: `utility.make_utility` calls `auto_chunk` when the user passes no `chunk=`.
The chunk is a batch shape, fixed per utility (one compile), and never changes results (the
engine is chunk-invariant: every model's result depends on its own weights only). It only
trades time against memory, and this model says how, from measurements
(`python -m experiments.bench_chunk_cost`, XLA's `memory_analysis` of the compiled programs,
2-core CPU machine, 2026-12-02, load 2-8 while measuring):

Memory. The working set of one more model in a chunk (XLA's temporary buffers, the growth
from 8 to 64 models; `R` = training + validation rows, `D = d + 1`, `m` = logit columns,
`p` = parameters, `w` = the summed output widths of the model's dense layers):

* "pcg": `R (10 + 26 m) + 16 D^2` bytes. Measured per training row and output: 36-40 (two
  classes; n = 1k / 10k / 100k / 1M: 40 / 36 / 36 / 37-45), 27-30 (3 classes), 22-25 (10
  classes), plus 121 KB per model at n = 1k, d = 64 (the `(D, D)` preconditioners).
* "newton": `24 R m^2 + 8 p^2` (measured 23-24 bytes per row at two classes, n = 2k / 20k;
  5.7 MB per model at n = 2k, d = 64, 10 classes: the per-sample `m x m` curvature).
* "closed_form": `10 R + 12 D^2` (measured 9.6 / 8.2 bytes per row at n = 2k / 20k).
* "gd": `R (12 w + 20) + 16 p` (measured: logistic 29 / 36 bytes per row at 2 / 3 classes).
* "warm": `R (15 w + 20) + 16 p` per model trained at a time (the models queued behind them
  hold only their weights and results; `training.fit_warm_batch`). Measured with the
  linearised iteration, 2 classes, n = 2,000 (+ 200 validation rows): MLP(16) 253, MLP(64)
  959 (d = 8) and 977 (d = 30), MLP(32, 32) 737 bytes per row; n = 500, d = 64, MLP(64) 920.

Each is an upper bound of the measured points or within 5 % of them. The chunk is at most
`memory_budget / bytes per model` (and at least 1).

Time. Per solver step a chunk of `B` models costs `fixed + B * per_model`: `fixed` is paid
whatever `B` (loop and call overhead, reading the features), `per_model` is each model's own
elementwise work and products. Measured ratios `r = fixed / per_model` on the "pcg" solver
(n = 1k / 10k / 100k, d = 20 / 64 / 30 / 64 with 2 / 2 / 3 / 10 classes; chunks 8 and 64, 8
steps; before the shared-Hessian preconditioner of `glm`): 6.7, 33, 34, 3.0 / 4.5, 4.4, 5.4, 11 / 3.4, 1.2, 6.4, 29; no trend with n, median
`R_FIXED = 6`. The solvers that stop each model on convergence ("pcg", "warm") run a chunk
until its slowest model is done, and the slowest of more models is slower: the mean steps
over the chunk's steps fell by `STRAGGLER = 0.035` per doubling of `B` (measured on 512
random half-subsets, `glm.fit_logistic`, tol 1e-4, chunks 16 to 512: breast_cancer 0.74 ->
0.66, synthetic 3-class n = 2,000 0.84 -> 0.74, digits 0.85 -> 0.73, n = 10k binary 0.86
flat; after the full-data Hessian became the shared multiclass preconditioner, digits
0.74 -> 0.62 and wine 0.75 -> 0.65, synthetic 3-class 0.84 flat; assumed the same for
"warm", not measured there). The predicted seconds per model,
`(1 + r / B) (1 + s log2(B / 8))`, are least at `B = 128` for these solvers (within 1 % of
the best `B` predicted for 8 of the 12 measured `r`; 3.7, 9.4, 11.6 and 12.2 % for r = 1.2,
29, 33 and 34), and keep falling up to the largest candidate (1,024)
for the fixed-step solvers ("newton", "closed_form", "gd"; their `s = 0`, the cap kept from
before this model, not re-measured). The chunk is the smaller of that and the memory bound;
when memory binds (many rows) the fixed share `r / B` grows, which is the price of the budget.

"warm" trains `chunk` models at a time from a queue (`training.fit_warm_batch`), so a chunk
no longer waits for its slowest model; what grows with the chunk is the working set, and past
the caches the cost per model grows with it. Measured (1,024 random half-subsets,
`fit_warm_batch` with 1,024 queued, CPU seconds, load 4-7, two runs each; 2026-12-02):
breast_cancer MLP(64) (608 KB per model by the memory model) 8 / 16 / 32 / 64 / 128 slots:
5.3 / 5.3-5.5 / 5.7-5.9 / 7.8-7.9 / 9.6 s; digits MLP(64) (1.2 MB per model) 8 / 16 / 32 /
64 / 128: 11.2-11.3 / 11.6-12.5 / 13.6-13.7 / 15.8-16.8 / 17.8-18.0 s (64 and up in an
earlier sitting). On the quieter machine (load 1.5, one run, wall seconds; there the larger
products use both cores): breast_cancer 8 / 16 / 32 / 128: 5.37 / 4.90 / 4.65 / 5.57, digits
9.83 / 9.54 / 8.35 / 10.81. So "warm" keeps the working set of the models it trains at a time
within `CACHE_WORKING_SET["warm"]` bytes, 20 MB between the two optima (breast_cancer 32,
digits 16, each within 15 % of the best measured in both settings), and its chunk (models per
call) is `WARM_QUEUE` times that (`warm_slots` inverts it), so that callers that size their
batches by the chunk (the runner, TMC's blocks, Data-OOB) keep the queue full.

The same holds for "pcg" once its chunk's working set outgrows the caches (this machine: 32
MB of L3 shared by both cores, 1 MB of L2 each): every solver step makes several elementwise
passes over `(n, m, B)` arrays, and past the caches each pass runs at memory speed. Measured
(`bench_utility` tasks, 1,024 random half-subsets, CPU fits per second, best of three warm
calls, load 2-4 with another session running; 2026-12-02), chunks 16 / 32 / 48 / 64 / 96 /
128: n = 10k binary (474 KB per model) 756 / 1,064 / 1,114 / 1,077 / 755 / 724; 3 classes,
n = 2,000 (279 KB) 1,236 / 2,016-2,018 / 2,012-2,238 / 1,507-1,657 / 1,714 / 1,468;
digits (338 KB) 350 / 357-480 / 343-379 / 350-412 / 353 / 357 (noisy: no clear optimum);
breast_cancer (36 KB) 4,573 / 6,320 / 7,654 / 7,901 / 7,455 / 8,185. The best chunks hold
9-23 MB; 16 MB, floored to a power of two (32, 32, 32, 128), is within 4 / 10 / 0 / 0 % of
the best measured, where the time model's 128 lost 35 / 34 / - / 0 %. The bound is applied
on a CPU only (a GPU's batch is not cache-bound; not measured there).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .data import Dataset
from .models import Model, n_params

__all__ = ["CACHE_WORKING_SET", "CANDIDATES", "R_FIXED", "STRAGGLER", "WARM_QUEUE",
           "auto_chunk", "bytes_per_model", "time_optimal", "warm_slots"]

CANDIDATES = tuple(2 ** i for i in range(3, 11))  # 8 .. 1,024 models
R_FIXED = 6.0  # measured median of fixed / per-model cost per solver step (module docstring)
STRAGGLER = {"pcg": 0.035, "warm": 0.035}  # loss of mean/max steps per doubling of the chunk
# bytes: on a CPU, the models a solver trains at a time keep their working set within this
# (the caches; module docstring)
CACHE_WORKING_SET = {"pcg": 16e6, "warm": 20e6}
WARM_QUEUE = 32  # "warm": models per call (the chunk) per model trained at a time


def _widths(params) -> int:
    """Summed output widths of the dense layers (the `w` of the module docstring)."""
    return sum(int(leaf.shape[-1]) for leaf in jax.tree_util.tree_leaves(params)
               if leaf.ndim == 2)


def bytes_per_model(model: Model, train: Dataset, valid: Dataset, solver: str) -> float:
    """Working-set bytes one more model adds to a chunk (the measured memory model)."""
    # Shapes only (`eval_shape`): running `init` eagerly compiled its every op (1.5 s for an
    # MLP on a busy 2-core machine, paid by every new utility).
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                            jax.ShapeDtypeStruct((1, train.d), jnp.float32))
    rows, big_d, p = train.n + valid.n, train.d + 1, n_params(params)
    m = 1 if train.n_classes <= 2 else train.n_classes
    if solver == "pcg":
        return rows * (10 + 26 * m) + 16 * big_d ** 2
    if solver == "newton":
        return 24 * rows * m * m + 8 * p * p
    if solver == "closed_form":
        return 10 * rows + 12 * big_d ** 2
    per_width = 15 if solver == "warm" else 12
    return rows * (per_width * _widths(params) + 20) + 16 * p


def time_optimal(solver: str) -> int:
    """The chunk with the least predicted seconds per model (the time model)."""
    slope = STRAGGLER.get(solver, 0.0)
    return min(CANDIDATES, key=lambda b: (1 + R_FIXED / b) * (1 + slope * math.log2(b / 8)))


def auto_chunk(model: Model, train: Dataset, valid: Dataset, solver: str,
               memory_budget: float) -> int:
    """Models per chunk: the time-optimal chunk, lowered to fit `memory_budget` bytes and,
    on a CPU, for "pcg" and "warm" to the largest power of two whose models at a time fit
    `CACHE_WORKING_SET`; "warm" queues `WARM_QUEUE` times as many models per call."""
    per_model = bytes_per_model(model, train, valid, solver)
    at_a_time = max(1, min(time_optimal(solver), int(memory_budget // per_model)))
    cache = CACHE_WORKING_SET.get(solver) if jax.default_backend() == "cpu" else None
    if cache is not None:
        at_a_time = min(at_a_time, 1 << max(0, int(cache // per_model).bit_length() - 1))
    return at_a_time * WARM_QUEUE if solver == "warm" else at_a_time


def warm_slots(chunk: int) -> int:
    """Models "warm" trains at a time in a chunk of `chunk` models per call."""
    return max(1, chunk // WARM_QUEUE)
