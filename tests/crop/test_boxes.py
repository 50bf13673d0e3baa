"""Crop policy edge cases: no box, many boxes, tiny box, padding at the border."""

from __future__ import annotations

import pytest

from moon.crop.boxes import CropPolicy, Detection, box_iou, centre_box, choose_core_box
from moon.data.records import Box, BoxRole

SRC = "yolo:test"


def test_no_detection_falls_back_to_whole_image():
    box = choose_core_box([], 120, 80, CropPolicy(), SRC)
    assert (box.xyxy, box.fallback, box.confidence, box.role) == ((0, 0, 120, 80), True, 0.0, BoxRole.CORE)


def test_only_unconfident_detections_fall_back_and_keep_best_confidence():
    dets = [Detection(10, 10, 50, 50, 0.2), Detection(20, 20, 60, 60, 0.1)]
    box = choose_core_box(dets, 100, 100, CropPolicy(min_confidence=0.25), SRC)
    assert box.fallback and box.xyxy == (0, 0, 100, 100) and box.confidence == pytest.approx(0.2)


def test_many_boxes_prefers_large_central_over_slightly_more_confident_corner_clutter():
    corner = Detection(0, 0, 12, 12, 0.60)
    central = Detection(30, 30, 70, 70, 0.55)
    box = choose_core_box([corner, central], 100, 100, CropPolicy(pad=0.0), SRC)
    assert box.xyxy == (30, 30, 70, 70) and not box.fallback and box.confidence == pytest.approx(0.55)


def test_confidence_dominates_when_weights_are_zero():
    corner = Detection(0, 0, 12, 12, 0.60)
    central = Detection(30, 30, 70, 70, 0.55)
    policy = CropPolicy(pad=0.0, area_weight=0.0, centrality_weight=0.0, min_size=0.0, min_pixels=1)
    assert choose_core_box([central, corner], 100, 100, policy, SRC).xyxy == (0, 0, 12, 12)


def test_tiny_box_is_grown_around_its_centre_to_min_size():
    box = choose_core_box([Detection(48, 58, 52, 62, 0.9)], 200, 100,
                          CropPolicy(pad=0.0, min_size=0.2, min_pixels=4), SRC)
    assert (box.x1 - box.x0, box.y1 - box.y0) == pytest.approx((40, 20))
    assert ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2) == pytest.approx((50, 60))


def test_tiny_box_at_the_border_is_shifted_inside_not_shrunk():
    box = choose_core_box([Detection(0, 96, 3, 100, 0.9)], 100, 100,
                          CropPolicy(pad=0.0, min_size=0.3, min_pixels=4), SRC)
    assert box.xyxy == pytest.approx((0, 70, 30, 100))


def test_min_pixels_larger_than_image_gives_the_whole_side():
    box = choose_core_box([Detection(2, 2, 4, 4, 0.9)], 10, 10, CropPolicy(min_pixels=64), SRC)
    assert box.xyxy == (0, 0, 10, 10) and not box.fallback


def test_padding_is_clamped_at_the_image_border():
    box = choose_core_box([Detection(0, 10, 40, 100, 0.9)], 100, 100, CropPolicy(pad=0.25), SRC)
    assert box.xyxy == pytest.approx((0, 0, 50, 100))
    inner = choose_core_box([Detection(40, 40, 60, 60, 0.9)], 100, 100, CropPolicy(pad=0.25, min_size=0), SRC)
    assert inner.xyxy == pytest.approx((35, 35, 65, 65))


def test_degenerate_detections_are_ignored():
    box = choose_core_box([Detection(10, 10, 10, 30, 0.99)], 50, 50, CropPolicy(), SRC)
    assert box.fallback


def test_invalid_policy_and_image_size_are_named():
    with pytest.raises(ValueError, match="min_confidence"):
        CropPolicy(min_confidence=1.5)
    with pytest.raises(ValueError, match="image size"):
        choose_core_box([], 0, 10, CropPolicy(), SRC)


def test_iou_and_centre_baseline():
    a = Box(x0=0, y0=0, x1=10, y1=10, source="t")
    assert box_iou(a, a) == 1.0
    assert box_iou(a, Box(x0=5, y0=0, x1=15, y1=10, source="t")) == pytest.approx(50 / 150)
    assert box_iou(a, Box(x0=20, y0=20, x1=30, y1=30, source="t")) == 0.0
    assert centre_box(100, 50, 0.5).xyxy == (25, 12.5, 75, 37.5)
