"""`python -m benchmarks.perf`: the JSON a quick run of one cheap benchmark writes, and bad options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _perf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.perf", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_quick_run_of_one_benchmark_writes_the_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    done = _perf("--quick", "--only", "mbe_metrics", "--out", str(out), "--threads", "1")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["schema"] == "moon-perf/1" and result["quick"] is True and result["threads"] == 1
    assert result["failed"] == [] and list(result["benchmarks"]) == ["mbe_metrics"]
    assert {"platform", "cpus", "torch", "faiss", "deepspeed"} <= set(result["machine"])
    bench = result["benchmarks"]["mbe_metrics"]
    assert isinstance(bench["ratio"], float) and bench["ratio"] > 0 and "per-query" in bench["meaning"]
    assert bench["max_abs_difference"] <= 1e-6 and bench["seconds"] > 0
    assert bench["ratio"] == bench["per_query_seconds"] / bench["vectorised_seconds"]


def test_unknown_benchmark_is_refused_with_the_known_names(tmp_path: Path) -> None:
    done = _perf("--only", "nope", "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "unknown benchmark" in done.stderr and "encoder_roofline" in done.stderr
    assert not (tmp_path / "x.json").exists()
