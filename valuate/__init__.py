"""valuate: the front door. The command line (`valuate ...`) and the one-call functions a
notebook user reaches for first; imports flow valuate -> experiments/metalearner -> valuation."""
