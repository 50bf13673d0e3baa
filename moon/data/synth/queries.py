"""The behaviour log: queries of three kinds, each with its purchased product, in sessions.

- text query: brand token + 1-3 attribute synonyms + type synonym (no image);
- image query: a *new* user photo of the product (own seed, user-photo style), never one
  of its catalogue images;
- product query: another user photo plus a short brand-less description.

Train products get `train_queries_per_product` queries with kinds drawn by `query_mix`
(MOON's 12:3:2 image:text:product); val/test products get `eval_queries_per_kind` of
every kind so each benchmark direction has the same product coverage.

Sessions: queries of one split are grouped by industry and ordered by category, then each
industry's list is cut into sessions of `session_size` consecutive queries. A session
therefore holds queries about one category or neighbouring categories of one industry
(never two industries), a few seconds to minutes apart, and sessions are spread over
`days`. Sorting the log by timestamp thus puts related-category queries close in time,
which is what spatial (other ranks) and temporal (queue of earlier batches) negatives
exploit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from moon.data.records import QueryKind
from moon.data.synth.config import SynthConfig
from moon.data.synth.plan import SPLITS, ProductPlan, derive_rng
from moon.data.synth.taxonomy import LEAF_BY_NAME
from moon.data.synth.titles import product_query_text, text_query

LOG_START = 1_700_000_000.0  # an arbitrary fixed epoch, so timestamps are reproducible


@dataclass(frozen=True)
class QueryPlan:
    """One query before its photo is rendered; `serial` seeds the photo."""

    serial: int
    query_id: str
    split: str
    kind: QueryKind
    product_index: int
    text: Optional[str]
    session_id: str
    timestamp: float


def _kinds_for(plan: ProductPlan, config: SynthConfig, rng: np.random.Generator) -> list[QueryKind]:
    if plan.split != "train":
        return [kind for kind in QueryKind for _ in range(config.eval_queries_per_kind)]
    kinds = list(config.query_mix)
    weights = np.asarray([config.query_mix[k] for k in kinds], np.float64)
    picks = rng.choice(len(kinds), size=config.train_queries_per_product, p=weights / weights.sum())
    return [kinds[int(i)] for i in picks]


def _text(kind: QueryKind, plan: ProductPlan, rng: np.random.Generator) -> Optional[str]:
    if kind == QueryKind.TEXT:
        return text_query(rng, plan.brand, plan.leaf, plan.attributes)
    if kind == QueryKind.PRODUCT:
        return product_query_text(rng, plan.leaf, plan.attributes)
    return None


def plan_queries(config: SynthConfig, products: list[ProductPlan]) -> list[QueryPlan]:
    """All queries of all splits, each split ordered by timestamp (query ids follow that order)."""
    out: list[QueryPlan] = []
    serial = 0
    for s, split in enumerate(SPLITS):
        rng = derive_rng(config.seed, 2, s)
        slots = []  # (industry, category, tiebreak, product index, kind, text)
        for plan in products:
            if plan.split != split:
                continue
            leaf = LEAF_BY_NAME[plan.leaf]
            qrng = derive_rng(config.seed, 3, plan.index)
            for kind in _kinds_for(plan, config, qrng):
                slots.append((leaf.industry, leaf.category, float(rng.random()), plan.index, kind,
                              _text(kind, plan, qrng)))
        slots.sort(key=lambda t: (t[0], t[1], t[2]))
        timed = []
        session = 0
        lo, hi = config.session_size
        industries = sorted({slot[0] for slot in slots})
        for industry in industries:
            block = [slot for slot in slots if slot[0] == industry]
            i = 0
            while i < len(block):
                size = int(rng.integers(lo, hi + 1))
                t = LOG_START + float(rng.uniform(0.0, config.days * 86400.0))
                for slot in block[i:i + size]:
                    timed.append((round(t, 3), f"{split}-s{session:06d}", slot))
                    t += float(rng.uniform(5.0, 300.0))
                i += size
                session += 1
        timed.sort(key=lambda x: (x[0], x[1]))
        for n, (timestamp, session_id, (_, _, _, index, kind, text)) in enumerate(timed):
            out.append(QueryPlan(serial=serial, query_id=f"{split}-q{n:07d}", split=split, kind=kind,
                                 product_index=index, text=text, session_id=session_id, timestamp=timestamp))
            serial += 1
    return out
