from __future__ import annotations

import numpy as np

from moon.data.records import BoxRole
from moon.data.synth.draw import Emblem, ObjectLook
from moon.data.synth.scene import CATALOGUE, USER_PHOTO, render_view

LOOK = ObjectLook(leaf="backpack", colour=(45, 95, 215), pattern="striped", pattern_colour=(245, 245, 240),
                  pattern_period=0.15, pattern_phase=0.2, material="denim", aspect=1.0,
                  emblem=Emblem("circle", (230, 180, 20)))


def test_views_are_seeded_and_boxed():
    a = render_view(LOOK, 128, CATALOGUE, np.random.default_rng(5))
    b = render_view(LOOK, 128, CATALOGUE, np.random.default_rng(5))
    c = render_view(LOOK, 128, CATALOGUE, np.random.default_rng(6))
    assert a.data == b.data and a.data != c.data
    assert a.to_pil().size == (128, 128)


def test_truth_box_is_inside_and_tight_around_the_product():
    for seed in range(12):
        for style in (CATALOGUE, USER_PHOTO):
            image = render_view(LOOK, 128, style, np.random.default_rng(seed))
            box = image.box(BoxRole.TRUTH)
            assert box is not None and box.source == "synth"
            assert 0 <= box.x0 < box.x1 <= 128 and 0 <= box.y0 < box.y1 <= 128
            assert 0.04 < box.area / 128 ** 2 < 0.8  # the product is a part of a cluttered frame


def test_background_is_cluttered():
    image = np.asarray(render_view(LOOK, 128, CATALOGUE, np.random.default_rng(1)).to_pil()).astype(float)
    assert image.std(axis=(0, 1)).mean() > 20
