"""Run the ratio benchmarks, collect one JSON document, print one table.

Every benchmark is a function `run(ctx) -> dict` returning at least `ratio` (the headline
figure: a ratio of two things measured in this same run, so it holds on a noisy shared
machine) and `meaning` (what the ratio divides). A benchmark that fails is recorded with
its error and the suite goes on; the command then exits non-zero.
"""

from __future__ import annotations

import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import torch

SCHEMA = "moon-perf/1"


@dataclass
class Context:
    """What benchmarks share: mode, scratch directory, threads, a lazily built dataset and model."""

    quick: bool
    work: Path
    threads: int
    seed: int = 0
    _dataset: Optional[Path] = None
    _models: dict[str, Any] = field(default_factory=dict)

    def dataset(self) -> Path:
        from benchmarks.perf.fixtures import bench_dataset

        if self._dataset is None:
            self._dataset = bench_dataset(self.work / "data", products=120 if self.quick else 300, seed=self.seed)
        return self._dataset

    def model(self, compute_dtype: Optional[str] = None):
        from benchmarks.perf.fixtures import moon_tiny

        key = compute_dtype or "auto"
        if key not in self._models:
            self._models[key] = moon_tiny(self.dataset(), self.seed, compute_dtype)
        return self._models[key]


def _registry() -> dict[str, Callable[[Context], dict]]:
    from benchmarks.perf import adapters, attention, dataload, encoder, mbe_metrics, training

    return {"encoder_roofline": encoder.run, "training_deepspeed": training.run, "moe_vs_dense": adapters.moe,
            "data_loading": dataload.run, "faiss_auto": adapters.faiss_auto, "mining": adapters.mining,
            "mbe_metrics": mbe_metrics.run, "attention_kernel": attention.bench}


def benchmark_names() -> list[str]:
    return list(_registry())


def machine() -> dict[str, Any]:
    import deepspeed
    import faiss

    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "faiss": faiss.__version__,
            "deepspeed": deepspeed.__version__, "load_average_at_start": list(os.getloadavg())}


def run_suite(ctx: Context, only: Optional[list[str]] = None,
              on_done: Optional[Callable[[str, dict], None]] = None) -> dict[str, Any]:
    registry = _registry()
    names = only or list(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {', '.join(registry)}")
    torch.set_num_threads(ctx.threads)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            result = registry[name](ctx)
            if not isinstance(result.get("ratio"), float) or not result.get("meaning"):
                raise TypeError(f"benchmark {name} returned no float 'ratio' with a 'meaning'")
        except Exception as exc:  # recorded in the JSON, the suite continues, the exit code says it
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        finally:
            torch.set_num_threads(ctx.threads)
        result["seconds"] = time.perf_counter() - t0
        results[name] = result
        if on_done is not None:
            on_done(name, result)
    return {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "quick": ctx.quick, "threads": ctx.threads, "machine": machine(), "benchmarks": results,
            "failed": [n for n, r in results.items() if "error" in r], "load_average_at_end": list(os.getloadavg()),
            "total_seconds": time.perf_counter() - started}
