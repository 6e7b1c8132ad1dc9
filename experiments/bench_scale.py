"""Scale benchmark from a checkout: the same as `valuate bench --preset scale` (the code lives
in `valuate/bench_scale.py`, which ships with the package).

    python -m experiments.bench_scale --out scale/            # the issue's sizes
    python -m experiments.bench_scale --quick --out scale/    # small sizes
"""

from __future__ import annotations

import argparse

from valuate.bench_scale import SIZES, run_scale


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes)")
    parser.add_argument("--out", default="scale", help="folder for tables and the figure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return run_scale(args.out, SIZES["scale-quick" if args.quick else "scale"], seed=args.seed)


if __name__ == "__main__":
    main()
