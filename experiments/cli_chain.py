"""The meta-learner's command-line chain as a user runs it, timed: value, fit-meta, predict.

Where it sits: the CLI column of the meta-learner benchmark (`bench_metalearner.py`). The
pool, the validation set and the rows to predict are written as CSV files (features by name,
a `label` column, an `id` column), then

    valuate value pool.csv --label label --id-column id --valid valid.csv --method M \\
        --budget B --batch C --seed S --out pool-values.parquet
    valuate fit-meta pool-values.parquet --out meta.npz --members K --steps T
    valuate predict rows.csv --meta meta.npz --out predicted.parquet

run as subprocesses of `python -m valuate` with the checkout this module belongs to first on
`PYTHONPATH`. Each step's wall time is what the user waits for: interpreter start, imports,
reading and writing files and every compilation included. The target model of this chain is
trained on the pool alone (the CLI values every row of the table it is given), so rows of
the training set outside the pool are new rows to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from valuation import Dataset, ValuationError

__all__ = ["ROOT", "run_chain", "write_rows"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_rows(data: Dataset, path: str) -> None:
    """`data` as a CSV a user would have: feature columns by name, `label`, `id`."""
    frame = pd.DataFrame(np.asarray(data.x, np.float64), columns=list(data.feature_names))
    frame["label"] = data.labels
    frame["id"] = data.ids
    frame.to_csv(path, index=False)


def _valuate(*args: str) -> float:
    """Run `python -m valuate args`; its wall time in seconds (an error on failure)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "valuate", *args, "--quiet"], env=env,
                         capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise ValuationError(f"valuate {args[0]} exited with {run.returncode}: "
                             f"{run.stderr.strip().splitlines()[-1:]}")
    return seconds


def run_chain(pool: Dataset, valid: Dataset, rows: Dataset, *, method: str, budget: int,
              batch: int, seed: int, members: int, steps: int,
              folder: str) -> tuple[pd.Series, dict[str, float]]:
    """Value `pool` with `method`, fit a meta-model, predict `rows`, all through the CLI.

    Args:
      pool, valid, rows: the table to value, the validation table, the rows to predict.
      method, budget, batch, seed: `valuate value --method --budget --batch --seed`
        (budget in utility evaluations).
      members, steps: `valuate fit-meta --members --steps`.
      folder: where the files go (created).

    Returns:
      `(predicted values indexed by the rows' ids, {"value_s", "fit_s", "predict_s"})`.
    """
    os.makedirs(folder, exist_ok=True)
    path = {name: os.path.join(folder, name) for name in (
        "pool.csv", "valid.csv", "rows.csv", "values.parquet", "meta.npz", "predicted.parquet")}
    for data, name in ((pool, "pool.csv"), (valid, "valid.csv"), (rows, "rows.csv")):
        write_rows(data, path[name])
    seconds = {
        "value_s": _valuate("value", path["pool.csv"], "--label", "label", "--id-column", "id",
                            "--valid", path["valid.csv"], "--method", method,
                            "--budget", str(budget), "--batch", str(batch),
                            "--seed", str(seed), "--out", path["values.parquet"]),
        "fit_s": _valuate("fit-meta", path["values.parquet"], "--out", path["meta.npz"],
                          "--members", str(members), "--steps", str(steps)),
        "predict_s": _valuate("predict", path["rows.csv"], "--meta", path["meta.npz"],
                              "--out", path["predicted.parquet"]),
    }
    table = pd.read_parquet(path["predicted.parquet"])
    return table.set_index(table["id"].astype(str))["value"], seconds
