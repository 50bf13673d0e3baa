"""Hard-negative mining at catalogue scale: 1M random products, batched FAISS search.

What it measures (issue 5: "works on 1M products on this machine"): the mining code path
of `moon.negatives.mine_arrays` (index build, batched search, policies, sidecar writing)
on random unit vectors with catalogue-like structure (clustered, variant groups,
categories, sessions), its peak memory, and the time of the batched index search
against brute force, i.e. a plain full matrix product of each query batch with the whole
catalogue followed by a top-k selection, on the same queries in the same run, plus the
recall of the index against that exact answer.

Memory: `tracemalloc` sees numpy/Python allocations (not faiss' C++ buffers), the
resident-set peak (`ru_maxrss`) sees everything but includes generating the data, so both
are reported, with the raw size of the vectors for scale.

The machine may be shared: wall-clock seconds are reported next to the process CPU time.

    python -m benchmarks.perf.mining [--products 1000000] [--queries 10000] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from moon.negatives.index import VectorIndex, choose_index
from moon.negatives.miner import MinerConfig, QueryChunk, mine_arrays
from moon.negatives.policies import Catalogue, SessionLog
from moon.negatives.sidecar import NegativesWriter, read_negatives


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_catalogue(n: int, dim: int, clusters: int, seed: int, chunk: int = 65536) -> Catalogue:
    """Clustered unit vectors; groups of 3 consecutive products; 200 categories tied to clusters."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((clusters, dim)).astype(np.float32))
    assign = rng.integers(0, clusters, n)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        a = assign[start:start + chunk]
        noise = rng.standard_normal((len(a), dim)).astype(np.float32) * 0.08
        vectors[start:start + chunk] = _unit(centres[a] + noise)
    return Catalogue(ids=[f"p{i}" for i in range(n)], groups=np.arange(n, dtype=np.int64) // 3,
                     categories=(assign % 200).astype(np.int64), vectors=vectors)


def make_queries(cat: Catalogue, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Queries near their positive (cosine ~0.9): (positive rows, vectors)."""
    rng = np.random.default_rng(seed + 1)
    positives = rng.integers(0, len(cat), n)
    noise = rng.standard_normal((n, cat.vectors.shape[1])).astype(np.float32) * 0.03
    return positives, _unit(cat.vectors[positives] + noise).astype(np.float32)


def brute_force(vectors: np.ndarray, queries: np.ndarray, depth: int, batch: int) -> tuple[np.ndarray, float]:
    """Exact top-`depth` ids by a full matrix product per query batch; (ids, seconds).

    torch (BLAS matmul + topk) rather than numpy argpartition, whose int64 index matrix
    would triple the memory of the batch's score matrix.
    """
    out = np.empty((len(queries), depth), dtype=np.int64)
    catalogue = torch.from_numpy(vectors)
    start = time.perf_counter()
    for s in range(0, len(queries), batch):
        scores = torch.from_numpy(queries[s:s + batch]) @ catalogue.T
        out[s:s + batch] = scores.topk(depth, dim=1).indices.numpy()
    return out, time.perf_counter() - start


def run(products: int, dim: int, queries: int, brute_queries: int, k: int, batch: int, clusters: int,
        seed: int) -> dict:
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    cat = make_catalogue(products, dim, clusters, seed)
    positives, qvec = make_queries(cat, queries, seed)
    generate_s = time.perf_counter() - t0
    rss_before = _rss_mb()
    config = MinerConfig(k=k, policies=["same_category", "knn", "session"], seed=seed, skip_top=1,
                         session_window=30.0, chunk_size=batch)
    log = SessionLog(sessions=np.arange(queries) // 4, timestamps=np.arange(queries, dtype=np.float64) * 10.0,
                     positives=positives, window=config.session_window, cap=config.session_cap)

    tracemalloc.start()
    t1 = time.perf_counter()
    spec = choose_index(products, config.exact_max, config.nlist, config.nprobe, config.use_gpu)
    index = VectorIndex.build(cat.vectors, spec, seed=seed)
    build_s = time.perf_counter() - t1
    chunks = (QueryChunk(ids=[f"q{i}" for i in range(s, min(s + batch, queries))],
                         entries=np.arange(s, min(s + batch, queries)),
                         positives=positives[s:s + batch], vectors=qvec[s:s + batch])
              for s in range(0, queries, batch))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "negatives.parquet"
        with NegativesWriter(out, {"benchmark": "perf.mining"}) as writer:
            report = mine_arrays(cat, chunks, writer, config, log=log, index=index, total=queries,
                                 show_progress=False)
        rows = read_negatives(out).num_rows
        sidecar_mb = out.stat().st_size / 2**20
    mine_s = time.perf_counter() - t1
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = _rss_mb()

    sub = qvec[:brute_queries]
    depth = config.depth
    t2 = time.perf_counter()
    _, index_ids = index.search(sub, depth)
    index_s = time.perf_counter() - t2
    exact_ids, brute_s = brute_force(cat.vectors, sub, depth, batch=256)
    recall = float(np.mean([len(set(a) & set(b)) / depth for a, b in zip(index_ids, exact_ids)]))
    return {
        "benchmark": "perf.mining",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {"products": products, "dim": dim, "queries": queries, "brute_queries": brute_queries, "k": k,
                   "batch": batch, "clusters": clusters, "seed": seed, "depth": depth,
                   "config": config.model_dump(mode="json")},
        "index": report.index,
        "seconds": {"generate": generate_s, "index_build": build_s, "mine_total": mine_s,
                    "search": report.seconds["search"], "select_and_write": report.seconds["select"]},
        "cpu_seconds_total": time.process_time() - cpu0,
        "queries_per_second": queries / (report.seconds["search"] + report.seconds["select"]),
        "rows": rows, "negatives_per_pair": rows / queries, "short_pairs": report.short_pairs,
        "per_policy": report.per_policy, "filtered": report.filtered, "sidecar_mb": sidecar_mb,
        "memory_mb": {"vectors": cat.vectors.nbytes / 2**20, "tracemalloc_peak_mining": traced_peak / 2**20,
                      "rss_peak_before_mining": rss_before, "rss_peak_after_mining": rss_after,
                      "rss_peak_end": _rss_mb()},
        "vs_brute_force": {"queries": brute_queries, "index_seconds": index_s, "brute_seconds": brute_s,
                           "speedup": brute_s / index_s, "recall_at_depth": recall},
    }


def _print(result: dict) -> None:
    table = Table(title=f"mining {result['params']['products']:,} x {result['params']['dim']}-d "
                        f"({result['index']['kind']}, nlist={result['index']['nlist']}, "
                        f"nprobe={result['index']['nprobe']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    s, m, b = result["seconds"], result["memory_mb"], result["vs_brute_force"]
    for name, value in [
        ("index build (s)", f"{s['index_build']:.1f}"),
        (f"mine {result['params']['queries']:,} queries (s)", f"{s['mine_total'] - s['index_build']:.1f}"),
        ("  search / select+write (s)", f"{s['search']:.1f} / {s['select_and_write']:.1f}"),
        ("queries / s", f"{result['queries_per_second']:.0f}"),
        ("negatives per pair", f"{result['negatives_per_pair']:.2f}"),
        ("vectors (MB)", f"{m['vectors']:.0f}"),
        ("tracemalloc peak while mining (MB)", f"{m['tracemalloc_peak_mining']:.0f}"),
        ("RSS peak before / after mining (MB)",
         f"{m['rss_peak_before_mining']:.0f} / {m['rss_peak_after_mining']:.0f}"),
        (f"index search, {b['queries']} queries (s)", f"{b['index_seconds']:.2f}"),
        (f"brute force, {b['queries']} queries (s)", f"{b['brute_seconds']:.2f}"),
        ("process CPU time, whole run (s)", f"{result['cpu_seconds_total']:.0f}"),
        ("speedup vs brute force", f"{b['speedup']:.1f}x"),
        (f"recall@{result['params']['depth']} vs exact", f"{b['recall_at_depth']:.3f}"),
    ]:
        table.add_row(name, value)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--brute-queries", type=int, default=1024)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4096, help="queries per search batch")
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/perf/results/mining.json"))
    args = parser.parse_args()
    result = run(args.products, args.dim, args.queries, args.brute_queries, args.k, args.batch, args.clusters,
                 args.seed)
    _print(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
