"""The training objective as one nn.Module, so DeepSpeed optimises model and temperature together.

`ContrastiveObjective` owns the embedder, the learnable temperature and the losses. It is
the module handed to `deepspeed.initialize`; its forward takes an `op` so the plain path
and the gradient cache route every computation through the engine (DeepSpeed's backward
hooks, ZeRO-3 parameter gathering and autocast all key on engine forwards):

- op="embed":  one chunk of model inputs -> (embeddings, aux loss)
- op="loss":   embeddings of a whole micro-batch -> (contrastive loss, stats)
- op="step":   the plain path, embed everything with graph then "loss" (+ aux)

Candidate columns of the query->product logits are, in order: this rank's products (the
B positives, then the B*k hard negatives), the other ranks' products (spatial), then the
queue (temporal). The label of query i is column i; `false_negative_mask` removes the
positive's duplicates, its group mates and the other answers of the query's text from every
source; queries of kinds outside `negatives.hard_query_kinds` also lose the hard-negative
columns of every rank.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from moon.data.records import ProductView, QueryKind
from moon.model.base import TrainableEmbedder
from moon.train.gather import Gathered, gather_products
from moon.train.labels import LabelAlignmentLoss, LabelBatch
from moon.train.loss import (InfoNCELoss, IntraProductLoss, MatryoshkaLoss, Temperature, false_negative_mask,
                             id_tensor)
from moon.train.queue import EmbeddingQueue
from moon.train.recipe import LossSection, NegativesSection
from moon.train.sampler import KINDS, TrainBatch

GroupSpec = tuple[Sequence[Any], Callable[[Sequence[Any]], dict[str, torch.Tensor]]]
"""(records, records -> model inputs) for one embedding group of a micro-batch."""


@dataclass
class Candidates:
    """The loss's candidate columns: embeddings, product and group ids, and which are hard negatives."""

    embeddings: torch.Tensor
    ids: torch.Tensor
    groups: torch.Tensor
    hard: torch.Tensor


@dataclass
class BatchMeta:
    """Ids and weights of a micro-batch as tensors (equal shapes on every rank)."""

    positive_ids: torch.Tensor
    positive_groups: torch.Tensor
    product_ids: torch.Tensor
    product_groups: torch.Tensor
    hard_owner: torch.Tensor
    kinds: torch.Tensor
    weights: torch.Tensor
    answer_ids: Optional[torch.Tensor] = None
    labels: Optional[LabelBatch] = None

    @classmethod
    def from_batch(cls, batch: TrainBatch, kind_weights: dict[QueryKind, float],
                   labels: Optional[LabelBatch] = None) -> "BatchMeta":
        products = batch.positives + batch.negatives
        kinds = [KINDS.index(q.kind) for q in batch.queries]
        answer_ids = None
        if any(batch.answers):
            width = max(len(a) for a in batch.answers)
            # Rows padded with the query's own positive, which the mask hides anyway. Width is the
            # batch's largest answer set (242 on the fashion catalogue), memory B x width.
            answer_ids = id_tensor([a for q, answers in zip(batch.queries, batch.answers)
                                    for a in list(answers) + [q.positive_id] * (width - len(answers))])
            answer_ids = answer_ids.view(len(batch.queries), width)
        return cls(
            positive_ids=id_tensor([p.product_id for p in batch.positives]),
            positive_groups=id_tensor([p.group_id for p in batch.positives]),
            product_ids=id_tensor([p.product_id for p in products]),
            product_groups=id_tensor([p.group_id for p in products]),
            hard_owner=torch.arange(len(batch.queries)).repeat_interleave(batch.hard_k),
            kinds=torch.tensor(kinds, dtype=torch.long),
            weights=torch.tensor([kind_weights[q.kind] for q in batch.queries], dtype=torch.float32),
            answer_ids=answer_ids,
            labels=labels,
        )

    def to(self, device: torch.device) -> "BatchMeta":
        """A copy with every tensor (label targets included) on `device`: the loss compares ids
        against embeddings' columns and all-gathers them, which NCCL does only on CUDA."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device)
        if self.labels is not None:
            moved["labels"] = replace(self.labels, targets=self.labels.targets.to(device),
                                      offsets=None if self.labels.offsets is None else self.labels.offsets.to(device))
        return BatchMeta(**moved)


TITLE_ONLY = ProductView(images=False, crops=False, title=True, category=False, attributes=False)


LABEL_INPUT_GROUPS = {"image": "images", "title": "titles", "image_title": "image_titles"}
"""Which embedding group each `loss.label_inputs` entry scores."""


def build_groups(batch: TrainBatch, processor, view: ProductView, intra: bool,
                 labels: Optional[LabelBatch] = None,
                 label_inputs: Sequence[str] = ("image", "title"), intra_hard: bool = False,
                 intra_hard_images: bool = False, query_images: bool = False) -> dict[str, GroupSpec]:
    """The embedding groups of a micro-batch: queries, products (positives + hard negatives),
    the positives' images alone and titles alone (for the intra-product and label terms, the
    images also for the query -> image term), the hard negatives' titles and / or images alone
    when the intra term scores them, the positives' image + title when the label term scores
    it, and the candidate label texts."""
    groups: dict[str, GroupSpec] = {
        "queries": (batch.queries, processor.queries),
        "products": (batch.positives + batch.negatives, lambda recs: processor.products(recs, view)),
    }
    image_view = ProductView(images=True, crops=view.crops, title=False, category=False, attributes=False)
    if intra or labels is not None or query_images:
        groups["images"] = (batch.positives_for_parts, lambda recs: processor.products(recs, image_view))
    if intra or labels is not None:
        groups["titles"] = (batch.positives_for_parts, lambda recs: processor.products(recs, TITLE_ONLY))
    if intra and intra_hard and batch.negatives:
        groups["negative_titles"] = (batch.negatives_for_parts, lambda recs: processor.products(recs, TITLE_ONLY))
    if intra and intra_hard_images and batch.negatives:
        groups["negative_images"] = (batch.negatives_for_parts, lambda recs: processor.products(recs, image_view))
    if labels is not None:
        groups["labels"] = (labels.queries(), processor.queries)
        if "image_title" in label_inputs:
            image_title = ProductView(images=True, crops=view.crops, title=True, category=False, attributes=False)
            groups["image_titles"] = (batch.positives_for_parts, lambda recs: processor.products(recs, image_title))
    return groups


def _kind_ids(kinds: Sequence[QueryKind]) -> torch.Tensor:
    """The `KINDS` indices of `kinds`, the encoding `BatchMeta.kinds` uses."""
    return torch.tensor([KINDS.index(k) for k in kinds], dtype=torch.long)


def _is_kind(batch_kinds: torch.Tensor, kind_ids: torch.Tensor) -> torch.Tensor:
    """Per query: is its kind one of `kind_ids` (on the batch's device)."""
    return torch.isin(batch_kinds, kind_ids.to(batch_kinds.device))


class ContrastiveObjective(nn.Module):
    """Embedder + temperature + losses; see the module docstring for the ops."""

    def __init__(self, model: TrainableEmbedder, loss: LossSection, negatives: NegativesSection,
                 queue: Optional[EmbeddingQueue] = None) -> None:
        super().__init__()
        dim = model.embedding_dim
        too_big = [d for d in loss.matryoshka_dims if d >= dim]
        if too_big:
            raise ValueError(f"loss.matryoshka_dims {too_big} must be smaller than the embedding size {dim}")
        self.model = model
        self.temperature = Temperature(loss.temperature, loss.learn_temperature, loss.max_logit_scale)
        info_nce = InfoNCELoss(self.temperature)
        self.query_loss: nn.Module = (MatryoshkaLoss(info_nce, loss.matryoshka_dims, loss.matryoshka_weights)
                                      if loss.matryoshka_dims else info_nce)
        self.intra = IntraProductLoss(self.temperature) if loss.intra_product_weight > 0 else None
        self.intra_weight = loss.intra_product_weight
        self.query_image_loss = info_nce if loss.query_image_weight > 0 else None
        self.query_image_weight = loss.query_image_weight
        self.query_image_kind_ids = _kind_ids(loss.query_image_kinds)
        self.label_loss = LabelAlignmentLoss(self.temperature) if loss.label_weight > 0 else None
        self.label_weight = loss.label_weight
        self.label_groups = [LABEL_INPUT_GROUPS[name] for name in loss.label_inputs]
        self.aux_weight = loss.aux_weight
        self.negatives = negatives
        self.hard_kind_ids = _kind_ids(negatives.hard_query_kinds)
        self.queue = queue
        self.queue_active = False

    def forward(self, op: str, **kw: Any):
        if op == "embed":
            return self.embed(kw["inputs"])
        if op == "loss":
            return self.loss(kw["embeddings"], kw["meta"])
        if op == "step":
            embeddings, aux = {}, None
            for name, inputs in kw["inputs"].items():
                embeddings[name], part = self.embed(inputs)
                aux = part if aux is None else aux + part
            loss, stats = self.loss(embeddings, kw["meta"])
            stats["aux"] = aux.detach()
            return loss + self.aux_weight * aux, stats
        raise ValueError(f"unknown objective op '{op}'")

    def embed(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(**inputs)
        aux = out.aux_loss if out.aux_loss is not None else out.embeddings.new_zeros(())
        return out.embeddings.float(), aux.float()

    def _gather(self, embeddings: torch.Tensor, ids: torch.Tensor, groups: torch.Tensor) -> Gathered:
        """Every rank's rows when `negatives.spatial`, else this rank's alone."""
        if self.negatives.spatial:
            return gather_products(embeddings, ids, groups)
        return Gathered(embeddings, ids, groups, slice(0, embeddings.shape[0]))

    def _candidates(self, products: torch.Tensor, meta: BatchMeta) -> tuple[Gathered, Candidates]:
        """All candidate columns (local first, then other ranks, then queue) with their ids.

        Every rank lays out its products the same way (B positives, then B*k hard negatives, equal
        shapes on every rank), so a gathered row is a hard negative when its offset within its
        rank's block is at least B; queue entries are not counted as hard.
        """
        gathered = self._gather(products, meta.product_ids, meta.product_groups)
        local = gathered.local
        n_local, n_positives = products.shape[0], meta.positive_ids.shape[0]
        others = torch.cat([torch.arange(0, local.start), torch.arange(local.stop, gathered.embeddings.shape[0])])
        hard = torch.arange(gathered.embeddings.shape[0], device=products.device) % n_local >= n_positives
        emb = [products, gathered.embeddings[others]]
        ids = [meta.product_ids, gathered.product_ids[others]]
        groups = [meta.product_groups, gathered.group_ids[others]]
        flags = [hard[local], hard[others.to(products.device)]]
        if self.queue is not None and self.queue_active and len(self.queue):
            q_emb, q_ids, q_groups = self.queue.contents()
            emb.append(q_emb.to(products.device))
            ids.append(q_ids.to(products.device))
            groups.append(q_groups.to(products.device))
            flags.append(torch.zeros(q_emb.shape[0], dtype=torch.bool, device=products.device))
        return gathered, Candidates(torch.cat(emb), torch.cat(ids), torch.cat(groups), torch.cat(flags))

    def loss(self, embeddings: dict[str, torch.Tensor], meta: BatchMeta) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        queries, products = embeddings["queries"], embeddings["products"]
        n_queries, n_local = queries.shape[0], products.shape[0]
        device = queries.device
        with torch.autocast(device_type=device.type, enabled=False):
            gathered, candidates = self._candidates(products.float(), meta)
            cand = candidates.embeddings
            labels = torch.arange(n_queries, device=device)
            mask = false_negative_mask(meta.positive_ids, meta.positive_groups, candidates.ids, candidates.groups,
                                       labels, meta.answer_ids)
            no_hard = ~_is_kind(meta.kinds, self.hard_kind_ids)
            mask |= no_hard[:, None] & candidates.hard[None, :]
            if not self.negatives.in_batch:
                allowed = torch.zeros(n_queries, n_local, dtype=torch.bool, device=device)
                allowed[labels, labels] = True
                allowed[meta.hard_owner, n_queries + torch.arange(meta.hard_owner.shape[0], device=device)] = True
                mask[:, :n_local] |= ~allowed
            total, per_query = self.query_loss(queries.float(), cand, labels, mask, meta.weights)
            stats = self._stats(queries, cand, labels, mask, per_query, meta)
            if self.intra is not None:
                extra_titles, extra_images = embeddings.get("negative_titles"), embeddings.get("negative_images")
                intra = self.intra(embeddings["images"].float(), embeddings["titles"].float(), meta.positive_groups,
                                   None if extra_titles is None else extra_titles.float(),
                                   meta.product_groups[meta.positive_groups.shape[0]:],
                                   None if extra_images is None else extra_images.float())
                stats["intra"] = intra.detach()
                total = total + self.intra_weight * intra
            if self.query_image_loss is not None:
                query_image = self._query_image(queries.float(), embeddings["images"].float(), meta)
                if query_image is not None:
                    stats["query_image"] = query_image.detach()
                    total = total + self.query_image_weight * query_image
            if self.label_loss is not None and meta.labels is not None:
                texts = embeddings["labels"].float()
                label = torch.stack([self.label_loss(embeddings[group].float(), texts, meta.labels)
                                     for group in self.label_groups]).mean()
                stats["label"] = label.detach()
                total = total + self.label_weight * label
        if self.queue is not None:
            self.queue.enqueue(gathered.embeddings.detach(), gathered.product_ids, gathered.group_ids)
        stats["contrastive"] = total.detach()
        return total, stats

    def _query_image(self, queries: torch.Tensor, images: torch.Tensor, meta: BatchMeta) -> Optional[torch.Tensor]:
        """Queries of `loss.query_image_kinds` -> the positives' images alone (every rank's when
        spatial), with the main term's false-negative mask; None when the micro-batch has no such
        query.

        For text queries this is text -> image search's own pairing (a query-encoded text against
        a product seen by its photo only), which the main term (full product) and the intra term
        (title encoded as a product) both approach only indirectly. For image queries it pairs an
        augmented view with its own photo alone, the image half of image -> product search."""
        selected = _is_kind(meta.kinds, self.query_image_kind_ids)
        if not bool(selected.any()):
            return None
        gathered = self._gather(images, meta.positive_ids, meta.positive_groups)
        labels = torch.arange(gathered.local.start, gathered.local.stop, device=queries.device)
        mask = false_negative_mask(meta.positive_ids, meta.positive_groups, gathered.product_ids,
                                   gathered.group_ids, labels, meta.answer_ids)
        loss, _ = self.query_image_loss(queries[selected], gathered.embeddings, labels[selected], mask[selected])
        return loss

    @torch.no_grad()
    def _stats(self, queries: torch.Tensor, cand: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
               per_query: torch.Tensor, meta: BatchMeta) -> dict[str, torch.Tensor]:
        logits = (queries.float() @ cand.T).masked_fill(mask, float("-inf"))
        stats = {
            "accuracy": (logits.argmax(dim=1) == labels).float().mean(),
            "temperature": 1.0 / self.temperature().detach(),
            "candidates": torch.tensor(float(cand.shape[0])),
            "masked": mask.float().sum(dim=1).mean(),
        }
        for i, kind in enumerate(KINDS):
            sel = meta.kinds == i
            if bool(sel.any()):
                stats[f"loss_{kind.value}"] = per_query[sel].detach().mean()
        return stats

