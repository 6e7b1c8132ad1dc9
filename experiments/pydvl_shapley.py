"""pyDVL side of `bench_shapley`: run in pyDVL's own environment, never imported by valuate.

`PYDVL_PYTHON -m experiments.pydvl_shapley IN.npz OUT.json` (or as a plain script) reads the
splits and budgets that `bench_shapley` wrote (`xt, yt, xv, yv`, `tmc`, `banzhaf`, `oob`,
`k`, `time_limit`) and runs pyDVL 0.10's TMC-Shapley, MSR Banzhaf, Data-OOB and
KNN-Shapley with the same model class (scikit-learn `LogisticRegression(C=1)`, the same L2
objective as valuate's target), one process (joblib's default), writing each method's
values and wall time to `OUT.json`. Imports only numpy, scikit-learn and pyDVL.
"""

import json
import sys
import time

import numpy as np


def main(src: str, dst: str) -> None:
    from joblib import parallel_config
    from pydvl.valuation import (
        DataOOBValuation,
        Dataset,
        KNNShapleyValuation,
        MaxTime,
        MaxUpdates,
        ModelUtility,
        MSRBanzhafValuation,
        RelativeTruncation,
        SupervisedScorer,
        TMCShapleyValuation,
    )
    from sklearn.ensemble import BaggingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    z = np.load(src)
    train, valid = Dataset(z["xt"], z["yt"]), Dataset(z["xv"], z["yv"])
    limit = float(z["time_limit"])
    out = {}

    def utility():
        scorer = SupervisedScorer("accuracy", valid, default=0.0)
        return ModelUtility(LogisticRegression(C=1.0), scorer, catch_errors=True,
                            show_warnings=False)

    def timed(name, make, draws=None):
        start = time.perf_counter()
        with parallel_config(n_jobs=1):
            valuation = make().fit(train)
        values = np.asarray(valuation.result.values, float)
        order = np.asarray(valuation.result.indices)
        full = np.empty(len(values))
        full[order] = values
        counts = getattr(valuation.result, "counts", None)
        if draws is None and counts is not None:  # permutations / coalitions sampled
            draws = float(np.median(counts))
        out[name] = {"seconds": time.perf_counter() - start, "values": full.tolist(),
                     "draws": draws}
        print(f"pydvl {name}: {out[name]['seconds']:.1f} s", flush=True)

    timed("tmc_shapley", lambda: TMCShapleyValuation(
        utility(), truncation=RelativeTruncation(rtol=0.01),
        is_done=MaxUpdates(int(z["tmc"])) | MaxTime(limit), seed=0, show_warnings=False))
    timed("msr_banzhaf", lambda: MSRBanzhafValuation(
        utility(), is_done=MaxUpdates(int(z["banzhaf"])) | MaxTime(limit), batch_size=64,
        seed=0, show_warnings=False))

    def oob():
        bag = BaggingClassifier(LogisticRegression(C=1.0), n_estimators=int(z["oob"]),
                                random_state=0).fit(train.data().x, train.data().y)
        return DataOOBValuation(bag)

    timed("data_oob", oob, draws=int(z["oob"]))
    timed("knn_shapley", lambda: KNNShapleyValuation(
        KNeighborsClassifier(n_neighbors=int(z["k"])), valid, progress=False), draws=0)
    with open(dst, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
