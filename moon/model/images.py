"""Pixels for the Qwen2-VL vision tower: decode, crop the core region, resize, patchify.

Every image is resized to a fixed square (and every crop to a fixed square) so that all
images of a batch have the same patch count: the vision tower then runs one batched
attention call instead of a Python loop over images, and tensors are built with a few
vectorised reshapes instead of the HF image processor's per-image path. The patch layout
(merge blocks, temporal repeat, channel-major patch vectors) is the one the Qwen2-VL
family expects, checked against `Qwen2VLImageProcessor` in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from moon.data.records import Box, BoxRole, ProductImage


@dataclass(frozen=True)
class PatchGeometry:
    """The vision tower's patching constants."""

    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def grid(self, side: int) -> int:
        """Patches per side of a square image."""
        return side // self.patch_size

    def tokens(self, side: int) -> int:
        """LLM tokens one square image of this side becomes after the patch merger."""
        return (side // self.factor) ** 2


def square_crop_box(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The box grown to a square around its centre and shifted inside the image.

    A square crop keeps the object's aspect ratio through the square resize; the extra
    margin is context from the same image rather than padding.
    """
    x0, y0, x1, y1 = (max(0.0, box.x0), max(0.0, box.y0), min(float(width), box.x1), min(float(height), box.y1))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"core box {box.xyxy} lies outside its {width}x{height} image")
    side = min(max(x1 - x0, y1 - y0), float(min(width, height)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(cx - side / 2, 0.0), width - side)
    top = min(max(cy - side / 2, 0.0), height - side)
    return round(left), round(top), round(left + side), round(top + side)


def core_box(image: ProductImage) -> Optional[Box]:
    """The CORE box worth cropping, or None (absent, or a whole-image fallback)."""
    box = image.box(BoxRole.CORE)
    if box is None or box.fallback:
        return None
    return box


def resize_square(img: Image.Image, side: int) -> np.ndarray:
    """RGB uint8 array [side, side, 3]; bicubic like the Qwen2-VL image processor."""
    if img.size != (side, side):
        img = img.resize((side, side), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def crop_square(img: Image.Image, box: Box, side: int) -> np.ndarray:
    return resize_square(img.crop(square_crop_box(box, *img.size)), side)


class PixelPacker:
    """uint8 HWC arrays of one size -> normalised, patchified `pixel_values` rows."""

    def __init__(self, geometry: PatchGeometry, mean: Sequence[float], std: Sequence[float]):
        self.geometry = geometry
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32).view(1, 3, 1, 1)
        self.shift = torch.tensor([m / s for m, s in zip(mean, std)], dtype=torch.float32).view(1, 3, 1, 1)

    def pack(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        """[N images of side S] -> [N * (S/p)^2, 3 * t * p * p] in merge-block order."""
        g = self.geometry
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
        x = batch * self.scale - self.shift
        n, c, side, _ = x.shape
        if side % g.factor:
            raise ValueError(f"image side {side} must be a multiple of {g.factor} (patch x merge)")
        blocks, m, p = side // g.factor, g.merge_size, g.patch_size
        # [n, c, bh, m, p, bw, m, p] -> [n, bh, bw, m(h), m(w), c, p(h), p(w)]
        x = x.reshape(n, c, blocks, m, p, blocks, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        # a still image is repeated in time: insert the temporal axis right after channels
        x = x.unsqueeze(6).expand(*x.shape[:6], g.temporal_patch_size, p, p)
        return x.reshape(n * (side // p) ** 2, c * g.temporal_patch_size * p * p)
