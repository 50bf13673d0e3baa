"""The auto FAISS index at catalogue scale: what it picks, its recall@10 and its speed vs exact.

Two corpora of N unit vectors (default 1M x 256-d):
- random: isotropic Gaussian directions, no structure for an ANN index to exploit; at a
  0.95 recall@10 target no candidate should beat brute force, so auto must fall back to Flat;
- clustered: points around 1,000 centres in a 16-dimensional subspace plus small isotropic
  noise (low intrinsic dimension, like real embeddings), where IVF/HNSW should win.

For each, `moon.index.build_index(kind="auto")` is timed; then on fresh evaluation queries
(drawn like the corpus, never used for tuning) it reports recall@10 of the chosen index
against exact search and queries/s of the chosen index and of exact Flat search (same
query batch, same process, same threads). The machine may be shared: timings are wall
clock, so ratios are the meaningful numbers.

    python -m benchmarks.perf.faiss_auto [--n 1000000] [--dim 256] [--queries 1000]
        [--threads 2] [--out benchmarks/perf/results/faiss_auto.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, Optional

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

from moon.data.shards import atomic_write_json
from moon.index.faiss_index import AutoPolicy, build_index, recall_at_k
from moon.index.search import IndexSearcher

K = 10
CHUNK = 65536


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def random_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        out[start:start + CHUNK] = _unit(rng.standard_normal((min(CHUNK, n - start), dim), dtype=np.float32))
    return out


def clustered_sampler(dim: int, seed: int, centres: int = 1000, latent: int = 16,
                      noise: float = 0.05) -> Callable[[int, np.random.Generator], np.ndarray]:
    """A generator of points near `centres` centres of a `latent`-dim subspace of R^dim."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    centre = rng.standard_normal((centres, latent)).astype(np.float32)

    def sample(n: int, draw: np.random.Generator) -> np.ndarray:
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            z = centre[draw.integers(0, centres, m)] + 0.3 * draw.standard_normal((m, latent), dtype=np.float32)
            out[start:start + m] = _unit(z @ basis + noise * draw.standard_normal((m, dim), dtype=np.float32))
        return out

    return sample


def run_case(name: str, corpus: np.ndarray, queries: np.ndarray, target_recall: float = 0.95,
             policy: AutoPolicy = AutoPolicy()) -> dict:
    """Build the auto index over `corpus` and score it on `queries` against exact search."""
    start = time.perf_counter()
    built = build_index(corpus, kind="auto", target_recall=target_recall, policy=policy, show_progress=False)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    _, truth = faiss.knn(queries, corpus, K, metric=faiss.METRIC_INNER_PRODUCT)
    exact_qps = len(queries) / (time.perf_counter() - start)
    searcher = IndexSearcher(built)
    rows = np.asarray(built.ids, dtype=np.int64)
    start = time.perf_counter()
    _, labels = searcher.search_labels(queries, K)
    qps = len(queries) / (time.perf_counter() - start)
    manifest = built.manifest
    tuning = manifest.tuning
    return {
        "corpus": name, "n": len(corpus), "dim": corpus.shape[1], "queries": len(queries),
        "auto_kind": manifest.kind, "factory": manifest.factory, "search_params": manifest.search_params,
        "target_recall": target_recall, "tuning_recall": manifest.recall_at_k,
        f"recall@{K}": recall_at_k(np.where(labels >= 0, rows[np.maximum(labels, 0)], -1), truth),
        "qps": qps, "exact_qps": exact_qps, "qps_ratio": qps / exact_qps, "build_s": build_s,
        "decision": tuning.decision if tuning else "small corpus: exact without tuning",
        "candidates": [c.model_dump(exclude={"points"}) for c in tuning.candidates] if tuning else [],
    }


def run(n: int, dim: int, n_queries: int, seed: int = 0, policy: AutoPolicy = AutoPolicy(),
        cases: tuple[str, ...] = ("random", "clustered")) -> list[dict]:
    rows = []
    for name in cases:
        rng = np.random.default_rng(seed)
        if name == "random":
            corpus, queries = random_vectors(n, dim, rng), random_vectors(n_queries, dim, rng)
        else:
            sample = clustered_sampler(dim, seed)
            corpus, queries = sample(n, rng), sample(n_queries, rng)
        rows.append(run_case(name, corpus, queries, policy=policy))
        del corpus
    return rows


def print_table(rows: list[dict], console: Optional[Console] = None) -> None:
    table = Table(title="auto FAISS index vs exact Flat search")
    for col in ("corpus", "n x d", "auto picks", "params", f"recall@{K}", "qps", "exact qps", "qps ratio",
                "build s"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["corpus"], f"{r['n']:,} x {r['dim']}", r["factory"], str(r["search_params"] or "-"),
                      f"{r[f'recall@{K}']:.3f}", f"{r['qps']:,.0f}", f"{r['exact_qps']:,.0f}",
                      f"{r['qps_ratio']:.1f}x", f"{r['build_s']:.0f}")
    console = console or Console(width=160)
    console.print(table)
    for r in rows:
        console.print(f"{r['corpus']}: {r['decision']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="corpus size (use e.g. 100000 for a quick run)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000, help="fresh evaluation queries")
    parser.add_argument("--threads", type=int, default=None, help="FAISS OpenMP threads (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "faiss_auto.json")
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    rows = run(args.n, args.dim, args.queries, args.seed)
    print_table(rows)
    atomic_write_json(args.out, {"benchmark": "faiss_auto", "faiss": faiss.__version__,
                                 "threads": faiss.omp_get_max_threads(), "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
