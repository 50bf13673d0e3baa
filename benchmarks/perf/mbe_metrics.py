"""MBE runner metrics (benchmarks.mbe.metrics, vectorised per chunk) vs a per-query loop.

The straightforward implementation scores one query at a time against the corpus, sorts,
finds the rank of the positive and computes R@1/5/10, MRR@10 and nDCG@10 from it. Both
run on the same vectors (one relevant product per query, as the MBE retrieval tasks), and
their metric values must agree: a speedup of a wrong implementation would be worthless.
"""

from __future__ import annotations

import numpy as np

from benchmarks.mbe.metrics import Relevance, retrieval_per_query
from benchmarks.mbe.tasks import RETRIEVAL_METRICS
from benchmarks.perf.timing import interleaved_best


def per_query_metrics(queries: np.ndarray, corpus: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    """The textbook loop: for each query, rank the corpus and read off the positive's rank."""
    sums = {m: 0.0 for m in RETRIEVAL_METRICS}
    for query, positive in zip(queries, positives):
        order = np.argsort(-(corpus @ query), kind="stable")[:10]
        found = np.flatnonzero(order == positive)
        rank = int(found[0]) + 1 if len(found) else None
        if rank is None:
            continue
        sums["R@1"] += rank <= 1
        sums["R@5"] += rank <= 5
        sums["R@10"] += 1.0
        sums["MRR@10"] += 1.0 / rank
        sums["nDCG@10"] += 1.0 / np.log2(rank + 1)
    return {m: v / len(queries) for m, v in sums.items()}


def vectorised_metrics(queries: np.ndarray, corpus: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    values = retrieval_per_query(queries, corpus, Relevance.from_positives(positives, len(corpus)), RETRIEVAL_METRICS)
    return {m: float(v.mean()) for m, v in values.items()}


def make_vectors(n_queries: int, n_corpus: int, dim: int, noise: float, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit corpus vectors; each query is its positive plus noise (so the metrics are not trivial)."""
    rng = np.random.default_rng(seed)
    corpus = rng.standard_normal((n_corpus, dim)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    positives = rng.integers(0, n_corpus, n_queries)
    queries = corpus[positives] + noise * rng.standard_normal((n_queries, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries, corpus, positives


def run(ctx) -> dict:
    n_queries, n_corpus, dim = (500, 5_000, 128) if ctx.quick else (2_000, 50_000, 128)
    queries, corpus, positives = make_vectors(n_queries, n_corpus, dim, noise=0.25, seed=ctx.seed)
    reference, fast = per_query_metrics(queries, corpus, positives), vectorised_metrics(queries, corpus, positives)
    disagreement = max(abs(reference[m] - fast[m]) for m in RETRIEVAL_METRICS)
    if disagreement > 1e-6:
        raise RuntimeError(f"vectorised metrics differ from the per-query loop by {disagreement}: "
                           f"{fast} vs {reference}")
    seconds = interleaved_best({"vectorised": lambda: vectorised_metrics(queries, corpus, positives),
                                "per_query": lambda: per_query_metrics(queries, corpus, positives)},
                               repeats=1 if ctx.quick else 2, warmup=False)
    return {"ratio": seconds["per_query"] / seconds["vectorised"],
            "meaning": "per-query loop seconds / MBE runner (vectorised) seconds, same metrics",
            "queries": n_queries, "corpus": n_corpus, "dim": dim, "metrics": fast,
            "max_abs_difference": disagreement, "vectorised_seconds": seconds["vectorised"],
            "per_query_seconds": seconds["per_query"]}
