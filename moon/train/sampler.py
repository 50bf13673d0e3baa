"""Training batches: queries mixed by kind, their positives, and same-category hard negatives.

Every batch is a pure function of (seed, step, rank): each query kind is an endless stream
of per-epoch permutations seeded by (seed, kind, epoch), and the global batch of a step is
the next window of each stream, split across ranks. Resuming at step s therefore replays
exactly the data an uninterrupted run would have seen, with no iterator state to save.

Hard negatives (MOON's same-category negatives) come from the miner's sidecar parquet
(columns query_id, positive_id, negative_id, policy, rank, score) when given, looked up
by query id and else by positive id; when a query has fewer than k mined negatives, or no
sidecar is given, the rest are random products of the positive's leaf category (then of
its parent levels, then of the whole catalogue). Products of the positive's group are
never chosen, nor (given `answers`) products that another training query with the same text
points at (see moon.data.answers). Every fallback and skip is counted in `report`.

With `fresh_image_queries`, each image query drawn is replaced by a new augmentation of its
positive's first photo (moon.data.importers.augment), seeded by (seed, step, slot) like the
rest of the batch: a catalogue import stores one augmented view per product, so without it
the image tower meets the same view of a product in every epoch.

With `augment_product_photos` (a `PhotoAugment`), positives and hard negatives of a batch show a
new augmentation of their first photo instead (the same draw, seeded by (seed, step, rank, slot);
its core boxes are moved into the view so a cropper's region still crops the same object). Its
`share` says what fraction of the shown products are augmented and `min_area` how much of the
photo a crop keeps at least: the other tasks' targets are whole photos, so a milder augmentation
trades less of them away. Its `scope` "products" augments only the products the queries are
scored against: the passes of their parts (image alone, title alone, image + title: the intra,
label and query -> image terms) keep the stored photos, the inputs of t2i and the zero-shot tasks.
This is the training-time augmentation of CLIP-style image towers: trained on stored pixels
only, an image tower never learns that a cropped or flipped photo is the same product, which
is exactly what an image query asks of it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from moon.data.answers import SharedAnswers
from moon.data.importers.augment import SCALE, draw_view
from moon.data.records import DataError, ProductImage, ProductRecord, QueryKind, QueryRecord

log = logging.getLogger(__name__)

KINDS: tuple[QueryKind, ...] = (QueryKind.TEXT, QueryKind.IMAGE, QueryKind.PRODUCT)


def kind_counts(mix: Mapping[QueryKind, float], batch_size: int,
                available: Mapping[QueryKind, int]) -> dict[QueryKind, int]:
    """Queries of each kind in a batch of `batch_size`: proportional to `mix` (largest
    remainder rounding), over the kinds that have queries at all."""
    weights = {k: (mix.get(k, 0.0) if available.get(k, 0) > 0 else 0.0) for k in KINDS}
    total = sum(weights.values())
    if total <= 0:
        raise DataError("no training queries of any kind with a positive mix weight "
                        f"(available: { {k.value: n for k, n in available.items()} })")
    exact = {k: batch_size * w / total for k, w in weights.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    by_remainder = sorted(KINDS, key=lambda k: (-(exact[k] - counts[k]), KINDS.index(k)))
    for k in by_remainder[:batch_size - sum(counts.values())]:
        counts[k] += 1
    return counts


@dataclass
class TrainBatch:
    """One rank's micro-batch. negatives[i*k:(i+1)*k] are the hard negatives of queries[i];
    answers[i] are the other products that answer queries[i]'s text (never its negatives).
    `stored_positives` / `stored_negatives` hold the same products with their stored photos when
    only the main term's products are augmented (`PhotoAugment.scope == "products"`)."""

    step: int
    queries: list[QueryRecord]
    positives: list[ProductRecord]
    negatives: list[ProductRecord]
    hard_k: int
    answers: list[tuple[str, ...]] = field(default_factory=list)
    stored_positives: Optional[list[ProductRecord]] = None
    stored_negatives: Optional[list[ProductRecord]] = None

    @property
    def positives_for_parts(self) -> list[ProductRecord]:
        """The positives as the passes of their parts (image alone, title alone, image + title) see them."""
        return self.positives if self.stored_positives is None else self.stored_positives

    @property
    def negatives_for_parts(self) -> list[ProductRecord]:
        """The hard negatives as the passes of their parts see them."""
        return self.negatives if self.stored_negatives is None else self.stored_negatives


@dataclass
class SamplerReport:
    """What the sampler did with the data (saved in the run summary; nothing dropped silently)."""

    queries_by_kind: dict[str, int] = field(default_factory=dict)
    batch_kinds: dict[str, int] = field(default_factory=dict)
    skipped_unknown_positive: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    sidecar_rows: int = 0
    sidecar_unknown_products: int = 0
    sidecar_same_group: int = 0
    mined_negatives_used: int = 0
    mined_negatives_shared_answer: int = 0
    category_fallback_negatives: int = 0
    shared_answers: dict[str, float] = field(default_factory=dict)


class _Catalogue:
    """Products by id and by every category prefix, for fallback negatives."""

    def __init__(self, products: Sequence[ProductRecord]) -> None:
        self.products = list(products)
        self.index = {p.product_id: i for i, p in enumerate(self.products)}
        if len(self.index) != len(self.products):
            raise DataError("training products contain duplicate product_id values")
        group_index: dict[str, int] = {}
        self.groups = np.array([group_index.setdefault(p.group_id, len(group_index)) for p in self.products],
                               dtype=np.int64)
        pools: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, p in enumerate(self.products):
            for depth in range(1, len(p.category) + 1):
                pools[tuple(p.category[:depth])].append(i)
        self.pools = {key: np.array(v, dtype=np.int64) for key, v in pools.items()}
        self.all = np.arange(len(self.products), dtype=np.int64)

    def fallback(self, positive: int, taken: list[int], k: int, rng: np.random.Generator,
                 exclude: Sequence[int] = ()) -> list[int]:
        """Up to k random products, nearest category level first, never of the positive's group
        nor in `exclude`."""
        group = self.groups[positive]
        chosen = list(taken)
        banned = np.asarray(list(taken) + list(exclude), dtype=np.int64)
        category = self.products[positive].category
        levels = [self.pools[tuple(category[:d])] for d in range(len(category), 0, -1)] + [self.all]
        for pool in levels:
            if len(chosen) >= k:
                break
            ok = pool[self.groups[pool] != group]
            ok = ok[~np.isin(ok, banned)]
            if len(ok):
                picked = rng.choice(ok, size=min(k - len(chosen), len(ok)), replace=False).tolist()
                chosen.extend(picked)
                banned = np.concatenate([banned, np.asarray(picked, dtype=np.int64)])
        return chosen[len(taken):]


class _MinedNegatives:
    """The miner's sidecar as lists of catalogue indices, by query id and by positive id."""

    def __init__(self, path: Path, catalogue: _Catalogue, report: SamplerReport) -> None:
        from moon.negatives.sidecar import negatives_by_pair, read_negatives

        table = read_negatives(path)
        report.sidecar_rows = table.num_rows
        self.by_query: dict[str, list[int]] = {}
        self.by_positive: dict[str, list[int]] = defaultdict(list)
        for (query_id, positive_id), negative_ids in sorted(negatives_by_pair(table).items()):
            pos = catalogue.index.get(positive_id)
            kept = []
            for negative_id in negative_ids:
                neg = catalogue.index.get(negative_id)
                if neg is None or pos is None:
                    report.sidecar_unknown_products += 1
                elif catalogue.groups[neg] == catalogue.groups[pos]:
                    report.sidecar_same_group += 1
                else:
                    kept.append(neg)
            self.by_query[query_id] = kept
            self.by_positive[positive_id] += [n for n in kept if n not in self.by_positive[positive_id]]
        if report.sidecar_unknown_products:
            log.warning("%s: %d sidecar rows name products that are not in the training split; not used",
                        path, report.sidecar_unknown_products)

    def candidates(self, query: QueryRecord) -> list[int]:
        return self.by_query.get(query.query_id) or self.by_positive.get(query.positive_id, [])


PHOTO_AUGMENT_SCOPES = ("all", "products")


@dataclass(frozen=True)
class PhotoAugment:
    """How training products' photos are augmented: each shown product is, with probability `share`,
    a random resized crop keeping at least `min_area` of its photo (+ flip). `scope` says which
    embeddings see the views: "all", or "products" (only the products the queries are scored
    against; the passes of their parts keep the stored photos, the targets of t2i and the
    zero-shot tasks)."""

    share: float = 1.0
    min_area: float = SCALE[0]
    scope: str = "all"

    def __post_init__(self) -> None:
        if not (0 < self.share <= 1 and 0 < self.min_area <= 1):
            raise ValueError(f"PhotoAugment needs 0 < share <= 1 and 0 < min_area <= 1, got {self}")
        if self.scope not in PHOTO_AUGMENT_SCOPES:
            raise ValueError(f"PhotoAugment scope must be one of {PHOTO_AUGMENT_SCOPES}, got {self.scope!r}")


class TrainSampler:
    """Deterministic, rank-sharded batches of (query, positive, k hard negatives)."""

    def __init__(self, queries: Sequence[QueryRecord], products: Sequence[ProductRecord],
                 mix: Mapping[QueryKind, float], batch_size: int, hard_k: int, seed: int,
                 rank: int = 0, world_size: int = 1, negatives_path: Optional[Path] = None,
                 answers: Optional[SharedAnswers] = None, fresh_image_queries: bool = False,
                 augment_product_photos: Optional[PhotoAugment] = None) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.report = SamplerReport()
        self.catalogue = _Catalogue(products)
        self.batch_size, self.hard_k, self.seed = batch_size, hard_k, seed
        self.rank, self.world_size = rank, world_size
        self.streams: dict[QueryKind, list[QueryRecord]] = {k: [] for k in KINDS}
        for q in queries:
            if q.positive_id not in self.catalogue.index:
                self.report.skipped_unknown_positive += 1
                if len(self.report.skipped_examples) < 5:
                    self.report.skipped_examples.append(q.query_id)
                continue
            self.streams[q.kind].append(q)
        if self.report.skipped_unknown_positive:
            log.warning("%d training queries point at products missing from the training split (e.g. %s); "
                        "they are not used", self.report.skipped_unknown_positive,
                        ", ".join(self.report.skipped_examples))
        self.report.queries_by_kind = {k.value: len(v) for k, v in self.streams.items()}
        self.counts = kind_counts(mix, batch_size, {k: len(v) for k, v in self.streams.items()})
        self.report.batch_kinds = {k.value: n for k, n in self.counts.items()}
        self.mined = (_MinedNegatives(Path(negatives_path), self.catalogue, self.report)
                      if negatives_path is not None else None)
        self.answers = answers
        self.fresh_image_queries = fresh_image_queries
        self.augment_product_photos = augment_product_photos
        if answers is not None:
            self.report.shared_answers = answers.summary()
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    @property
    def queries_per_step(self) -> int:
        """Queries consumed by one step over all ranks."""
        return self.batch_size * self.world_size

    def epoch(self, step: int) -> float:
        total = sum(len(v) for v in self.streams.values())
        return step * self.queries_per_step / max(1, total)

    def _perm(self, kind_index: int, epoch: int, n: int) -> np.ndarray:
        key = (kind_index, epoch)
        if key not in self._perms:
            if len(self._perms) > 2 * len(KINDS):
                self._perms.clear()
            self._perms[key] = np.random.default_rng([self.seed, 1, kind_index, epoch]).permutation(n)
        return self._perms[key]

    def _take(self, kind: QueryKind, step: int) -> list[QueryRecord]:
        pool, count = self.streams[kind], self.counts[kind]
        if count == 0:
            return []
        n, kind_index = len(pool), KINDS.index(kind)
        start = (step * self.world_size + self.rank) * count
        out = []
        for pos in range(start, start + count):
            epoch, offset = divmod(pos, n)
            out.append(pool[int(self._perm(kind_index, epoch, n)[offset])])
        return out

    def _negatives(self, query: QueryRecord, positive: int, answers: tuple[str, ...],
                   rng: np.random.Generator) -> list[int]:
        k = self.hard_k
        chosen: list[int] = []
        shared = {self.catalogue.index[i] for i in answers if i in self.catalogue.index}
        if self.mined is not None:
            mined = self.mined.candidates(query)
            if shared and mined:
                kept = [n for n in mined if n not in shared]
                self.report.mined_negatives_shared_answer += len(mined) - len(kept)
                mined = kept
            if mined:
                pick = rng.choice(len(mined), size=min(k, len(mined)), replace=False)
                chosen = [mined[int(i)] for i in pick]
                self.report.mined_negatives_used += len(chosen)
        if len(chosen) < k:
            extra = self.catalogue.fallback(positive, chosen, k, rng, exclude=sorted(shared))
            self.report.category_fallback_negatives += len(extra)
            chosen += extra
        if len(chosen) < k:
            raise DataError(f"cannot find {k} hard negatives for query {query.query_id}: the training split has "
                            f"only {len(chosen)} products outside its positive's group and the products that "
                            "answer the same query text")
        return chosen

    def _fresh_image_query(self, query: QueryRecord, step: int, slot: int) -> QueryRecord:
        """`query` with its image replaced by a new augmentation of its positive's first photo."""
        product = self.catalogue.products[self.catalogue.index[query.positive_id]]
        rng = np.random.default_rng([self.seed, 3, step, self.rank * self.batch_size + slot])
        return query.model_copy(update={"image": _new_view(product.images[0], rng, keep_boxes=False)})

    def _augmented_product(self, product: ProductRecord, step: int, slot: int) -> ProductRecord:
        """`product` with its first photo replaced by a new view; its boxes move with the view."""
        policy = self.augment_product_photos
        rng = np.random.default_rng([self.seed, 4, step, self.rank, slot])
        if policy.share < 1 and rng.random() >= policy.share:
            return product
        image = _new_view(product.images[0], rng, keep_boxes=True, scale=(policy.min_area, 1.0))
        return product.model_copy(update={"images": [image, *product.images[1:]]})

    def batch(self, step: int) -> TrainBatch:
        """This rank's micro-batch number `step` (a pure function of seed, step and rank)."""
        queries = [q for kind in KINDS for q in self._take(kind, step)]
        if self.fresh_image_queries:
            queries = [self._fresh_image_query(q, step, slot) if q.kind == QueryKind.IMAGE else q
                       for slot, q in enumerate(queries)]
        positives = [self.catalogue.index[q.positive_id] for q in queries]
        answers = [self.answers.of(q) if self.answers is not None else () for q in queries]
        negatives: list[int] = []
        if self.hard_k:
            for slot, (q, pos, shared) in enumerate(zip(queries, positives, answers)):
                global_slot = self.rank * self.batch_size + slot
                rng = np.random.default_rng([self.seed, 2, step, global_slot])
                negatives += self._negatives(q, pos, shared, rng)
        stored = [self.catalogue.products[i] for i in positives + negatives]
        shown, parts = stored, None
        if self.augment_product_photos is not None:
            shown = [self._augmented_product(p, step, slot) for slot, p in enumerate(stored)]
            if self.augment_product_photos.scope == "products":
                parts = stored
        cut = len(positives)
        return TrainBatch(step=step, queries=queries, positives=shown[:cut], negatives=shown[cut:],
                          hard_k=self.hard_k, answers=answers,
                          stored_positives=None if parts is None else parts[:cut],
                          stored_negatives=None if parts is None else parts[cut:])

    def state_dict(self) -> dict:
        """What must match for a resumed run to see the same data order."""
        return {"seed": self.seed, "batch_size": self.batch_size, "world_size": self.world_size,
                "hard_k": self.hard_k, "shared_answers": self.answers is not None,
                "counts": {k.value: n for k, n in self.counts.items()},
                "queries": self.report.queries_by_kind, "products": len(self.catalogue.products),
                **({"fresh_image_queries": True} if self.fresh_image_queries else {}),
                **({"augment_product_photos": asdict(self.augment_product_photos)}
                   if self.augment_product_photos is not None else {})}

    def check_resume(self, saved: Mapping) -> None:
        mine = self.state_dict()
        if "augment_product_photos" in saved:   # written before `scope` existed: every pass saw the views
            saved = {**saved, "augment_product_photos": {"scope": "all", **saved["augment_product_photos"]}}
        diff = {k: (saved.get(k), mine.get(k)) for k in sorted(set(mine) | set(saved))
                if saved.get(k) != mine.get(k)}
        if diff:
            raise ValueError("cannot resume with the same data order: the checkpoint's sampler differs in "
                             + ", ".join(f"{k} (checkpoint {a}, now {b})" for k, (a, b) in diff.items()))


def _new_view(image: ProductImage, rng: np.random.Generator, keep_boxes: bool,
              scale: tuple[float, float] = SCALE) -> ProductImage:
    """One draw of the import's augmentation of `image` (crops covering `scale` of it), stored as the
    import stores queries (JPEG q90); with `keep_boxes` its boxes are moved into the view (dropped
    when cut away)."""
    source = image.to_pil()
    view = draw_view(source.width, source.height, rng, scale)
    boxes = [moved for moved in map(view.move_box, image.boxes) if moved is not None] if keep_boxes else []
    return ProductImage.from_pil(view.apply(source), "jpg", quality=90, boxes=boxes)
