"""MoonProcessor: products and queries -> Qwen2-VL-family model inputs with segment ids.

One product (MOON's "many-to-one" input) is rendered as one prompt::

    <|im_start|>[<|vision_start|><|image_pad|>*n<|vision_end|>] per image, each followed by
    the crop of its core region when it has one]Title: ...\\nCategory: a > b\\nAttributes: k: v; ...<|im_end|>

Queries use the same path: text queries as `Query: ...`, image queries as images only,
product queries (image + text) as images + `Title: ...`. The whole prompt is tokenized at
once (so token ids equal what the HF processor produces for the same text) and each token
gets the segment of the character span it starts in. Images are resized to fixed squares and
patchified with vectorised tensor ops (see images.py); M-RoPE positions are precomputed for
the batch (see positions.py). Batches are right-padded; padding carries segment PAD (0).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

from moon.data.records import FULL_VIEW, DataError, ProductImage, ProductRecord, ProductView, QueryKind
from moon.model.api import QueryInput
from moon.model.base import BatchInputs, as_query
from moon.model.config import InputConfig
from moon.model.images import PatchGeometry, PixelPacker, core_box, crop_square, resize_square
from moon.model.positions import mrope_position_ids
from moon.model.segments import Segment
from moon.model.tokenizer import IM_END, IM_START, IMAGE_PAD, PAD_TOKEN, VISION_END, VISION_START

log = logging.getLogger(__name__)


@dataclass
class RenderedItem:
    """One product or query before batching: prompt text, segment spans and pixels."""

    text: str = ""
    span_starts: list[int] = field(default_factory=list)
    span_segments: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    image_segments: list[Segment] = field(default_factory=list)
    text_start: int = 0

    def add(self, piece: str, segment: Segment) -> None:
        self.span_starts.append(len(self.text))
        self.span_segments.append(int(segment))
        self.text += piece


class MoonProcessor:
    """Turns records into batched model inputs; the `RecordProcessor` of MoonModel."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, inputs: InputConfig, geometry: PatchGeometry):
        self.tokenizer = tokenizer
        self.config = inputs
        self.geometry = geometry
        for side in {inputs.image_size, inputs.crop_side}:
            if side % geometry.factor:
                raise ValueError(f"inputs.image_size/crop_size {side} must be a multiple of {geometry.factor}")
        self.packer = PixelPacker(geometry, inputs.image_mean, inputs.image_std)
        # A private copy of the Rust tokenizer: HF wrappers switch padding/truncation on the
        # shared backend when called with padding=True, which would pad our encodings.
        self.backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.backend.no_padding()
        self.backend.no_truncation()
        ids = {name: tokenizer.convert_tokens_to_ids(name)
               for name in (PAD_TOKEN, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD)}
        if tokenizer.pad_token_id is not None:
            ids[PAD_TOKEN] = tokenizer.pad_token_id
        self.pad_id = ids[PAD_TOKEN]
        self.image_token_id = ids[IMAGE_PAD]
        self.counts: Counter = Counter()
        """data left out on purpose (images over max_images, text over max_text_tokens)."""

    # ---- rendering (one item) ------------------------------------------------------------

    def _add_image(self, item: RenderedItem, side: int, pixels: np.ndarray, segment: Segment) -> None:
        item.add(VISION_START, Segment.SPECIAL)
        item.add(IMAGE_PAD * self.geometry.tokens(side), segment)
        item.add(VISION_END, Segment.SPECIAL)
        item.images.append(pixels)
        item.image_segments.append(segment)

    def _add_images(self, item: RenderedItem, images: Sequence[ProductImage], crops: bool, where: str) -> None:
        cfg = self.config
        if len(images) > cfg.max_images:
            self.counts["images_over_max_images"] += len(images) - cfg.max_images
            images = images[:cfg.max_images]
        for i, image in enumerate(images):
            try:
                pil = image.to_pil()
            except DataError as exc:
                raise DataError(f"{where} image {i}: {exc}") from None
            self._add_image(item, cfg.image_size, resize_square(pil, cfg.image_size), Segment.IMAGE)
            box = core_box(image) if crops and cfg.use_crops else None
            if box is not None:
                try:
                    pixels = crop_square(pil, box, cfg.crop_side)
                except ValueError as exc:
                    raise DataError(f"{where} image {i}: {exc}") from None
                self._add_image(item, cfg.crop_side, pixels, Segment.CROP)

    def _add_field(self, item: RenderedItem, label: str, value: str, segment: Segment) -> None:
        if "<|" in value:
            # text spelling a control token (e.g. "<|image_pad|>") must not become one
            self.counts["control_token_text_escaped"] += 1
            value = value.replace("<|", "< |")
        if item.text_start != len(item.text):
            item.add("\n", Segment.SPECIAL)
        item.add(f"{label}:", Segment.SPECIAL)
        item.add(f" {value}", segment)

    def render_product(self, product: ProductRecord, view: ProductView = FULL_VIEW) -> RenderedItem:
        item = RenderedItem()
        item.add(IM_START, Segment.SPECIAL)
        if view.images:
            self._add_images(item, product.images, view.crops, f"product {product.product_id}")
        item.text_start = len(item.text)
        if view.title:
            self._add_field(item, "Title", product.title, Segment.TITLE)
        if view.category:
            self._add_field(item, "Category", " > ".join(product.category), Segment.CATEGORY)
        if view.attributes and product.attributes:
            attrs = "; ".join(f"{k}: {v}" for k, v in product.attributes.items())
            self._add_field(item, "Attributes", attrs, Segment.ATTRIBUTE)
        item.add(IM_END, Segment.SPECIAL)
        return item

    def render_query(self, query: QueryInput) -> RenderedItem:
        q = as_query(query)
        item = RenderedItem()
        item.add(IM_START, Segment.SPECIAL)
        if q.image is not None:
            self._add_images(item, [q.image], True, f"query {q.query_id}")
        item.text_start = len(item.text)
        if q.text is not None and q.text.strip():
            if q.kind == QueryKind.PRODUCT:
                self._add_field(item, "Title", q.text, Segment.TITLE)
            else:
                self._add_field(item, "Query", q.text, Segment.QUERY)
        item.add(IM_END, Segment.SPECIAL)
        return item

    # ---- batching ------------------------------------------------------------------------

    def _tokenize(self, items: Sequence[RenderedItem]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        encodings = self.backend.encode_batch([it.text for it in items], add_special_tokens=False)
        all_ids, all_segments = [], []
        limit = self.config.max_text_tokens
        for item, enc in zip(items, encodings):
            ids = np.asarray(enc.ids, dtype=np.int64)
            starts = np.asarray([o[0] for o in enc.offsets], dtype=np.int64)
            span = np.searchsorted(np.asarray(item.span_starts), starts, side="right") - 1
            segments = np.asarray(item.span_segments, dtype=np.int64)[span]
            first_text = int(np.searchsorted(starts, item.text_start))
            n_text = len(ids) - 1 - first_text
            if n_text > limit:
                self.counts["text_tokens_over_max_text_tokens"] += n_text - limit
                keep = np.r_[0:first_text + limit, len(ids) - 1]
                ids, segments = ids[keep], segments[keep]
            all_ids.append(ids)
            all_segments.append(segments)
        return all_ids, all_segments

    def _pixels(self, items: Sequence[RenderedItem]) -> tuple[torch.Tensor, list[int]]:
        arrays = [a for it in items for a in it.images]
        sides = [a.shape[0] for a in arrays]
        if len(set(sides)) == 1:
            return self.packer.pack(arrays), sides
        rows = {side: self.packer.pack([a for a in arrays if a.shape[0] == side])
                .view(-1, self.geometry.grid(side) ** 2, self.packer_dim) for side in set(sides)}
        taken = Counter()
        ordered = []
        for side in sides:
            ordered.append(rows[side][taken[side]])
            taken[side] += 1
        return torch.cat(ordered), sides

    @property
    def packer_dim(self) -> int:
        g = self.geometry
        return 3 * g.temporal_patch_size * g.patch_size ** 2

    def collate(self, items: Sequence[RenderedItem]) -> BatchInputs:
        """Rendered items -> right-padded batch tensors (+ pixels when any item has images)."""
        if not items:
            raise ValueError("cannot build inputs for an empty batch")
        ids, segments = self._tokenize(items)
        length = max(len(x) for x in ids)
        input_ids = np.full((len(items), length), self.pad_id, dtype=np.int64)
        segment_ids = np.zeros((len(items), length), dtype=np.int64)
        for row, (tok, seg) in enumerate(zip(ids, segments)):
            input_ids[row, :len(tok)] = tok
            segment_ids[row, :len(seg)] = seg
        batch: BatchInputs = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy((segment_ids != Segment.PAD).astype(np.int64)),
            "segment_ids": torch.from_numpy(segment_ids),
        }
        grid_hw = torch.zeros(0, 2, dtype=torch.long)
        if any(it.images for it in items):
            pixel_values, sides = self._pixels(items)
            grid = torch.tensor([[1, self.geometry.grid(s), self.geometry.grid(s)] for s in sides], dtype=torch.long)
            batch["pixel_values"] = pixel_values
            batch["image_grid_thw"] = grid
            grid_hw = grid[:, 1:] // self.geometry.merge_size
        batch["position_ids"] = mrope_position_ids(batch["input_ids"], batch["attention_mask"],
                                                   self.image_token_id, grid_hw)
        return batch

    def products(self, products: Sequence[ProductRecord], view: ProductView = FULL_VIEW) -> BatchInputs:
        return self.collate([self.render_product(p, view) for p in products])

    def queries(self, queries: Sequence[QueryInput]) -> BatchInputs:
        return self.collate([self.render_query(q) for q in queries])

    def save_pretrained(self, path: Union[str, Path]) -> None:
        """The tokenizer files; everything else the processor needs lives in the model config."""
        self.tokenizer.save_pretrained(str(path))
