"""experiments: benchmarks and evaluation protocols (noisy-label detection, point removal,
rank correlation, wall time and memory). Shipped in the wheel so `valuate bench` works."""
