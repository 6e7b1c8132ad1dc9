"""valuate: the front door. The command line (`valuate ...`) and the one-call functions a
notebook user reaches for first; imports flow valuate -> metalearner -> valuation; `experiments/` (scripts, not shipped) uses all three."""
