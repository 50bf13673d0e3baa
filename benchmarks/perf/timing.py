"""Timing on a shared machine: interleave the variants, keep each one's best time.

Load from other processes comes and goes within seconds; timing variant A for a while and
then variant B would charge a burst of load to one of them. Running A, B, A, B, ... and
keeping each one's minimum compares them under the same conditions.
"""

from __future__ import annotations

import time
from typing import Callable


def interleaved_best(variants: dict[str, Callable[[], object]], repeats: int, warmup: bool = True
                     ) -> dict[str, float]:
    """Best wall seconds of each variant over `repeats` interleaved rounds (after one warm-up round)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup:
        for fn in variants.values():
            fn()
    best = {name: float("inf") for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
