"""How values are judged: noisy-label detection (AUROC, F1 of the lowest-valued rows),
point removal and addition curves, rank correlation to reference values, and wall time /
peak memory of a call. Used by `valuate bench`, the demo, the tests and `experiments/`."""
