"""Compile once: a 50-permutation TMC run cold, warm in the same process, and in a second
process that reads JAX's persistent compilation cache.

Each case runs in a fresh Python process (so "cold" really compiles): `cold` with the cache
off, then `fill` and `second` with a new, empty cache folder (the first fills it, the second
reads it). Within each process the run is repeated, so `warm` is the same process's second
call (the engine's programs kept in memory). Data: breast_cancer 60/40, standardised, the
default logistic-regression target.

    python -m experiments.bench_compile [--draws 50] [--out results]

Writes results/bench_compile.json. Seconds drift with the machine's load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, sys, time
start = time.perf_counter()
import valuation as va
from valuation.shapley import stopping as st
imported = time.perf_counter() - start
train, valid = va.load_bundled("breast_cancer").split(0.6, 0.4, seed=0)
train, (mean, std) = train.standardize()
valid = valid.standardize(mean, std)[0]
calls = []
for _ in range(2):
    start = time.perf_counter()
    va.value(train, method="tmc", valid=valid, stop=st.max_draws({draws}), progress=False)
    calls.append(time.perf_counter() - start)
print(json.dumps({{"import_s": imported, "first_s": calls[0], "again_s": calls[1]}}))
"""


def _child(draws: int, cache: str) -> dict:
    env = {**os.environ, "VALUATE_COMPILE_CACHE": cache}
    out = subprocess.run([sys.executable, "-c", CHILD.format(draws=draws)], env=env,
                         check=True, capture_output=True, text=True, cwd=os.getcwd())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        cold = _child(args.draws, "off")
        fill = _child(args.draws, folder)
        second = _child(args.draws, folder)
    report = {"draws": args.draws, "load_1min": os.getloadavg()[0],
              "cold_s": round(cold["first_s"], 2), "warm_same_process_s":
              round(cold["again_s"], 2), "cache_filling_process_s": round(fill["first_s"], 2),
              "second_process_with_cache_s": round(second["first_s"], 2),
              "import_s": round(cold["import_s"], 2), "when": time.strftime("%H:%M UTC")}
    print(json.dumps(report))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_compile.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
