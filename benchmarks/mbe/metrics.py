"""Retrieval and classification metrics, vectorised over chunks of queries.

The one place the benchmark's metric definitions live. Retrieval works in two steps:
`topk` ranks the corpus for a chunk of queries (torch matmul + topk), then `Relevance`
turns the ranked indices into a boolean hit matrix [Q, K]; every metric is a row-wise
reduction of that matrix, so no Python loop runs per query.

Definitions (K = cut-off, rel = number of relevant items of a query, hits over ranks 1..K):
- Recall@K = |relevant in top K| / rel  (single relevant item: 1 if it is in the top K);
- hit@K    = 1 if any relevant item is in the top K;
- MRR@K    = 1 / rank of the first relevant item in the top K, else 0;
- nDCG@K   = sum_i hit_i / log2(i + 1) / sum_{i <= min(rel, K)} 1 / log2(i + 1), binary gains;
- accuracy = mean(pred == true); macro-F1 = unweighted mean F1 over the classes that occur in
  either the truth or the predictions (sklearn's default label set).
Queries with no relevant item in the corpus have no defined recall; callers exclude and
count them before scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

DEFAULT_CHUNK = 1024


def topk(queries: np.ndarray, corpus: np.ndarray, k: int, chunk_size: int = DEFAULT_CHUNK
         ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (first query row, scores [q,k], indices [q,k]) per chunk, by inner product."""
    corpus_t = torch.from_numpy(np.ascontiguousarray(corpus, dtype=np.float32))
    k = min(k, corpus_t.shape[0])
    for start in range(0, len(queries), chunk_size):
        q = torch.from_numpy(np.ascontiguousarray(queries[start:start + chunk_size], dtype=np.float32))
        scores, idx = torch.topk(q @ corpus_t.T, k, dim=1)
        yield start, scores.numpy(), idx.numpy()


@dataclass
class Relevance:
    """Relevant corpus items per query as CSR: query q's items are items[indptr[q]:indptr[q+1]]."""

    indptr: np.ndarray
    items: np.ndarray
    n_items: int

    @classmethod
    def from_positives(cls, positives: np.ndarray, n_items: int) -> "Relevance":
        """One relevant item per query."""
        positives = np.asarray(positives, dtype=np.int64)
        return cls(np.arange(len(positives) + 1, dtype=np.int64), positives, n_items)

    @classmethod
    def from_groups(cls, query_group: np.ndarray, item_group: np.ndarray) -> "Relevance":
        """Relevant = every item whose group equals the query's group."""
        item_group = np.asarray(item_group)
        order = np.argsort(item_group, kind="stable")
        sorted_groups = item_group[order]
        lo = np.searchsorted(sorted_groups, query_group, side="left")
        hi = np.searchsorted(sorted_groups, query_group, side="right")
        counts = hi - lo
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        rows = np.repeat(np.arange(len(query_group)), counts)
        offsets = np.arange(indptr[-1]) - indptr[rows]
        items = order[lo[rows] + offsets]
        return cls(indptr, items, len(item_group))

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def hits(self, start: int, ranked: np.ndarray) -> np.ndarray:
        """Boolean [q, K]: is ranked[i, j] relevant to query start+i."""
        q = ranked.shape[0]
        lo, hi = self.indptr[start], self.indptr[start + q]
        rows = np.repeat(np.arange(q), np.diff(self.indptr[start:start + q + 1]))
        rel_keys = rows * self.n_items + self.items[lo:hi]
        keys = np.arange(q)[:, None] * self.n_items + ranked
        return np.isin(keys, rel_keys)


def recall_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / np.maximum(n_rel, 1)


def hit_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(np.float64)


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    first = h.argmax(axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1), 0.0)


def ndcg_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, h.shape[1] + 2))
    dcg = (h * discounts).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    idcg = ideal_cum[np.minimum(n_rel, k)]
    return np.where(idcg > 0, dcg / np.maximum(idcg, 1e-12), 0.0)


def parse_metric(name: str) -> tuple[str, int]:
    """'R@10' -> ('R', 10); names: R, hit, MRR, nDCG."""
    base, _, k = name.partition("@")
    if base not in ("R", "hit", "MRR", "nDCG") or not k.isdigit():
        raise ValueError(f"unknown retrieval metric {name!r}; expected R@K, hit@K, MRR@K or nDCG@K")
    return base, int(k)


def per_query_metric(name: str, hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    base, k = parse_metric(name)
    if base == "R":
        return recall_at_k(hits, n_rel, k)
    if base == "hit":
        return hit_at_k(hits, k)
    if base == "MRR":
        return mrr_at_k(hits, k)
    return ndcg_at_k(hits, n_rel, k)


def retrieval_per_query(queries: np.ndarray, corpus: np.ndarray, relevance: Relevance,
                        metrics: Sequence[str], chunk_size: int = DEFAULT_CHUNK) -> dict[str, np.ndarray]:
    """Per-query values of each metric (exact search over the whole corpus)."""
    k = max(parse_metric(m)[1] for m in metrics)
    out = {m: np.zeros(len(queries)) for m in metrics}
    n_rel = relevance.counts
    for start, _, ranked in topk(queries, corpus, k, chunk_size):
        hits = relevance.hits(start, ranked)
        stop = start + len(ranked)
        for m in metrics:
            out[m][start:stop] = per_query_metric(m, hits, n_rel[start:stop])
    return out


def ranked_per_query(ranked: np.ndarray, relevance: Relevance, metrics: Sequence[str],
                     chunk_size: int = DEFAULT_CHUNK) -> dict[str, np.ndarray]:
    """Per-query metric values for rankings computed elsewhere (e.g. an ANN index; -1 = none)."""
    out = {m: np.zeros(len(ranked)) for m in metrics}
    n_rel = relevance.counts
    for start in range(0, len(ranked), chunk_size):
        block = ranked[start:start + chunk_size]
        hits = relevance.hits(start, block) & (block >= 0)
        for m in metrics:
            out[m][start:start + len(block)] = per_query_metric(m, hits, n_rel[start:start + len(block)])
    return out


def accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    pred, true = np.asarray(pred), np.asarray(true)
    return float((pred == true).mean()) if len(true) else float("nan")


def macro_f1(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean F1 over classes present in `true` or `pred` (integer class ids)."""
    pred, true = np.asarray(pred, dtype=np.int64), np.asarray(true, dtype=np.int64)
    if len(true) == 0:
        return float("nan")
    n = int(max(pred.max(), true.max())) + 1
    tp = np.bincount(true[pred == true], minlength=n)
    pred_count = np.bincount(pred, minlength=n)
    true_count = np.bincount(true, minlength=n)
    present = (pred_count + true_count) > 0
    denom = pred_count + true_count
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean())


def argmax_cosine(items: np.ndarray, labels: np.ndarray, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """Index of the nearest label embedding per item (zero-shot prediction)."""
    preds = np.empty(len(items), dtype=np.int64)
    for start, _, idx in topk(items, labels, 1, chunk_size):
        preds[start:start + len(idx)] = idx[:, 0]
    return preds
