"""Interleaved timing: every variant runs in every round, in turn."""

from __future__ import annotations

import pytest

from benchmarks.perf.timing import interleaved_best


def test_variants_alternate_and_each_gets_its_own_best() -> None:
    calls: list[str] = []
    best = interleaved_best({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b"] * 4, "one warm-up round, then three interleaved rounds"
    assert set(best) == {"a", "b"} and all(0 <= s < float("inf") for s in best.values())


def test_without_warmup_and_invalid_repeats() -> None:
    calls: list[str] = []
    interleaved_best({"a": lambda: calls.append("a")}, repeats=2, warmup=False)
    assert calls == ["a", "a"]
    with pytest.raises(ValueError, match="repeats"):
        interleaved_best({"a": lambda: None}, repeats=0)
