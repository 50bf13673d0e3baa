"""The training-free fallback embedder: protocol, unit vectors, and it does separate things."""

from __future__ import annotations

import numpy as np
import torch

from moon.data.records import IMAGE_VIEW
from moon.model.api import Embedder
from moon.negatives.fallback import FallbackEmbedder
from tests.conftest import build_queries


def test_protocol_shapes_norms_and_determinism(make_products):
    products = make_products(8, seed=1)
    emb = FallbackEmbedder()
    assert isinstance(emb, Embedder)
    a = emb.encode_products(products, show_progress=False)
    assert a.shape == (8, emb.embedding_dim) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, FallbackEmbedder().encode_products(products, show_progress=False))
    t = emb.encode_queries(["red mug", "blue vase"], output="torch", show_progress=False)
    assert isinstance(t, torch.Tensor) and t.shape == (2, emb.embedding_dim)
    assert emb.encode_products([], show_progress=False).shape == (0, emb.embedding_dim)


def test_text_and_image_queries_find_their_own_kind_of_match(make_products):
    products = make_products(12, seed=2)
    queries = build_queries(products, seed=2)
    emb = FallbackEmbedder()
    catalogue = emb.encode_products(products, show_progress=False)
    text = [q for q in queries if q.kind.value == "text"]
    image = [q for q in queries if q.kind.value == "image"]
    colour_of = {p.product_id: p.attributes["colour"] for p in products}
    for kind in (text, image):
        best = (emb.encode_queries(kind, show_progress=False) @ catalogue.T).argmax(1)
        hits = np.mean([colour_of[products[b].product_id] == colour_of[q.positive_id] for b, q in zip(best, kind)])
        assert hits > 0.7, (kind[0].kind, hits)


def test_image_view_ignores_text(make_products):
    a, b = make_products(2, seed=3)
    same_pixels = b.model_copy(update={"images": a.images})
    emb = FallbackEmbedder()
    v = emb.encode_products([a, same_pixels], view=IMAGE_VIEW, show_progress=False)
    assert np.allclose(v[0], v[1])
    w = emb.encode_products([a, same_pixels], show_progress=False)
    assert not np.allclose(w[0], w[1])
