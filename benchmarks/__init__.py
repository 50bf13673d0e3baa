"""Benchmarks of the MOON toolkit (use only the public API of moon)."""
