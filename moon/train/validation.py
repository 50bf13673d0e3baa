"""In-training validation: Recall@K of val queries against the val catalogue.

Uses only the model's public encode API (what the benchmark and exporter use), so the
numbers logged during training mean the same as at evaluation. Work is sharded over
ranks in equal-size blocks (padded by repeating the first item) so every rank runs the
same number of forwards, which ZeRO-3's collective parameter gathering requires.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from moon.data.records import FULL_VIEW, ProductRecord, QueryKind, QueryRecord
from moon.model.base import TrainableEmbedder
from moon.train.gather import all_gather_tensor, world


def recall_at_k(query_emb: torch.Tensor, product_emb: torch.Tensor, positives: torch.Tensor, k: int) -> float:
    """Fraction of queries whose positive product (row index) is among the top-k by cosine."""
    if query_emb.shape[0] == 0:
        return float("nan")
    top = (query_emb @ product_emb.T).topk(min(k, product_emb.shape[0]), dim=1).indices
    return float((top == positives[:, None]).any(dim=1).float().mean())


def _encode_sharded(items: Sequence, encode: Callable[[Sequence], torch.Tensor]) -> torch.Tensor:
    rank, size = world()
    if size == 1:
        return encode(items)
    per = math.ceil(len(items) / size)
    mine = list(items[rank * per:(rank + 1) * per])
    mine += [items[0]] * (per - len(mine))
    return torch.cat(all_gather_tensor(encode(mine).contiguous()))[:len(items)]


def validate(model: TrainableEmbedder, products: Sequence[ProductRecord], queries: Sequence[QueryRecord],
             kinds: Sequence[QueryKind], k: int, max_queries: int, batch_size: int) -> dict[str, float]:
    """{'val/R@k/<kind>': recall, 'val/chance@k': k/N} over the given kinds."""
    index = {p.product_id: i for i, p in enumerate(products)}
    product_emb = _encode_sharded(products, lambda items: model.encode_products(
        items, batch_size=batch_size, view=FULL_VIEW, show_progress=False, output="torch"))
    out = {f"val/chance@{k}": min(1.0, k / max(1, len(products)))}
    for kind in kinds:
        chosen = [q for q in queries if q.kind == kind and q.positive_id in index][:max_queries]
        if not chosen:
            continue
        q_emb = _encode_sharded(chosen, lambda items: model.encode_queries(
            items, batch_size=batch_size, show_progress=False, output="torch"))
        positives = torch.tensor([index[q.positive_id] for q in chosen])
        out[f"val/R@{k}/{kind.value}"] = recall_at_k(q_emb, product_emb, positives, k)
    return out
