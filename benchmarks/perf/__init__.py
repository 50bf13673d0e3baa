"""Performance ratio benchmarks."""
