"""The `valuate` command line: `value`, `methods`, `fit-meta`, `predict`, `select`,
`acquire`, `bench` and `demo`.

Every failure the user can fix (a missing file, an unknown column, text in a feature column,
NaN, an unknown method, an unwritable output path) ends with one line on stderr,
`valuate: error: <problem>; <fix>`, and exit code 2; never a traceback. An interrupted job
(Ctrl-C) exits with code 130; with --job-dir it resumes when the same command is run again.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata

from valuation.compile_cache import ENV, enable_compile_cache
from valuation.errors import ValuationError

from .table import Z

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) like every other error."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _value(args) -> int:
    import metalearner  # noqa: F401  (registers method "rater" in valuation.METHODS)

    from .job import SCORED, run_job

    sidecar = run_job(args.data, label=args.label, out=args.out, method=args.method,
                      model=args.model, metric=args.metric, id_column=args.id_column,
                      valid=args.valid, valid_fraction=args.valid_fraction, seed=args.seed,
                      budget=args.budget, batch=args.batch, job_dir=args.job_dir,
                      progress=not args.quiet, z=args.z, task=args.task,
                      encode=not args.no_encode, balance=args.balance, ray=args.ray,
                      degenerate=args.degenerate)
    for warning in sidecar["warnings"]:  # warnings print even with --quiet
        print(f"valuate: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        c, spent = sidecar["categories"], sidecar["extra"].get("evaluations")
        how = [f"metric {sidecar['metric']}"] if args.method in SCORED else []
        how += [f"{spent} models trained"] if spent else []
        print(f"valued {sidecar['input']['n_train']} rows ({sidecar['task']}) with "
              f"{sidecar['method']}"
              f"{' (' + ', '.join(how) + ')' if how else ''}: "
              f"{c['harmful']} harmful, {c['useless']} useless, {c['useful']} useful, "
              f"{c['validation']} validation -> {args.out} (+ {args.out}.json)",
              file=sys.stderr)
    return 0


def _methods(args) -> int:
    del args
    print(_method_table())
    return 0


def _method_table() -> str:
    """One line per method: name, what it is, its cost and when to use it."""
    import metalearner  # noqa: F401  (registers method "rater")
    from valuation.api import METHODS

    return "\n".join(f"  {name:<10} {entry.about}" for name, entry in METHODS.items())


def _bench(args) -> int:
    from valuate.bench import run_bench

    run_bench(args.out, preset=args.preset, tasks=args.tasks, methods=args.methods,
              seed=args.seed, plots=not args.no_plots, progress=not args.quiet)
    return 0


def _fit_meta(args) -> int:
    from .meta import fit_meta

    record = fit_meta(args.values, out=args.out, members=args.members, steps=args.steps,
                      seed=args.seed, data=args.data, valid=args.valid_data,
                      method=args.method)
    if not args.quiet:
        print(f"meta-model fitted on {record['n_valued']} values ({record['teacher']}) "
              f"-> {args.out}", file=sys.stderr)
    return 0


def _predict(args) -> int:
    from .meta import predict

    sidecar = predict(args.data, meta_path=args.meta, out=args.out, z=args.z,
                      label=args.label, id_column=args.id_column,
                      id_conflict=args.id_conflict)
    if not args.quiet:
        print(f"predicted values of {sidecar['input']['rows']} rows -> {args.out}",
              file=sys.stderr)
    return 0


def _acquire(args) -> int:
    from .acquire import acquire

    sidecar = acquire(args.pool, meta_path=args.meta, batch=args.batch, out=args.out,
                      weight=args.weight, kind=args.uncertainty, radius=args.radius, z=args.z,
                      id_column=args.id_column, id_conflict=args.id_conflict)
    if not args.quiet:
        a = sidecar["acquisition"]
        print(f"ranked {sidecar['input']['rows']} rows for labelling: batch of {a['batch']}, "
              f"{a['harmful']} predicted harmful (last) -> {args.out}", file=sys.stderr)
    return 0


def _select(args) -> int:
    from .select import run_select

    summary = run_select(args.data, values_path=args.values, out=args.out,
                         keep=args.keep_accuracy, valid=args.valid, confirm=args.confirm,
                         selection_share=args.selection_share, seed=args.seed, z=args.z)
    for warning in summary["warnings"]:
        print(f"valuate: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(f"kept {summary['n_kept']} of {summary['n_train']} training rows "
              f"({100 * summary['fraction']:.0f} %, {summary['strategy']}): "
              f"{summary['metric']} {summary['confirmation']:.4f} +/- "
              f"{summary['confirmation_stderr']:.4f} on {summary['n_confirmation']} "
              f"confirmation rows (full set {summary['full_confirmation']:.4f}) -> "
              f"{args.out} (+ {args.out}.json, {summary['curve']})", file=sys.stderr)
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, dataset=args.dataset, noise=args.noise, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="valuate", description="Data valuation that learns.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {metadata.version('valuate')}")
    sub = parser.add_subparsers(dest="command", required=True)

    value = sub.add_parser("value", help="value every row of a table for a target model",
                           description="Value every training row of DATA (CSV or Parquet). "
                                       "Methods:\n" + _method_table(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    value.add_argument("data", metavar="DATA", help="training table, .csv or .parquet")
    value.add_argument("--label", required=True, help="name of the label column")
    value.add_argument("--id-column", help="column of unique row ids (default: row number)")
    held = value.add_mutually_exclusive_group()
    held.add_argument("--valid", metavar="DATA", help="validation table (the same columns, in any order: matched by name)")
    held.add_argument("--valid-fraction", type=float, default=0.2, metavar="F",
                      help="share of DATA held out (stratified by class) as validation "
                           "data when --valid is not given; those rows get category "
                           "'validation' (default 0.2)")
    value.add_argument("--model", default="auto",
                       help="target model: logreg (logistic regression; the default for "
                            "classes), linear (ridge regression; the default for a "
                            "regression target) or mlp (one hidden layer of 64, either task)")
    value.add_argument("--method", required=True,
                       help="valuation method (listed above; `valuate methods`)")
    value.add_argument("--metric",
                       help="validation score: accuracy, balanced_accuracy or neg_log_loss "
                            "(default accuracy, or balanced_accuracy on imbalanced classes); "
                            "for a regression target r2 (default) or neg_mse")
    value.add_argument("--balance", default="auto", choices=["auto", "on", "off"],
                       help="weigh classes equally (balanced accuracy; class weights for oob, "
                            "knn): auto when the rarest class holds under 40%% of an even "
                            "share (20%% of the rows with two classes)")
    value.add_argument("--degenerate", choices=["frequency", "zero"],
                       help="the game of tmc, beta, banzhaf and loo: a subset with fewer than "
                            "two classes scores as its class-frequency predictor (frequency, "
                            "the default) or 0 (zero: pyDVL's convention, for values "
                            "comparable with its)")
    value.add_argument("--task", default="auto",
                       choices=["auto", "classification", "regression"],
                       help="auto: numbers that are not all whole are a regression target, "
                            "whole numbers with more than 20 distinct values (and over 5%% of "
                            "the rows) are refused as ambiguous, anything else is classes; "
                            "classification / regression say which it is")
    value.add_argument("--no-encode", action="store_true",
                       help="take feature columns as they are (numeric, complete); by default "
                            "text columns are one-hot encoded (at most 20 columns each, rare "
                            "values as 'other') and missing values filled with the training "
                            "median plus a <column>_missing indicator")
    value.add_argument("--out", required=True, help="values table to write, .parquet or .csv")
    value.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    value.add_argument("--budget", type=int,
                       help="utility evaluations (models trained) to spend on a Monte "
                            "Carlo method, exactly (tmc/beta drop the one permutation it cuts "
                            "short); method default if omitted")
    value.add_argument("--batch", type=int,
                       help="Monte Carlo draws per update, i.e. between checkpoints (method "
                            "default if omitted); values do not depend on it")
    value.add_argument("--job-dir", help="folder for checkpoints of Monte Carlo methods "
                                         "(tmc, beta, banzhaf, oob; default OUT.job, removed "
                                         "when the job finishes); rerun the same command "
                                         "to resume an interrupted job")
    value.add_argument("--ray", metavar="ADDRESS",
                       help="fan the draws of oob or banzhaf (or knn's blocks of "
                            "validation rows) out over a Ray cluster: 'local' or a "
                            "cluster address (pip install ray; same values and "
                            "checkpoints as without it)")
    value.add_argument("--z", type=float, default=Z,
                       help="standard errors on each side of a value for the harmful / "
                            f"useless / useful categories (default {Z})")
    value.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    value.set_defaults(run=_value)

    methods = sub.add_parser("methods", help="list the valuation methods, their cost and use")
    methods.set_defaults(run=_methods)

    bench = sub.add_parser("bench", help="run the benchmark suite",
                           description="Methods x tasks: noisy-label detection, removal "
                                       "curves, rank correlation, time and memory.")
    bench.add_argument("--preset", default="full",
                       help="quick (CI, under a minute), full (5 tasks x 7 methods), "
                            "scale-tasks (synthetic 1k-100k rows: time and memory), scale "
                            "(KNN-Shapley errors, 1M-row jobs, seconds per evaluation "
                            "against n; ~30 min) or scale-quick; default full")
    bench.add_argument("--quick", dest="preset", action="store_const", const="quick",
                       help="same as --preset quick")
    bench.add_argument("--out", default="valuate-bench", help="folder for the results")
    bench.add_argument("--tasks", nargs="+", help="override the preset's tasks")
    bench.add_argument("--methods", nargs="+", help="override the preset's methods")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--no-plots", action="store_true", help="skip the figures")
    bench.add_argument("--quiet", action="store_true", help="no progress output")
    bench.set_defaults(run=_bench)

    fit = sub.add_parser("fit-meta", help="learn values to predict them for new rows",
                         description="Fit a meta-model to a values table of `valuate value` "
                                     "(the data, split and model are read from its sidecar).")
    fit.add_argument("values", metavar="VALUES", help="values table written by valuate value")
    fit.add_argument("--out", required=True, help="meta-model file to write, .npz")
    fit.add_argument("--members", type=int, default=8, help="ensemble size (default 8)")
    fit.add_argument("--steps", type=int, default=1500, help="training steps per member")
    fit.add_argument("--method", choices=("imitate", "rater"), default="imitate",
                     help="imitate: regress the table's values (default); rater: learn row "
                          "weights from the target's validation loss (the values only name "
                          "the data and split)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--data", help="the valued data file, if it moved since `valuate value` "
                                    "(its contents must be unchanged)")
    fit.add_argument("--valid-data", help="the validation file given as --valid, if it moved")
    fit.add_argument("--quiet", action="store_true")
    fit.set_defaults(run=_fit_meta)

    pred = sub.add_parser("predict", help="predict values of new rows with a meta-model",
                          description="Predict values of the rows of DATA (with their labels) "
                                      "for the target model a meta-model was fitted for.")
    pred.add_argument("data", metavar="DATA", help="table of new rows, .csv or .parquet")
    pred.add_argument("--meta", required=True, help="meta-model written by valuate fit-meta")
    pred.add_argument("--out", required=True, help="values table to write, .parquet or .csv")
    pred.add_argument("--label", help="label column (default: the one the values were "
                                      "computed with)")
    pred.add_argument("--id-column", help="column of row ids (default: the one the values "
                                          "were computed with, if DATA has it; otherwise "
                                          "row numbers)")
    pred.add_argument("--id-conflict", choices=["error", "new"], default="error",
                      help="a row whose id names a training row but whose content differs: "
                           "an error (default) or a new row. Rows are matched to training "
                           "rows by content either way")
    pred.add_argument("--z", type=float, default=Z, help=f"category width (default {Z})")
    pred.add_argument("--quiet", action="store_true")
    pred.set_defaults(run=_predict)

    sel = sub.add_parser("select", help="keep the fewest training rows that keep the score",
                         description="The smallest subset of the valued training rows of "
                                     "DATA whose target model scores within --keep-accuracy "
                                     "of the full set's on a selection split, confirmed on "
                                     "validation rows it never saw.")
    sel.add_argument("data", metavar="DATA", help="the valued table, .csv or .parquet")
    sel.add_argument("--values", required=True, help="values table written by valuate value")
    sel.add_argument("--keep-accuracy", type=float, default=0.005, metavar="TOL",
                     help="tolerance in metric units (default 0.005: half a point)")
    sel.add_argument("--valid", help="validation table (default: the values' own)")
    sel.add_argument("--confirm", help="confirmation table (default: part of the "
                                       "validation rows, see --selection-share)")
    sel.add_argument("--selection-share", type=float, default=0.5, metavar="F",
                     help="share of the validation rows that selects; the rest confirm")
    sel.add_argument("--out", required=True, help="kept ids to write, .csv or .parquet")
    sel.add_argument("--seed", type=int, default=0, help="seed of the split and the draws")
    sel.add_argument("--z", type=float, default=Z,
                     help=f"standard errors for 'reliably harmful' (default {Z})")
    sel.add_argument("--quiet", action="store_true")
    sel.set_defaults(run=_select)

    from valuation.acquisition import DEFAULT_WEIGHT

    acq = sub.add_parser("acquire", help="rank unlabelled rows for labelling with a meta-model",
                         description="Rank the rows of POOL (no labels needed) for labelling: "
                                     "predicted value once labelled mixed with the target "
                                     "model's uncertainty, rows predicted harmful last, a "
                                     "diversity guard for the batch.")
    acq.add_argument("pool", metavar="POOL", help="table of unlabelled rows, .csv or .parquet")
    acq.add_argument("--meta", required=True, help="meta-model written by valuate fit-meta")
    acq.add_argument("--batch", type=int, required=True, help="rows to pick for labelling")
    acq.add_argument("--out", default="ranked.csv", help="ranked table to write, .csv or "
                                                        ".parquet (default ranked.csv)")
    acq.add_argument("--weight", type=float, default=DEFAULT_WEIGHT,
                     help="share of the uncertainty rank in the score, 0 (value only) to 1 "
                          f"(uncertainty sampling); default {DEFAULT_WEIGHT}")
    acq.add_argument("--uncertainty", choices=["entropy", "margin"], default="entropy")
    acq.add_argument("--radius", type=float,
                     help="diversity guard: skip a row within this distance of one already "
                          "in the batch (standardized features; default the pool's median "
                          "nearest-neighbour distance; 0 turns it off)")
    acq.add_argument("--id-column", help="column of row ids (default: the recorded one, if "
                                         "POOL has it; otherwise row numbers)")
    acq.add_argument("--id-conflict", choices=["error", "new"], default="error",
                     help="a row whose id names a training row but whose features differ: an "
                          "error (default) or a new row")
    acq.add_argument("--z", type=float, default=Z, help=f"category width (default {Z})")
    acq.add_argument("--quiet", action="store_true")
    acq.set_defaults(run=_acquire)

    demo = sub.add_parser("demo", help="value a bundled data set with injected label noise")
    demo.add_argument("--out", default="valuate-demo-values.csv", help="values table to write")
    demo.add_argument("--dataset", default="breast_cancer", choices=["breast_cancer", "wine"])
    demo.add_argument("--noise", type=float, default=0.1, help="share of labels to flip")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    for compiling in (value, bench, fit, pred, demo):
        compiling.add_argument("--no-compile-cache", action="store_true",
                               help="do not read or write compiled programs in the user "
                                    f"cache folder (same as {ENV}=off)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "no_compile_cache", False):
        os.environ[ENV] = "off"  # also for `value(...)`, which would switch it on
    else:
        enable_compile_cache()
    try:
        return args.run(args)
    except ValuationError as err:
        print(f"valuate: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("valuate: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        print(f"valuate: error: {err}", file=sys.stderr)
        return 1
