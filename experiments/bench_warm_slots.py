"""The measurements behind the "warm" solver's chunk (`chunking.CACHE_WORKING_SET["warm"]`).

For each MLP task of `bench_utility` (one hidden layer of 64), 1,024 random half-subsets are
trained from the full-data fit by `training.fit_warm_batch`, all 1,024 queued in one compiled
call, at several numbers of models trained at a time (slots). Reported per task and slot
count: the CPU seconds and wall seconds of a warm call (each of `--repeats` calls), and the
working set of the slots by the memory model (`chunking.bytes_per_model`). Once per task:
the steps the models took (mean, and the mean over chunks of 128 of the chunk's slowest:
what a chunk that waits for its slowest model pays per model).

    python -m experiments.bench_warm_slots [--tasks breast_cancer_mlp digits_mlp]
                                           [--slots 8 16 32 64 128] [--repeats 2]

CPU seconds (all threads of this process) blur less with other processes on a shared
machine than wall seconds; neither is comparable across sittings.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import valuation as va
from valuation import chunking
from valuation.training import fit_warm_batch

from .bench_utility import make_task


def bench(name: str, slots: list[int], repeats: int, n_models: int = 1024) -> list[dict]:
    train, valid, _ = make_task(name)
    model = va.mlp(train.n_classes, (64,))
    utility = va.make_utility(model, train, valid)
    full, (x, y) = utility.fit_full(), utility.train_on_device
    weights = jnp.asarray(np.random.default_rng(0).random((n_models, train.n)) < 0.5,
                          jnp.float32)
    per_model = chunking.bytes_per_model(model, train, valid, "warm")
    rows = []
    for s in slots:
        run = jax.jit(lambda w, s=s: fit_warm_batch(model, x, y, w, init_params=full, slots=s,
                                                    return_steps=True))
        _, steps = jax.block_until_ready(run(weights))  # compiles
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            jax.block_until_ready(run(weights))
            rows.append({"task": name, "slots": s, "working_set_mb": round(s * per_model / 1e6, 1),
                         "cpu_s": round(time.process_time() - cpu, 2),
                         "wall_s": round(time.perf_counter() - wall, 2)})
    steps = np.asarray(steps)
    print(json.dumps({"task": name, "mean_steps": round(float(steps.mean()), 1),
                      "mean_slowest_of_128": float(np.mean([steps[i:i + 128].max()
                                                            for i in range(0, n_models, 128)]))}))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["breast_cancer_mlp", "digits_mlp"])
    parser.add_argument("--slots", nargs="+", type=int, default=[8, 16, 32, 64, 128])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    for name in args.tasks:
        for row in bench(name, args.slots, args.repeats):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
