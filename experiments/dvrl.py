"""DVRL baseline (OpenDataVal) on valuate's splits, run in OpenDataVal's own environment.

DVRL (Yoon et al., ICML 2020) is compared only when a separate environment with OpenDataVal
exists (`/work/odv-venv`, or the interpreter in `VALUATE_ODV_PYTHON`); it is never a
dependency of valuate. `dvrl_values` writes the training and validation splits to a
temporary `.npz`, runs `experiments/dvrl_baseline.py` with that interpreter (OpenDataVal's
DVRL, scikit-learn `LogisticRegression(C=1)` as the prediction model, accuracy as the
reward) and reads back one value per training row. When the interpreter is missing or the
run fails it returns a short reason instead, for the benchmark's table. Imports only numpy
and the standard library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

__all__ = ["ODV_PYTHON", "RL_EPOCHS", "dvrl_values"]

ODV_PYTHON = os.environ.get("VALUATE_ODV_PYTHON", "/work/odv-venv/bin/python")
# OpenDataVal's default number of value-estimator updates (one 32-row batch each); a few
# seconds on one CPU thread for 600 training rows.
RL_EPOCHS = 1000
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dvrl_baseline.py")


def dvrl_values(train, valid, *, seed: int, rl_epochs: int = RL_EPOCHS,
                python: str = ODV_PYTHON,
                timeout: float = 1800.0) -> tuple[np.ndarray, float] | str:
    """DVRL values of `train`'s rows (validation reward on `valid`) and the wall time.

    `train` and `valid` are `valuation.Dataset`s (`.x` float features, `.y` integer codes).
    Returns `(values, seconds)` with `values[i]` the value of training row `i` and
    `seconds` the time OpenDataVal spent training and valuing (not the interpreter's start),
    or a string saying why DVRL was skipped or failed.
    """
    if not os.path.exists(python):
        return f"skipped: {python} not found"
    n_classes = int(max(np.max(train.y), np.max(valid.y))) + 1
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.json")
        np.savez(src, xt=np.asarray(train.x, np.float32), yt=np.asarray(train.y, np.int64),
                 xv=np.asarray(valid.x, np.float32), yv=np.asarray(valid.y, np.int64),
                 seed=int(seed), rl_epochs=int(rl_epochs), n_classes=n_classes)
        try:
            run = subprocess.run([python, SCRIPT, src, dst], check=False, capture_output=True,
                                 text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"failed: DVRL timed out after {timeout:.0f} s"
        except OSError as err:
            return f"failed: {err}"
        if run.returncode != 0:
            lines = [ln for ln in run.stderr.strip().splitlines() if ln.strip()]
            return f"failed: exit {run.returncode}: {lines[-1] if lines else 'no message'}"
        with open(dst) as f:
            out = json.load(f)
    values = np.asarray(out["values"], float)
    if values.shape != (len(train.y),):
        return f"failed: {values.shape[0]} values for {len(train.y)} rows"
    return values, float(out["seconds"])


if __name__ == "__main__":  # smoke run: python -m experiments.dvrl [task] [rl_epochs]
    from valuation.evaluate.noisy_labels import detection_auroc, detection_f1
    from valuation.tasks import make_task

    task = make_task(sys.argv[1] if len(sys.argv) > 1 else "breast_cancer", noise=0.1, seed=0)
    result = dvrl_values(task.train, task.valid, seed=0,
                         rl_epochs=int(sys.argv[2]) if len(sys.argv) > 2 else RL_EPOCHS)
    if isinstance(result, str):
        print(result)
    else:
        v, s = result
        print(f"{task.name}: {s:.1f} s  F1 {detection_f1(v, task.noisy):.3f}  "
              f"AUROC {detection_auroc(v, task.noisy):.3f}")
