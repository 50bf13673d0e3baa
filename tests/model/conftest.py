"""Model-test fixtures: tiny products with CORE boxes and a small, fast MOON config."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from moon.data.records import Box, BoxRole, ProductImage, ProductRecord
from moon.model.encoder import MoonModel
from moon.model.tokenizer import corpus_from_products

SMALL = {"backbone.text.num_layers": 2, "backbone.vision.depth": 2, "inputs.image_size": 56,
         "inputs.crop_size": 28, "backbone.init": "standard"}
"""moon-tiny with fewer layers, 56 px images (4 LLM tokens) and 28 px crops (1 token): the same
code paths (including images of two sizes in one batch), faster tests. Standard random init, so
every layer changes the output and numerical comparisons test all of it (the default
zero-residual init would make the untrained layers pass their input through)."""


def with_core_boxes(product: ProductRecord, every: int = 2) -> ProductRecord:
    """Copy of `product` where every `every`-th image gets its TRUTH box as a CORE box."""
    images = []
    for i, image in enumerate(product.images):
        boxes = list(image.boxes)
        truth = image.box(BoxRole.TRUTH)
        if truth is not None and i % every == 0:
            boxes.append(Box(x0=truth.x0, y0=truth.y0, x1=truth.x1, y1=truth.y1, role=BoxRole.CORE, source="test"))
        images.append(ProductImage(data=image.data, format=image.format, boxes=boxes))
    return product.model_copy(update={"images": images})


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared machine OpenMP threads
    that wait for each other make tests ~10x slower; restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def products(make_products) -> list[ProductRecord]:
    """8 products with 1-3 images; images 0 and 2 of each have a CORE box."""
    return [with_core_boxes(p) for p in make_products(8, seed=3)]


@pytest.fixture
def build_model(products) -> Callable[..., MoonModel]:
    """Factory: build_model(**overrides) -> small MoonModel, eval mode, seed 0."""
    corpus = list(corpus_from_products(products))

    def build(family: str = "qwen2_vl", **overrides) -> MoonModel:
        merged = {**SMALL, "backbone.family": family, **overrides}
        return MoonModel.from_config("moon-tiny", tokenizer_corpus=corpus, overrides=merged, seed=0).eval()

    return build
