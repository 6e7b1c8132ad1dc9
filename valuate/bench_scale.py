"""The scale benchmark behind `valuate bench --preset scale`: KNN-Shapley approximations
against exact values, the `valuate value` job on big generated CSVs, and the cost of one
utility evaluation against n.

    valuate bench --preset scale --out scale/             # the issue's sizes: ~30 min, 2 cores
    valuate bench --preset scale-quick --out scale/       # small sizes: a few minutes

Four parts, each written to `OUT/` (`knn_error.csv`, `knn_size.csv`, `cli.csv`,
`per_evaluation.csv`, `per_evaluation.png`, all of them in `scale.json`):

1. KNN-Shapley on n training x m validation points (synthetic, 10 % flipped labels): exact
   values against the top-K* truncation (several epsilon), the HNSW index (when faiss is
   installed) and validation sampling: seconds, max error (absolute and relative to the
   largest value), Spearman's rho against exact, noisy-label AUROC, and for sampling the
   share of values within 1.96 standard errors of the exact ones (the coverage).
   Part 1b (`knn_size`), the issue's size (1,000,000 x 10,000, d = 20): the top-K*
   truncation (`EPSILON`, what `valuate value --method knn` runs there) on every validation
   point, timed; its error against exact values on `ScaleSizes.knn_check` validation
   points at the full n (where both run); and validation sampling (a quarter of the points)
   against the run on all of them: error and coverage of its standard errors.
2. `valuate value BIG.csv --method knn` and `--method oob --budget 500` in-process on
   generated CSVs of n rows x 20 (written to OUT once): seconds and peak resident memory
   (`valuation.evaluate.measure`).
3. Seconds per utility evaluation (one logistic-regression model trained) for Data-OOB and
   MSR Banzhaf against n, after a warm-up update (compilation excluded), and the log-log
   slope (1 = linear in n).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import time

import jax
import numpy as np
import pandas as pd

import valuation as va
from valuate.job import run_job
from valuation.evaluate.measure import measure
from valuation.evaluate.noisy_labels import detection_auroc
from valuation.evaluate.rank_correlation import spearman
from valuation.results import atomic_write, write_json
from valuation.shapley import knn_shapley, max_draws

__all__ = ["EPSILON", "SIZES", "ScaleSizes", "cli_job", "knn_at_size", "knn_errors",
           "per_evaluation", "run_scale", "write_csv"]

D = 20
EPSILON = 1e-3  # part 1b's truncation: knn.auto_settings' choice past its exact size


def _noisy(n: int, *, seed: int, noise: float = 0.1):
    """Synthetic `(x (n, D), y, flipped)`: 2 classes, a share `noise` of labels flipped."""
    data = va.make_classification(n, D, seed=seed)
    flip = np.asarray(jax.random.uniform(jax.random.PRNGKey(seed), (n,))) < noise
    return data.x, np.where(flip, 1 - data.y, data.y), flip


def knn_errors(n: int, m: int, *, seed: int = 0, sample: int | None = None) -> list[dict]:
    """Rows of part 1 for n training x m validation points."""
    x, y, flip = _noisy(n + m, seed=seed)
    xt, yt, xv, yv = x[:n], y[:n], x[n:], y[n:]
    yv = np.where(flip[n:], 1 - yv, yv)  # clean validation labels
    noisy = flip[:n]
    start = time.perf_counter()
    exact = knn_shapley(xt, yt, xv, yv, k=10).values
    rows = [_knn_row("exact", time.perf_counter() - start, exact, exact, noisy)]
    variants = [(f"top-K* eps={eps:g}", {"epsilon": eps}) for eps in (1e-2, 1e-3, 1e-4)]
    if importlib.util.find_spec("faiss") is not None:  # the optional `ann` extra
        variants.append(("hnsw eps=0.001", {"epsilon": 1e-3, "search": "hnsw"}))
    sample = sample or m // 4
    variants.append((f"valid_sample={sample}", {"valid_sample": sample,
                                                "key": jax.random.PRNGKey(seed)}))
    for name, options in variants:
        start = time.perf_counter()
        if options.get("search") == "hnsw":
            from valuation.shapley.neighbours import hnsw_search

            options = {**options, "search": hnsw_search(xt)}
        est = knn_shapley(xt, yt, xv, yv, k=10, **options)
        row = _knn_row(name, time.perf_counter() - start, est.values, exact, noisy)
        if "valid_sample" in options:
            row["coverage_1.96"] = float(np.mean(np.abs(est.values - exact)
                                                 <= 1.96 * est.stderr))
        rows.append(row)
    for row in rows:
        row.update(n=n, m=m)
    return rows


def knn_at_size(n: int, m: int, *, check: int, seed: int = 0,
                progress: bool = True) -> list[dict]:
    """Rows of part 1b for n training x m validation points (module docstring): seconds,
    max absolute error against the reference named in "reference", the bound epsilon, and
    for the sampled run the coverage of its 1.96-standard-error intervals."""
    x, y, flip = _noisy(n + m, seed=seed)
    xt, yt, xv, yv = x[:n], y[:n], x[n:], np.where(flip[n:], 1 - y[n:], y[n:])
    noisy, key = flip[:n], jax.random.PRNGKey(seed)
    rows = []

    def timed(name, reference, xv_, yv_, **options):
        start = time.perf_counter()
        est = knn_shapley(xt, yt, xv_, yv_, k=10, progress=progress, **options)
        rows.append({"variant": name, "n": n, "m": len(yv_),
                     "seconds": round(time.perf_counter() - start, 2),
                     "epsilon": options.get("epsilon"), "reference": reference,
                     "auroc": detection_auroc(est.values, noisy)})
        return est

    full = timed(f"top-K* eps={EPSILON:g}, all {m} validation", None, xv, yv,
                 epsilon=EPSILON)
    exact = timed(f"exact, {check} validation", None, xv[:check], yv[:check]).values
    part = timed(f"top-K* eps={EPSILON:g}, {check} validation", "exact, same points",
                 xv[:check], yv[:check], epsilon=EPSILON).values
    rows[-1]["max_abs_error"] = float(np.abs(part - exact).max())
    sample = max(2, m // 4)
    est = timed(f"valid_sample={sample}, eps={EPSILON:g}", "the run on all points", xv, yv,
                epsilon=EPSILON, valid_sample=sample, key=key)
    rows[-1]["max_abs_error"] = float(np.abs(est.values - full.values).max())
    rows[-1]["coverage_1.96"] = float(np.mean(np.abs(est.values - full.values)
                                              <= 1.96 * est.stderr))
    return rows


def _knn_row(name, seconds, values, exact, noisy) -> dict:
    err = np.abs(values - exact)
    return {"variant": name, "seconds": round(seconds, 2), "max_abs_error": float(err.max()),
            "max_rel_error": float(err.max() / np.abs(exact).max()),
            "spearman": spearman(values, exact), "auroc": detection_auroc(values, noisy)}


def write_csv(path: str, n: int, *, seed: int = 0) -> None:
    """A CSV of n rows: features f0..f19 and a 0/1 `label` (10 % flipped)."""
    x, y, _ = _noisy(n, seed=seed)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(D)])
    frame["label"] = y
    frame.to_csv(path, index=False, float_format="%.6g")


def cli_job(folder: str, n: int, method: str, *, seed: int = 0, budget: int = 500) -> dict:
    """Part 2: `valuate value big.csv --label label --method METHOD` on n rows (Data-OOB
    with `--budget budget`), in this process."""
    data = os.path.join(folder, f"big{n}.csv")
    out = os.path.join(folder, f"big{n}-{method}.parquet")
    if not os.path.exists(data):
        write_csv(data, n, seed=seed)
    options = {"budget": budget} if method == "oob" else {}
    sidecar, cost = measure(run_job, data, label="label", out=out, method=method,
                            progress=False, **options)
    params = sidecar["params"]
    return {"method": method, "rows": n, "n_train": sidecar["input"]["n_train"],
            "n_valid": sidecar["input"]["n_valid"],
            "valid_sample": params.get("valid_sample"), "epsilon": params.get("epsilon"),
            "models": sidecar["extra"].get("evaluations"),
            "seconds": round(cost.seconds, 1), "load_s": round(sidecar["timings"]["load_s"], 1),
            "peak_mb": round(cost.peak_mb)}


def per_evaluation(n: int, method: str, *, seed: int = 0, m: int = 1000) -> dict:
    """Part 3: seconds per utility evaluation of `method` on n training rows."""
    x, y, _ = _noisy(n + m, seed=seed)
    train = va.load(x[:n], y[:n])
    valid = va.load(x[n:], y[n:])
    utility = va.make_utility(va.logistic_regression(2), train, valid)
    batch = utility.chunk
    run = {"method": method, "seed": seed, "progress": False, "batch": batch}
    va.value(utility, stop=max_draws(batch), **run)  # compiles
    result, cost = measure(va.value, utility, stop=max_draws(2 * batch), **run)
    evaluations = result.extra["evaluations"]
    return {"method": method, "n": n, "chunk": batch, "evaluations": evaluations,
            "seconds_per_eval": cost.seconds / evaluations, "peak_mb": round(cost.peak_mb)}


def _plot(frame: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, part in frame.groupby("method"):
        ax.loglog(part["n"], part["seconds_per_eval"], "o-", label=method)
    ax.set_xlabel("training rows n")
    ax.set_ylabel("seconds per evaluation")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclasses.dataclass(frozen=True)
class ScaleSizes:
    """Sizes of the scale benchmark's three parts.

    Attributes:
      knn: (training, validation) points of part 1.
      knn_size: (training, validation) points of part 1b.
      knn_check: validation points of part 1b's exact reference.
      cli: rows of the generated CSVs of part 2 (each valued with knn and with oob).
      oob_budget: bootstrap models of part 2's Data-OOB jobs.
      evaluations: training rows of part 3.
    """

    knn: tuple[int, int]
    cli: tuple[int, ...]
    oob_budget: int
    evaluations: tuple[int, ...]
    knn_size: tuple[int, int]
    knn_check: int


SIZES = {"scale": ScaleSizes((100_000, 1_000), (100_000, 1_000_000), 500,
                             (10_000, 100_000, 1_000_000), (1_000_000, 10_000), 100),
         "scale-quick": ScaleSizes((10_000, 500), (100_000,), 500, (10_000, 30_000),
                                   (100_000, 2_000), 50)}


def run_scale(out: str, sizes: ScaleSizes, *, seed: int = 0, plots: bool = True,
              progress: bool = True) -> dict:
    """Run the parts at `sizes`, write their tables to `out` and return the record
    (`{"knn_error": rows, "knn_size": rows, "cli": rows, "per_evaluation": rows,
    "slopes": {method: slope}}`).
    """
    echo = (lambda s: print(s, file=sys.stderr, flush=True)) if progress else (lambda s: None)
    os.makedirs(out, exist_ok=True)
    echo(f"part 1: KNN-Shapley errors at {sizes.knn[0]} x {sizes.knn[1]}")
    knn = pd.DataFrame(knn_errors(*sizes.knn, seed=seed))
    echo(knn.round(4).to_string(index=False))
    echo(f"part 1b: KNN-Shapley at {sizes.knn_size[0]} x {sizes.knn_size[1]}, d={D}")
    size = pd.DataFrame(knn_at_size(*sizes.knn_size, check=sizes.knn_check, seed=seed,
                                    progress=progress))
    echo(size.round(6).to_string(index=False))
    echo(f"part 2: valuate value on generated CSVs of {sizes.cli} rows")
    cli = pd.DataFrame([cli_job(out, n, method, seed=seed, budget=sizes.oob_budget)
                        for n in sizes.cli for method in ("knn", "oob")])
    echo(cli.to_string(index=False))
    echo(f"part 3: seconds per evaluation at n = {sizes.evaluations}")
    evals = pd.DataFrame([per_evaluation(n, method, seed=seed)
                          for method in ("oob", "banzhaf") for n in sizes.evaluations])
    slopes = {method: float(np.polyfit(np.log(part["n"]), np.log(part["seconds_per_eval"]),
                                       1)[0]) for method, part in evals.groupby("method")}
    echo(evals.to_string(index=False))
    echo(f"log-log slope of seconds per evaluation against n: {slopes}")
    for name, frame in (("knn_error", knn), ("knn_size", size), ("cli", cli),
                        ("per_evaluation", evals)):
        atomic_write(os.path.join(out, f"{name}.csv"),
                     lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
    if plots:
        _plot(evals, os.path.join(out, "per_evaluation.png"))
    record = {"knn_error": knn.to_dict("records"), "knn_size": size.to_dict("records"),
              "cli": cli.to_dict("records"),
              "per_evaluation": evals.to_dict("records"), "slopes": slopes}
    write_json(os.path.join(out, "scale.json"), record)
    return record
