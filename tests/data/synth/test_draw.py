from __future__ import annotations

import itertools

import numpy as np
import pytest

from moon.data.synth.draw import EMBLEM_SHAPES, Emblem, ObjectLook, pattern_mask, render_object, silhouette_masks
from moon.data.synth.taxonomy import FIT_ASPECT, LEAF_TYPES, MATERIALS, PATTERNS


def _look(leaf: str = "mug", **kw) -> ObjectLook:
    base = dict(leaf=leaf, colour=(200, 35, 40), pattern="solid", pattern_colour=(240, 240, 240),
                pattern_period=0.15, pattern_phase=0.0, material="matte", aspect=1.0,
                emblem=Emblem(shape="star", colour=(250, 250, 250)))
    return ObjectLook(**{**base, **kw})


def test_every_leaf_type_has_a_distinct_silhouette():
    masks = {leaf.name: silhouette_masks(leaf.name, 48, 48)[0] > 0.5 for leaf in LEAF_TYPES}
    for name, mask in masks.items():
        assert 0.1 < mask.mean() < 0.95, f"{name} silhouette covers {mask.mean():.2f} of its box"
    for (a, ma), (b, mb) in itertools.combinations(masks.items(), 2):
        iou = (ma & mb).sum() / (ma | mb).sum()
        assert iou < 0.9, f"{a} and {b} silhouettes are nearly identical (IoU {iou:.2f})"


def test_patterns_are_distinct_and_solid_is_empty():
    masks = {p: pattern_mask(p, 40, 40, 0.15, 0.3) for p in PATTERNS}
    assert masks["solid"].max() == 0.0
    for a, b in itertools.combinations(PATTERNS, 2):
        assert np.abs(masks[a] - masks[b]).mean() > 0.05, (a, b)


@pytest.mark.parametrize("material", MATERIALS)
def test_materials_render_different_textures(material):
    rng = np.random.default_rng(0)
    plain = np.asarray(render_object(_look(material="matte", emblem=None), 60, rng))[..., :3].astype(float)
    img = np.asarray(render_object(_look(material=material, emblem=None), 60, rng))
    assert img.shape[2] == 4 and img[..., 3].max() == 255
    if material != "matte":
        assert np.abs(img[..., :3].astype(float) - plain).mean() > 3.0


def test_fit_changes_the_aspect_ratio():
    rng = np.random.default_rng(0)
    ratios = {}
    for fit, aspect in FIT_ASPECT.items():
        img = render_object(_look(aspect=aspect), 80, rng)
        ratios[fit] = img.width / img.height
    assert ratios["slim"] < ratios["regular"] < ratios["wide"]


def test_emblem_is_visible():
    rng = np.random.default_rng(0)
    with_emblem = np.asarray(render_object(_look(emblem=Emblem("square", (20, 20, 20))), 80, rng)).astype(float)
    without = np.asarray(render_object(_look(emblem=None), 80, np.random.default_rng(0))).astype(float)
    assert np.abs(with_emblem - without).sum() > 0
    assert len(set(EMBLEM_SHAPES)) == len(EMBLEM_SHAPES)
