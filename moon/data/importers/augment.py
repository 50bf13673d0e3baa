"""The seeded augmentation that turns a catalogue photo into an image query.

Real image queries are other photos of the product; a catalogue with one photo per
product (the fashion catalogue) has none, so the query is a random resized crop
(area 0.5-1 of the image, aspect 3/4-4/3) plus a horizontal flip with probability 1/2,
resized back to the original size. The generator is seeded from (seed, product id)
alone, so a product's query is the same whatever order or subset is processed. This is
the one definition used for training queries at import and by the fashion benchmark;
training with `data.image_queries: fresh` draws the same augmentation anew at every step
(moon.train.sampler) from a generator seeded by the run instead, and `data.product_photos:
augmented` shows training products through it, their core boxes moved into the view.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image

from moon.data.records import Box

SCALE = (0.5, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def product_rng(seed: int, product_id: str) -> np.random.Generator:
    """A random stream that depends only on (seed, product id)."""
    digest = hashlib.sha256(f"{seed}:{product_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale: tuple[float, float] = SCALE) -> tuple[int, int, int, int]:
    """A crop box covering `scale` of the area with aspect in RATIO; the centre square-ish fallback."""
    area = width * height
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x0 = int(rng.integers(0, width - w + 1))
            y0 = int(rng.integers(0, height - h + 1))
            return x0, y0, x0 + w, y0 + h
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def augmented_query_image(img: Image.Image, seed: int, product_id: str) -> Image.Image:
    """The image query of a product: crop, resize back to the original size, maybe flip."""
    return augment_image(img, product_rng(seed, product_id))


def augment_image(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One draw of the query augmentation from `rng`."""
    return draw_view(img.width, img.height, rng).apply(img)


@dataclass(frozen=True)
class View:
    """One draw of the augmentation: the crop box in the source image, then an optional flip.

    Kept apart from the pixels so that boxes known on the source image (the core region a
    cropper found) can follow the photo into its augmented view."""

    crop: tuple[int, int, int, int]
    flip: bool
    size: tuple[int, int]

    def apply(self, img: Image.Image) -> Image.Image:
        """Crop, resize back to the source size, maybe flip."""
        out = img.convert("RGB").crop(self.crop).resize(self.size, Image.Resampling.BILINEAR)
        return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if self.flip else out

    def move_box(self, box: Box) -> Optional[Box]:
        """`box` in the view's pixel coordinates, clipped to it; None when less than a pixel is left."""
        x0, y0, x1, y1 = self.crop
        sx, sy = self.size[0] / (x1 - x0), self.size[1] / (y1 - y0)
        nx0 = min(max((box.x0 - x0) * sx, 0.0), self.size[0])
        nx1 = min(max((box.x1 - x0) * sx, 0.0), self.size[0])
        ny0 = min(max((box.y0 - y0) * sy, 0.0), self.size[1])
        ny1 = min(max((box.y1 - y0) * sy, 0.0), self.size[1])
        if nx1 - nx0 < 1 or ny1 - ny0 < 1:
            return None
        if self.flip:
            nx0, nx1 = self.size[0] - nx1, self.size[0] - nx0
        return box.model_copy(update={"x0": nx0, "y0": ny0, "x1": nx1, "y1": ny1})


def draw_view(width: int, height: int, rng: np.random.Generator, scale: tuple[float, float] = SCALE) -> View:
    """Draw the crop box (covering `scale` of the area), then the flip, from `rng` (the order every
    stored query was made with)."""
    crop = random_resized_crop_box(width, height, rng, scale)
    return View(crop=crop, flip=bool(rng.random() < 0.5), size=(width, height))
