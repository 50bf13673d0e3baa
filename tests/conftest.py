"""Shared fixtures: tiny seeded products and datasets built in code, the real catalogue when present."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from moon.data.records import Box, BoxRole, ProductImage, ProductRecord, QueryKind, QueryRecord  # noqa: E402
from moon.data.shards import DatasetWriter  # noqa: E402

FASHION_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-catalogue"

COLOURS = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (40, 60, 200), "yellow": (220, 200, 40)}
SHAPES = ("square", "circle", "triangle")
CATEGORIES = [["home", "kitchen", "mug"], ["home", "decor", "vase"], ["fashion", "bags", "tote"]]


def draw_object(rng: np.random.Generator, colour: str, shape: str, size: int = 64) -> tuple[Image.Image, Box]:
    """A coloured shape on a noisy background; returns the image and its true box."""
    background = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    img = Image.fromarray(background)
    draw = ImageDraw.Draw(img)
    w = int(rng.integers(size // 3, size // 2))
    x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - w))
    box = (x0, y0, x0 + w, y0 + w)
    fill = COLOURS[colour]
    if shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "circle":
        draw.ellipse(box, fill=fill)
    else:
        draw.polygon([(x0, y0 + w), (x0 + w // 2, y0), (x0 + w, y0 + w)], fill=fill)
    return img, Box(x0=x0, y0=y0, x1=x0 + w, y1=y0 + w, role=BoxRole.TRUTH, source="fixture")


def build_products(n: int, seed: int = 0, images_per_product: tuple[int, int] = (1, 3),
                   size: int = 64) -> list[ProductRecord]:
    rng = np.random.default_rng(seed)
    products = []
    colours = list(COLOURS)
    for i in range(n):
        colour = colours[i % len(colours)]
        shape = SHAPES[(i // len(colours)) % len(SHAPES)]
        category = CATEGORIES[i % len(CATEGORIES)]
        n_img = int(rng.integers(images_per_product[0], images_per_product[1] + 1))
        images = []
        for _ in range(n_img):
            img, box = draw_object(rng, colour, shape, size)
            images.append(ProductImage.from_pil(img, "jpg", boxes=[box]))
        products.append(ProductRecord(
            product_id=f"p{seed}-{i}", group_id=f"g{seed}-{i // 2}", images=images,
            title=f"brand{i % 5} {colour} {shape} {category[-1]}", category=list(category),
            attributes={"colour": colour, "shape": shape}))
    return products


def build_queries(products: list[ProductRecord], seed: int = 0) -> list[QueryRecord]:
    """One text, image and product query per product, positive = that product."""
    rng = np.random.default_rng(seed + 1000)
    queries = []
    for i, p in enumerate(products):
        img, _ = draw_object(rng, p.attributes["colour"], p.attributes["shape"])
        image = ProductImage.from_pil(img, "png")
        common = dict(positive_id=p.product_id, session_id=f"s{i // 3}", timestamp=float(i))
        queries += [
            QueryRecord(query_id=f"{p.product_id}-t", kind=QueryKind.TEXT,
                        text=f"{p.attributes['colour']} {p.category[-1]}", **common),
            QueryRecord(query_id=f"{p.product_id}-i", kind=QueryKind.IMAGE, image=image, **common),
            QueryRecord(query_id=f"{p.product_id}-p", kind=QueryKind.PRODUCT, image=image,
                        text=p.title, **common),
        ]
    return queries


@pytest.fixture
def make_products() -> Callable[..., list[ProductRecord]]:
    """Factory: make_products(n, seed=0) -> seeded tiny products with TRUTH boxes."""
    return build_products


def write_tiny_dataset(out: Path) -> Path:
    """Write train/val/test products (12/6/6) with queries, shards of 5 samples, to `out`."""
    with DatasetWriter(out, name="tiny", category_levels=["industry", "category", "type"],
                       attribute_names=["colour", "shape"], shard_size=5) as writer:
        for split, n, seed in (("train", 12, 1), ("val", 6, 2), ("test", 6, 3)):
            products = build_products(n, seed=seed)
            for p in products:
                writer.add_product(split, p)
            for q in build_queries(products, seed=seed):
                writer.add_query(split, q)
    return out


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A written tiny dataset (see write_tiny_dataset)."""
    return write_tiny_dataset(tmp_path / "tiny")


@pytest.fixture
def fashion_dir() -> Path:
    """The real fashion catalogue beside the project, or a skip that says why."""
    if not (FASHION_DIR / "styles.csv").is_file():
        pytest.skip(f"real catalogue not present at {FASHION_DIR} (../shared/data/fashion-catalogue)")
    return FASHION_DIR
