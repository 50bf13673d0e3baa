"""The suite's entries for benchmarks that live in their own modules (moe, faiss_auto, mining).

Each adapter picks the sizes for quick and full mode, calls the module's public function
and lifts its headline ratio to the suite's `ratio` / `meaning`; the module's own result
is kept whole under `rows` or `result`.
"""

from __future__ import annotations

import faiss
import torch

from benchmarks.perf import faiss_auto as faiss_bench
from benchmarks.perf import mining as mining_bench
from benchmarks.perf import moe as moe_bench


def moe(ctx) -> dict:
    """Guided / router-only MoE vs the dense FFN of the active size; one thread (work, not scheduling)."""
    tokens, repeats = (1024, 3) if ctx.quick else (2048, 3)
    sizes = {"moon-tiny": moe_bench.SIZES["moon-tiny"]} if ctx.quick else moe_bench.SIZES
    modes = ("guided",) if ctx.quick else ("guided", "router-only")
    passes = (False, True)
    torch.set_num_threads(1)
    rows = [dict(moe_bench.bench_case(h, i, mode, tokens, num_experts=6, top_k=2, repeats=repeats,
                                      backward=backward, guided_share=0.3), size=name)
            for name, (h, i) in sizes.items() for mode in modes for backward in passes]
    worst = max(rows, key=lambda r: r["ratio"])
    return {"ratio": float(worst["ratio"]),
            "meaning": "MoE layer time / dense FFN time of equal active size (worst case over rows)",
            "worst_case": {k: worst[k] for k in ("size", "mode", "pass")}, "threads": 1, "tokens": tokens,
            "rows": rows}


def faiss_auto(ctx) -> dict:
    """Auto index on clustered vectors (and, in full mode, structureless random ones) vs exact search."""
    n, dim, queries = (30_000, 256, 500) if ctx.quick else (100_000, 256, 1000)
    cases = ("clustered",) if ctx.quick else ("clustered", "random")
    faiss.omp_set_num_threads(ctx.threads)
    rows = faiss_bench.run(n, dim, queries, seed=ctx.seed, cases=cases)
    clustered = rows[0]
    return {"ratio": float(clustered["qps_ratio"]),
            "meaning": "auto index queries/s / exact Flat queries/s (clustered corpus)",
            "recall@10": clustered["recall@10"], "auto_kind": clustered["auto_kind"], "n": n, "dim": dim,
            "queries": queries, "rows": rows}


def mining(ctx) -> dict:
    """Hard-negative mining's batched index search vs brute-force matmul + top-k, same queries."""
    if ctx.quick:
        params = dict(products=20_000, dim=128, queries=1_000, brute_queries=256, clusters=200)
    else:
        params = dict(products=300_000, dim=256, queries=5_000, brute_queries=1_024, clusters=1_000)
    result = mining_bench.run(k=8, batch=1_024, seed=ctx.seed, **params)
    versus = result["vs_brute_force"]
    return {"ratio": float(versus["speedup"]),
            "meaning": "brute-force search seconds / miner index search seconds (same queries)",
            "recall_at_depth": versus["recall_at_depth"], "index": result["index"],
            "mine_seconds": result["seconds"], "queries_per_second": result["queries_per_second"],
            "result": result}
