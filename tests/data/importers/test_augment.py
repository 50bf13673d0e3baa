from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from moon.data.importers.augment import SCALE, View, augment_image, draw_view
from moon.data.records import Box


def _photo() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


def test_a_view_is_the_augmentation_drawn_from_the_same_stream():
    photo = _photo()
    for seed in range(5):
        view = draw_view(photo.width, photo.height, np.random.default_rng(seed))
        x0, y0, x1, y1 = view.crop
        assert SCALE[0] * 64 * 48 * 0.95 <= (x1 - x0) * (y1 - y0) <= 64 * 48
        assert view.apply(photo).tobytes() == augment_image(photo, np.random.default_rng(seed)).tobytes()
        assert view.apply(photo).size == photo.size


def test_move_box_scales_into_the_view_and_mirrors_on_flip():
    box = Box(x0=20, y0=10, x1=30, y1=20, source="test")
    kept = View(crop=(10, 0, 50, 40), flip=False, size=(80, 80)).move_box(box)
    assert kept.xyxy == pytest.approx((20, 20, 40, 40)) and kept.source == "test"
    flipped = View(crop=(10, 0, 50, 40), flip=True, size=(80, 80)).move_box(box)
    assert flipped.xyxy == pytest.approx((40, 20, 60, 40))


def test_move_box_clips_to_the_view_and_drops_boxes_it_cuts_away():
    view = View(crop=(10, 10, 30, 30), flip=False, size=(20, 20))
    clipped = view.move_box(Box(x0=0, y0=15, x1=20, y1=25, source="test"))
    assert clipped.xyxy == pytest.approx((0, 5, 10, 15))
    assert view.move_box(Box(x0=35, y0=0, x1=45, y1=9, source="test")) is None
