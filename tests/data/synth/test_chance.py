"""The chance-level property of MBE-synth, measured with two deliberately one-sided embedders.

- a bag-of-words embedder that sees every non-pixel field (ids, session, title, category,
  attributes): it must solve text queries well above chance but be exactly at chance on
  image queries (which would catch any leak of the answer into query metadata);
- a colour-histogram embedder that sees only pixels (inside the stored core box): well above
  chance on image queries, at chance on text queries;
- an oracle that knows the positive's exact type and attributes: capped well below 1 on
  image queries, because several products share each combination.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from moon.data.records import BoxRole, ProductImage, QueryKind
from moon.data.shards import open_dataset
from moon.data.synth import SynthConfig, generate

CONFIG = SynthConfig(products=160, seed=3, workers=1, val_fraction=0.05, test_fraction=0.6,
                     train_queries_per_product=0, images_per_product=(2, 2))


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class BagOfWords:
    """TF-IDF over every non-pixel field of a record."""

    def __init__(self, docs: list[list[str]]):
        df = Counter(w for d in docs for w in set(d))
        self.vocab = {w: i for i, w in enumerate(df)}
        self.idf = np.log(len(docs) / np.asarray([df[w] for w in self.vocab], np.float64)) + 1.0

    def __call__(self, words: list[str]) -> np.ndarray:
        v = np.zeros(len(self.vocab))
        for w in words:
            if w in self.vocab:
                v[self.vocab[w]] += self.idf[self.vocab[w]]
        n = np.linalg.norm(v)
        return v / n if n else v


def colour_histogram(image: ProductImage) -> np.ndarray:
    box = image.box(BoxRole.TRUTH)
    pixels = np.asarray(image.to_pil().crop(tuple(int(round(c)) for c in box.xyxy))) // 64
    hist = np.bincount((pixels[..., 0] * 16 + pixels[..., 1] * 4 + pixels[..., 2]).ravel(), minlength=64)
    return hist / np.linalg.norm(hist)


def expected_recall_at_1(query_emb: np.ndarray, product_emb: np.ndarray, positives: list[int]) -> float:
    """Recall@1 with ties broken uniformly at random (so a constant embedder scores exactly 1/N)."""
    scores = query_emb @ product_emb.T
    hits = []
    for row, pos in zip(scores, positives):
        target = row[pos]
        if (row > target + 1e-9).any():
            hits.append(0.0)
        else:
            hits.append(1.0 / np.sum(np.abs(row - target) <= 1e-9))
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    out = tmp_path_factory.mktemp("chance") / "ds"
    generate(CONFIG, out, show_progress=False)
    ds = open_dataset(out)
    return ds.load_products("test"), ds.load_queries("test")


def test_one_sided_embedders_are_at_chance_on_the_other_modality(test_split):
    products, queries = test_split
    index = {p.product_id: i for i, p in enumerate(products)}
    chance = 1.0 / len(products)
    docs = [_tokens(" ".join([p.product_id, p.group_id, p.title, *p.category, *p.attributes.values()]))
            for p in products]
    bow = BagOfWords(docs)
    text_products = np.stack([bow(d) for d in docs])
    pixel_products = np.stack([np.mean([colour_histogram(im) for im in p.images], axis=0) for p in products])
    pixel_products /= np.linalg.norm(pixel_products, axis=1, keepdims=True)

    results = {}
    for kind in (QueryKind.TEXT, QueryKind.IMAGE):
        qs = [q for q in queries if q.kind == kind]
        positives = [index[q.positive_id] for q in qs]
        text_q = np.stack([bow(_tokens(" ".join([q.query_id, q.session_id or "", q.text or ""]))) for q in qs])
        pixel_q = np.stack([colour_histogram(q.image) if q.image is not None else np.zeros(64) for q in qs])
        results[kind] = (expected_recall_at_1(text_q, text_products, positives),
                         expected_recall_at_1(pixel_q, pixel_products, positives))

    text_on_text, pixels_on_text = results[QueryKind.TEXT]
    text_on_image, pixels_on_image = results[QueryKind.IMAGE]
    assert text_on_text > 10 * chance
    assert pixels_on_image > 10 * chance
    assert text_on_image == pytest.approx(chance, rel=0.05)
    assert pixels_on_text == pytest.approx(chance, rel=0.05)


def test_attributes_alone_cannot_resolve_image_queries(test_split):
    products, queries = test_split
    combos = Counter((tuple(p.category), tuple(sorted(p.attributes.items()))) for p in products)
    by_id = {p.product_id: p for p in products}
    image_queries = [q for q in queries if q.kind == QueryKind.IMAGE]
    oracle = np.mean([1.0 / combos[(tuple(by_id[q.positive_id].category),
                                    tuple(sorted(by_id[q.positive_id].attributes.items())))]
                      for q in image_queries])
    assert len(products) / len(combos) > 1.5
    assert oracle < 0.75
