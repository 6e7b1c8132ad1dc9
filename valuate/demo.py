"""`valuate demo`: value a bundled data set with injected label noise, end to end.

Loads breast_cancer, splits it 70/30 (stratified), standardises with training statistics,
flips 10 % of the training labels, values every training sample for a logistic-regression
target model with Data-OOB (1024 bagged models trained as one batch), prints the most harmful
and most useful samples and how well the lowest values find the flipped labels, and writes the
values table in the format of `valuate value` (with its JSON sidecar), plus the columns `label`
(the training label the model saw, after flipping) and `flipped` (whether it was flipped).

Why Data-OOB (out-of-bag probability of the sample's own label): measured on this demo's
splits (breast_cancer and wine, split seeds 0 and 1), noisy-label F1 0.80 / 0.85 / 0.92 / 1.00
against 0.80 / 0.90 / 0.83 / 0.83 for leave-one-out on the log-loss, the previous default;
AUROC 0.98-1.00 against 0.83-0.97. On the default run (breast_cancer, seed 0) the F1 ties and
the AUROC is higher (0.984 against 0.947), at similar cost (both are dominated by compiling
one batched fit), and every value comes with a standard error.
"""

from __future__ import annotations

import time

from valuation import ValuationResult, load_bundled, logistic_regression
from valuation.api import value
from valuation.evaluate.noisy_labels import detection_auroc, detection_f1, random_f1

from .table import Z, category_counts, reference_point, values_frame, write_table

__all__ = ["run_demo"]


def run_demo(out: str = "valuate-demo-values.csv", *, dataset: str = "breast_cancer",
             noise: float = 0.1, seed: int = 0, echo=print) -> tuple[ValuationResult, dict]:
    """Run the demo; returns the result and a summary dict (also printed via `echo`)."""
    data = load_bundled(dataset)
    train, valid = data.split(0.7, 0.3, seed=seed)
    train, (mean, std) = train.standardize()
    valid, _ = valid.standardize(mean, std)
    train, flipped = train.flip_labels(noise, seed=seed)
    model = logistic_regression(train.n_classes)
    start = time.perf_counter()
    result = value(train, model, method="oob", valid=valid, seed=seed, progress=False,
                   score="probability")
    seconds = time.perf_counter() - start
    reference = reference_point(result.method, train.n_classes)
    frame = values_frame(result, train.ids, reference=reference)
    # The label the model saw (flipped or not) and the flip flag: F1 re-checkable from the file.
    frame["label"], frame["flipped"] = train.labels, flipped
    write_table(out, frame, {**result.metadata(), "demo": {"dataset": dataset, "noise": noise,
                                                           "flipped": int(flipped.sum())},
                             "categories": {"z": Z, "reference": reference},
                             "timings": {"value_s": seconds}})
    summary = {"dataset": dataset, "n_train": train.n, "n_flipped": int(flipped.sum()),
               "method": result.method, "seconds": round(seconds, 3),
               "f1": detection_f1(result.values, flipped),
               "auroc": detection_auroc(result.values, flipped),
               "random_f1": random_f1(flipped), "out": out,
               **category_counts(frame)}
    labels = dict(zip(train.ids.tolist(), train.labels.tolist()))
    noisy = dict(zip(train.ids.tolist(), flipped.tolist()))

    def show(title, part):
        echo(title)
        for i, v, e in zip(part.ids, part.values, part.stderr):
            echo(f"  {i!s:>10}  value {v:.3f} ± {e:.3f}  label {labels[i]!s:<10} "
                 f"{'FLIPPED' if noisy[i] else ''}")

    echo(f"valuate demo: {dataset}, {train.n} training samples, {summary['n_flipped']} labels "
         f"flipped; target model {model.name}; method {result.method} "
         f"({result.extra['evaluations']} models trained in {seconds:.2f} s)")
    show("most harmful (lowest values):", result.bottom(5))
    show("most useful (highest values):", result.top(5))
    echo(f"categories (value ± {Z} stderr against {reference:.2f}): {summary['harmful']} "
         f"harmful, {summary['useless']} useless, {summary['useful']} useful")
    echo(f"noisy-label detection, lowest {summary['n_flipped']} values flagged: "
         f"F1 {summary['f1']:.3f} (random {summary['random_f1']:.3f}), "
         f"AUROC {summary['auroc']:.3f} (random 0.5)")
    echo(f"values table written to {out} (+ {out}.json)")
    return result, summary
