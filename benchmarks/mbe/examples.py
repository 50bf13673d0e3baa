"""Retrieval examples: a few queries with their top-k products, for a person to look at.

Metrics say how often a model is right; a gallery of what it returns shows how it is wrong
(right colour but wrong type, a near-duplicate ranked first...). The benchmark keeps a
small, evenly spaced, deterministic sample of queries per retrieval task with their top-k
product ids, scores and hit flags; `moon report` renders them next to the images. Image
queries carry a small JPEG thumbnail because they are augmentations that exist nowhere else.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import numpy as np

from moon.data.records import ProductRecord, QueryRecord
from moon.model.api import QueryInput

from benchmarks.mbe.tasks import RetrievalTask

THUMBNAIL_PX = 96


def example_indices(n_queries: int, n_examples: int) -> np.ndarray:
    """Evenly spaced query positions (the same for every model, so galleries compare)."""
    if n_queries <= 0 or n_examples <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, n_queries - 1, min(n_examples, n_queries)).round().astype(np.int64))


def _thumbnail(query: QueryRecord) -> str:
    img = query.image.to_pil()
    img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _describe(query: QueryInput) -> dict[str, Any]:
    if isinstance(query, str):
        return {"text": query, "image_jpeg_b64": None}
    return {"text": query.text, "image_jpeg_b64": _thumbnail(query) if query.image is not None else None}


def retrieval_examples(task: RetrievalTask, query_emb: np.ndarray, corpus_emb: np.ndarray,
                       corpus: Sequence[ProductRecord], n_examples: int, k: int = 5) -> list[dict[str, Any]]:
    """[{query: {text, image_jpeg_b64}, relevant: [ids], top: [{id, score, hit}]}] for sampled queries."""
    chosen = example_indices(len(query_emb), n_examples)
    if len(chosen) == 0:
        return []
    scores = query_emb[chosen] @ corpus_emb.T
    k = min(k, corpus_emb.shape[0])
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = []
    for row, q in enumerate(chosen):
        lo, hi = task.relevance.indptr[q], task.relevance.indptr[q + 1]
        relevant = {int(i) for i in task.relevance.items[lo:hi]}
        out.append({
            "query_index": int(q),
            "query": _describe(task.queries[q]),
            "relevant": [corpus[i].product_id for i in sorted(relevant)][:20],
            "n_relevant": len(relevant),
            "top": [{"id": corpus[i].product_id, "score": round(float(scores[row, i]), 4), "hit": int(i) in relevant}
                    for i in ranked[row]],
        })
    return out
