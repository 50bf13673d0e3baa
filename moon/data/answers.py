"""Products that answer the same query text, so that none of them is a negative of that text.

A training query names one purchased product, but its text can fit many: the fashion import
writes one attribute query "{gender} {colour} {articleType}" per product, and on that
catalogue's train split each such text is shared by about 48 products. When training
queries with the same text (case- and space-folded) point at different products, every one
of those products is a right answer to each of them. Scoring one as a negative teaches the
model to separate products the query cannot tell apart, which is worst for hard negatives:
a nearest-neighbour miner picks exactly those products (37% of its negatives for attribute
queries on the fashion catalogue), and same-category mining picks them more often than
random in-batch sampling does.

`SharedAnswers` holds, for each shared text, the products its queries point at. The sampler
uses it to skip such products when choosing hard negatives, and the objective masks them in
every candidate source (in-batch, hard, other ranks, queue) through `BatchMeta.answer_ids`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from moon.data.records import QueryRecord


def normalize_query_text(text: str) -> str:
    """Case-folded, whitespace-collapsed text: the key under which queries count as the same."""
    return " ".join(text.casefold().split())


class SharedAnswers:
    """The products of every query text that more than one product answers."""

    def __init__(self, queries: Iterable[QueryRecord]) -> None:
        by_text: dict[str, set[str]] = defaultdict(set)
        for q in queries:
            if q.text is not None and q.image is None:
                by_text[normalize_query_text(q.text)].add(q.positive_id)
        self.by_text: dict[str, tuple[str, ...]] = {
            text: tuple(sorted(ids)) for text, ids in by_text.items() if len(ids) > 1}

    def of(self, query: QueryRecord) -> tuple[str, ...]:
        """Products other than the query's own positive that answer its text (empty for image
        queries, product queries and texts only one product answers)."""
        if query.text is None or query.image is not None:
            return ()
        ids = self.by_text.get(normalize_query_text(query.text), ())
        return tuple(i for i in ids if i != query.positive_id)

    def summary(self) -> dict[str, float]:
        """How much sharing there is (saved in the run's sampler report)."""
        sizes = [len(ids) for ids in self.by_text.values()]
        return {"shared_texts": len(sizes), "products_per_shared_text": sum(sizes) / len(sizes) if sizes else 0.0,
                "largest": max(sizes, default=0)}
