"""OpenDataVal side of the DVRL baseline: run in OpenDataVal's own environment, never imported
by valuate.

`ODV_PYTHON experiments/dvrl_baseline.py IN.npz OUT.json` (called by `experiments.dvrl`)
reads the splits that the caller wrote (`xt, yt, xv, yv`: standardised float features, integer
labels 0..k-1; `seed`; `rl_epochs`; optionally `n_classes`) and runs OpenDataVal's DVRL (Yoon
et al., ICML 2020: a value estimator trained by REINFORCE on the validation accuracy of
models fitted to its Bernoulli selections) with OpenDataVal's defaults except `rl_epochs`.
The data go in through `DataFetcher.from_data_splits` with one-hot labels (the validation set
doubles as the unused test split), the prediction model is OpenDataVal's scikit-learn wrapper
around `LogisticRegression(C=1)` (valuate's L2 target) and the metric is accuracy. Seeds:
`torch.manual_seed`, `np.random.seed` and DVRL's `random_state`; one torch thread (one
process, as on the pyDVL side; also the faster setting for DVRL's small networks). Writes
`{"values": one per training row in row order, "seconds": wall time of training and
valuation, "rl_epochs", "versions"}` to `OUT.json`. Imports only numpy, torch, scikit-learn
and OpenDataVal.
"""

import json
import sys
import time

import numpy as np


def main(src: str, dst: str) -> None:
    import opendataval
    import sklearn
    import torch
    from opendataval.dataloader import DataFetcher
    from opendataval.dataval import DVRL
    from opendataval.metrics import Metrics
    from opendataval.model import ClassifierSkLearnWrapper
    from sklearn.linear_model import LogisticRegression

    z = np.load(src)
    xt, xv = z["xt"].astype(np.float32), z["xv"].astype(np.float32)
    yt, yv = z["yt"].astype(np.int64), z["yv"].astype(np.int64)
    seed, rl_epochs = int(z["seed"]), int(z["rl_epochs"])
    k = int(z["n_classes"]) if "n_classes" in z else int(max(yt.max(), yv.max())) + 1
    eye = np.eye(k, dtype=np.float32)

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    fetcher = DataFetcher.from_data_splits(xt, eye[yt], xv, eye[yv], xv, eye[yv],
                                           one_hot=True, random_state=seed)
    model = ClassifierSkLearnWrapper(LogisticRegression, k, C=1.0)
    start = time.perf_counter()
    evaluator = DVRL(rl_epochs=rl_epochs, random_state=seed)
    evaluator.train(fetcher, model, Metrics.ACCURACY)
    values = np.atleast_1d(np.asarray(evaluator.data_values, float))
    seconds = time.perf_counter() - start
    if values.shape != (len(xt),):
        raise RuntimeError(f"DVRL returned {values.shape} values for {len(xt)} rows")
    out = {"values": values.tolist(), "seconds": seconds, "rl_epochs": rl_epochs,
           "versions": {"opendataval": opendataval.__version__, "torch": torch.__version__,
                        "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                        "python": sys.version.split()[0]}}
    with open(dst, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
