"""A small train split with groups, categories, sessions and timestamps for mining tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from moon.data.shards import DatasetWriter
from tests.conftest import build_products, build_queries


@pytest.fixture(scope="module")
def mining_dataset(tmp_path_factory) -> Path:
    """30 train products (groups of 2, 3 categories), 90 queries in sessions of 9, shards of 8."""
    out = tmp_path_factory.mktemp("mining") / "data"
    products = build_products(30, seed=7, images_per_product=(1, 2))
    with DatasetWriter(out, name="mining", category_levels=["industry", "category", "type"],
                       attribute_names=["colour", "shape"], shard_size=8) as writer:
        for p in products:
            writer.add_product("train", p)
        for q in build_queries(products, seed=7):
            writer.add_query("train", q)
    return out
