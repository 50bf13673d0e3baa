import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen2VLImageProcessor

from moon.data.records import Box, BoxRole, ProductImage
from moon.model.config import CLIP_MEAN, CLIP_STD
from moon.model.images import PatchGeometry, PixelPacker, core_box, crop_square, square_crop_box


def test_pack_matches_hf_image_processor():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in range(3)]
    hf = Qwen2VLImageProcessor()(images=[Image.fromarray(a) for a in arrays], return_tensors="pt")
    mine = PixelPacker(PatchGeometry(), CLIP_MEAN, CLIP_STD).pack(arrays)
    assert mine.shape == hf["pixel_values"].shape == (3 * 64, 1176)
    assert torch.allclose(mine, hf["pixel_values"], atol=1e-6, rtol=0)
    assert hf["image_grid_thw"].tolist() == [[1, 8, 8]] * 3


def test_pack_rejects_bad_side():
    with pytest.raises(ValueError, match="multiple of 28"):
        PixelPacker(PatchGeometry(), CLIP_MEAN, CLIP_STD).pack([np.zeros((100, 100, 3), np.uint8)])


@pytest.mark.parametrize("box", [(10, 20, 30, 60), (0, 0, 64, 10), (50, 30, 64, 48), (-5, -5, 200, 30)])
def test_square_crop_inside_image(box):
    b = Box(x0=box[0], y0=box[1], x1=box[2], y1=box[3], source="t")
    x0, y0, x1, y1 = square_crop_box(b, 64, 48)
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 48
    assert abs((x1 - x0) - (y1 - y0)) <= 1
    cx, cy = (max(b.x0, 0) + min(b.x1, 64)) / 2, (max(b.y0, 0) + min(b.y1, 48)) / 2
    assert x0 <= cx <= x1 and y0 <= cy <= y1


def test_box_outside_image_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        square_crop_box(Box(x0=50, y0=50, x1=60, y1=60, source="t"), 64, 48)


def test_core_box_skips_fallback_and_crops():
    img = Image.new("RGB", (64, 64), (255, 0, 0))
    core = Box(x0=8, y0=8, x1=40, y1=40, role=BoxRole.CORE, source="t")
    fallback = Box(x0=0, y0=0, x1=64, y1=64, role=BoxRole.CORE, source="t", fallback=True)
    truth = Box(x0=0, y0=0, x1=10, y1=10, role=BoxRole.TRUTH, source="t")
    assert core_box(ProductImage.from_pil(img, boxes=[core, truth])) == core
    assert core_box(ProductImage.from_pil(img, boxes=[fallback])) is None
    assert core_box(ProductImage.from_pil(img, boxes=[truth])) is None
    assert crop_square(img, core, 56).shape == (56, 56, 3)
