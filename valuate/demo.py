"""`valuate demo`: value a bundled data set with injected label noise, end to end.

Loads breast_cancer, splits it 70/30 (stratified), standardises with training statistics,
flips 10 % of the training labels, values every training sample for a logistic-regression
target model, prints the most harmful and most useful samples and how well the lowest values
find the flipped labels, and writes the values table.
"""

from __future__ import annotations

import time

import numpy as np

from experiments.noisy_labels import detection_auroc, detection_f1, random_f1
from valuation import ValuationResult, load_bundled, logistic_regression, make_utility
from valuation.results import package_versions

__all__ = ["run_demo"]


def _leave_one_out(utility) -> tuple[np.ndarray, int]:
    """U(N) - U(N minus i) for every i, all n + 1 fits in one batch."""
    n = utility.n
    masks = np.vstack([np.ones((1, n)), 1.0 - np.eye(n)])
    scores = utility(masks)
    return scores[0] - scores[1:], n + 1


def run_demo(out: str = "valuate-demo-values.csv", *, dataset: str = "breast_cancer",
             noise: float = 0.1, seed: int = 0, echo=print) -> tuple[ValuationResult, dict]:
    """Run the demo; returns the result and a summary dict (also printed via `echo`)."""
    data = load_bundled(dataset)
    train, valid = data.split(0.7, 0.3, seed=seed)
    train, (mean, std) = train.standardize()
    valid, _ = valid.standardize(mean, std)
    train, flipped = train.flip_labels(noise, seed=seed)
    utility = make_utility(logistic_regression(train.n_classes), train, valid,
                           metric="neg_log_loss")
    start = time.perf_counter()
    values, evaluations = _leave_one_out(utility)
    seconds = time.perf_counter() - start
    result = ValuationResult(
        values=values, stderr=np.zeros(train.n), counts=np.ones(train.n, int), ids=train.ids,
        method="leave_one_out", params={**utility.describe(), "dataset": dataset,
                                        "noise": noise}, seed=seed,
        versions=package_versions(),
        extra={"seconds": seconds, "utility_evaluations": evaluations})
    result.save(out)
    summary = {"dataset": dataset, "n_train": train.n, "n_flipped": int(flipped.sum()),
               "method": result.method, "seconds": round(seconds, 3),
               "f1": detection_f1(values, flipped), "auroc": detection_auroc(values, flipped),
               "random_f1": random_f1(flipped), "out": out}
    labels = dict(zip(train.ids.tolist(), train.labels.tolist()))
    noisy = dict(zip(train.ids.tolist(), flipped.tolist()))

    def show(title, part):
        echo(title)
        for i, v, r in zip(part.ids, part.values, part.ranks):
            echo(f"  {i!s:>10}  value {v:+.5f}  label {labels[i]!s:<10} "
                 f"{'FLIPPED' if noisy[i] else ''}")

    echo(f"valuate demo: {dataset}, {train.n} training samples, {summary['n_flipped']} labels "
         f"flipped; target model {utility.model.name}; method {result.method} "
         f"({evaluations} models trained in {seconds:.2f} s)")
    show("most harmful (lowest values):", result.bottom(5))
    show("most useful (highest values):", result.top(5))
    echo(f"noisy-label detection, lowest {summary['n_flipped']} values flagged: "
         f"F1 {summary['f1']:.3f} (random {summary['random_f1']:.3f}), "
         f"AUROC {summary['auroc']:.3f} (random 0.5)")
    echo(f"values table written to {out} (+ {out}.json)")
    return result, summary
