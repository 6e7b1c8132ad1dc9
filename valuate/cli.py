"""The `valuate` command line."""

from __future__ import annotations

import argparse
import sys

from valuation.errors import ValuationError


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, dataset=args.dataset, noise=args.noise, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="valuate", description="Data valuation that learns.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="value a bundled data set with injected label noise")
    demo.add_argument("--out", default="valuate-demo-values.csv", help="values table to write")
    demo.add_argument("--dataset", default="breast_cancer", choices=["breast_cancer", "wine"])
    demo.add_argument("--noise", type=float, default=0.1, help="share of labels to flip")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValuationError as err:
        print(f"valuate: error: {err}", file=sys.stderr)
        return 2
