"""experiments: benchmark scripts run from a checkout (`python -m experiments.bench_utility`
...). Not shipped in the wheel; the protocols they share live in `valuation.evaluate`, the tasks
in `valuation.tasks`, and `valuate bench` in `valuate.bench`."""
