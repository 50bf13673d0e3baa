"""Cluttered product scenes with true boxes, and one detector trained on them per session.

Training even a tiny YOLO on CPU takes tens of seconds, so the detector is trained once
(session scope) and shared by every test that needs a real one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from moon.crop.detector import Detector, train_detector
from moon.data.records import Box, BoxRole, ProductImage, ProductRecord, QueryKind, QueryRecord
from moon.data.shards import DatasetWriter

SPLITS = {"train": (42, 11), "val": (8, 12), "test": (12, 13)}
"""split -> (products, seed)"""

TRAIN_SETTINGS = dict(epochs=25, imgsz=128, batch=8, seed=0)
"""The shipped defaults (tiny packaged network, AdamW), with more steps for this small set.

~60 train images give 8 steps of 8 per epoch; from scratch the network leaves its loss
plateau after ~150 steps (16 epochs: nothing found; 20: found, for seeds 0 and 1), so
25 epochs (~30 CPU-seconds) keeps a margin.
"""


def draw_scene(rng: np.random.Generator) -> tuple[Image.Image, Box]:
    """A product (ellipse with a label patch) at a random place among clutter lines and frames."""
    size = int(rng.integers(96, 129))
    img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(60, 200, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(8, 20))):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        dx, dy = (int(v) for v in rng.integers(4, size // 4, 2))
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        if rng.random() < 0.5:
            draw.line([x, y, x + dx, y + dy], fill=colour, width=int(rng.integers(1, 4)))
        else:
            draw.rectangle([x, y, x + dx // 2, y + dy // 2], outline=colour)
    w, h = int(rng.uniform(0.3, 0.55) * size), int(rng.uniform(0.3, 0.55) * size)
    x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour, outline=(0, 0, 0), width=2)
    draw.rectangle([x0 + 0.3 * w, y0 + 0.3 * h, x0 + 0.7 * w, y0 + 0.7 * h], fill=tuple(255 - c for c in colour))
    return img, Box(x0=x0, y0=y0, x1=x0 + w, y1=y0 + h, role=BoxRole.TRUTH, source="fixture")


def scene_products(n: int, seed: int) -> list[ProductRecord]:
    rng = np.random.default_rng(seed)
    products = []
    for i in range(n):
        images = []
        for _ in range(int(rng.integers(1, 3))):
            img, box = draw_scene(rng)
            images.append(ProductImage.from_pil(img, "jpg", boxes=[box]))
        leaf = ("mug", "vase", "tote")[i % 3]
        products.append(ProductRecord(product_id=f"s{seed}-{i}", group_id=f"g{seed}-{i}", images=images,
                                      title=f"scene product {i} {leaf}", category=["home", leaf]))
    return products


def scene_queries(products: list[ProductRecord], seed: int) -> list[QueryRecord]:
    """One image query per product (a new scene) and one text query, in sessions of 3."""
    rng = np.random.default_rng(seed + 500)
    queries = []
    for i, p in enumerate(products):
        img, box = draw_scene(rng)
        common = dict(positive_id=p.product_id, session_id=f"sess{seed}-{i // 3}", timestamp=float(i))
        queries.append(QueryRecord(query_id=f"{p.product_id}-i", kind=QueryKind.IMAGE,
                                   image=ProductImage.from_pil(img, "jpg", boxes=[box]), **common))
        queries.append(QueryRecord(query_id=f"{p.product_id}-t", kind=QueryKind.TEXT, text=p.title, **common))
    return queries


def write_scene_dataset(out: Path, shard_size: int = 8) -> Path:
    with DatasetWriter(out, name="scenes", category_levels=["industry", "type"], attribute_names=[],
                       shard_size=shard_size) as writer:
        for split, (n, seed) in SPLITS.items():
            products = scene_products(n, seed)
            for p in products:
                writer.add_product(split, p)
            if split != "train":
                for q in scene_queries(products, seed):
                    writer.add_query(split, q)
    return out


@pytest.fixture(scope="session")
def scene_dataset(tmp_path_factory) -> Path:
    """train/val/test scene products (test and val with image + text queries), shards of 8."""
    return write_scene_dataset(tmp_path_factory.mktemp("scenes") / "data")


@pytest.fixture(scope="session")
def trained_detector(scene_dataset: Path, tmp_path_factory) -> Detector:
    return train_detector(scene_dataset, tmp_path_factory.mktemp("detector") / "det", **TRAIN_SETTINGS)
