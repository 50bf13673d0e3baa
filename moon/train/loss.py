"""Contrastive losses on embeddings: InfoNCE with false-negative masking, Matryoshka, intra-product.

Losses take embeddings (never the model), in the spirit of sentence-transformers' loss
classes, so the plain path and the gradient cache compute exactly the same function.
The logits of a query run over candidate product columns from every negative source
(in-batch, hard negatives, other ranks, the queue); a boolean mask removes columns that
are not true negatives: the positive's own product appearing again, and any product of the
positive's group (variants of one SPU; MOON Embedding's false-negative control).
"""

from __future__ import annotations

import hashlib
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def stable_id(value: str) -> int:
    """A 63-bit integer for a string id, identical on every rank and every run."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def id_tensor(values: Sequence[str]) -> torch.Tensor:
    return torch.tensor([stable_id(v) for v in values], dtype=torch.long)


def false_negative_mask(positive_ids: torch.Tensor, positive_groups: torch.Tensor, candidate_ids: torch.Tensor,
                        candidate_groups: torch.Tensor, labels: torch.Tensor,
                        answer_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[B, N] True where a candidate must not count as a negative of query b.

    A candidate is masked when it is the positive product (a duplicate of the label column,
    e.g. from another rank or the queue), shares the positive's group, or is one of query b's
    other answers (`answer_ids` [B, A], rows padded with the positive's id; see
    moon.data.answers); the label column itself stays visible.
    """
    mask = (candidate_ids[None, :] == positive_ids[:, None]) | (candidate_groups[None, :] == positive_groups[:, None])
    if answer_ids is not None and answer_ids.shape[1] > 0:
        # Sorted rows + searchsorted: memory [B, N], not [B, N, A] (N grows with ranks and queue).
        answers = answer_ids.sort(dim=1).values
        wanted = candidate_ids[None, :].expand(answers.shape[0], -1).contiguous()
        found = torch.searchsorted(answers, wanted).clamp(max=answers.shape[1] - 1)
        mask |= answers.gather(1, found) == wanted
    mask[torch.arange(labels.shape[0]), labels] = False
    return mask


class Temperature(nn.Module):
    """Logit scale 1/T, learnable (CLIP-style, stored as a log) or fixed; capped at `max_scale`."""

    def __init__(self, temperature: float, learnable: bool, max_scale: float = 100.0) -> None:
        super().__init__()
        # Shape [1], not a 0-d tensor: ZeRO-3 partitions parameters by flattening them.
        init = torch.tensor([math.log(1.0 / temperature)], dtype=torch.float32)
        if learnable:
            self.log_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init)
        self.max_log_scale = math.log(max_scale)

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log_scale).exp().squeeze(0)


class InfoNCELoss(nn.Module):
    """Cross-entropy of each query over its candidate columns (masked columns get -inf)."""

    def __init__(self, temperature: Temperature) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, queries: torch.Tensor, candidates: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                weights: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (weighted mean loss, per-query loss [B])."""
        logits = self.temperature() * (queries.float() @ candidates.float().T)
        logits = logits.masked_fill(mask, float("-inf"))
        per_query = F.cross_entropy(logits, labels, reduction="none")
        if weights is None:
            return per_query.mean(), per_query
        return (per_query * weights).sum() / weights.sum().clamp_min(1e-12), per_query


class MatryoshkaLoss(nn.Module):
    """The base loss on the full embedding plus on re-normalised prefixes of it.

    Prefixes are taken from the (normalised) full embeddings, which equals the model's own
    Matryoshka output and also works for gathered and queued embeddings.
    """

    def __init__(self, base: InfoNCELoss, dims: Sequence[int], weights: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        self.base = base
        self.dims = list(dims)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.dims)

    def forward(self, queries: torch.Tensor, candidates: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                weights: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        total, per_query = self.base(queries, candidates, labels, mask, weights)
        for dim, w in zip(self.dims, self.weights):
            part, _ = self.base(F.normalize(queries[:, :dim], dim=-1), F.normalize(candidates[:, :dim], dim=-1),
                                labels, mask, weights)
            total = total + w * part
        return total, per_query


class IntraProductLoss(nn.Module):
    """MOON2.0's intra-product alignment: a product's image embedding <-> its own title's.

    Symmetric InfoNCE over the batch's products; products of the same group are masked
    (their titles may legitimately describe each other's images). The hard negatives' titles
    (`extra_titles`) are further columns of the image -> title direction only, and their images
    alone (`extra_images`) of the title -> image direction only, both with `extra_groups`: a
    title must then pick its own photo among photos of its own category, which is what text ->
    image search over one catalogue asks of it (and the image its own title among such titles).
    """

    def __init__(self, temperature: Temperature) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, image_emb: torch.Tensor, title_emb: torch.Tensor, group_ids: torch.Tensor,
                extra_titles: Optional[torch.Tensor] = None,
                extra_groups: Optional[torch.Tensor] = None,
                extra_images: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = image_emb.shape[0]
        labels = torch.arange(n, device=image_emb.device)
        mask = group_ids[None, :] == group_ids[:, None]
        mask[labels, labels] = False
        logits = self.temperature() * (image_emb.float() @ title_emb.float().T)
        i2t = self._direction(logits, mask, image_emb, extra_titles, extra_groups, group_ids)
        t2i = self._direction(logits.T, mask, title_emb, extra_images, extra_groups, group_ids)
        return (i2t + t2i) / 2

    def _direction(self, logits: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                   extra: Optional[torch.Tensor], extra_groups: Optional[torch.Tensor],
                   group_ids: torch.Tensor) -> torch.Tensor:
        """InfoNCE of one direction: row i's answer is column i, `extra` adds negative columns."""
        if extra is not None and extra.shape[0] > 0:
            logits = torch.cat([logits, self.temperature() * (rows.float() @ extra.float().T)], dim=1)
            mask = torch.cat([mask, extra_groups[None, :] == group_ids[:, None]], dim=1)
        labels = torch.arange(rows.shape[0], device=rows.device)
        return F.cross_entropy(logits.masked_fill(mask, float("-inf")), labels)
