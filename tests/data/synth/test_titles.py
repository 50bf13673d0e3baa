from __future__ import annotations

import numpy as np

from moon.data.synth.taxonomy import ATTRIBUTE_SYNONYMS, LEAF_BY_NAME, LEAF_TYPES
from moon.data.synth.titles import make_brands, make_title, product_query_text, text_query

ATTRS = {"colour": "red", "pattern": "striped", "material": "knit", "fit": "slim"}


def test_taxonomy_sizes():
    assert len({leaf.industry for leaf in LEAF_TYPES}) == 4
    assert len({leaf.category for leaf in LEAF_TYPES}) == 12
    assert len(LEAF_TYPES) == 30
    assert len(ATTRIBUTE_SYNONYMS) >= 4


def test_brands_are_unique_tokens():
    brands = make_brands(np.random.default_rng(0), 500)
    assert len({b.lower() for b in brands}) == 500
    assert all(b.isalpha() and b[0].isupper() for b in brands)


def test_titles_vary_and_name_brand_and_type():
    rng = np.random.default_rng(0)
    titles = [make_title(rng, "Zorvex", "t-shirt", ATTRS) for _ in range(30)]
    assert len(set(titles)) > 20
    synonyms = LEAF_BY_NAME["t-shirt"].synonyms
    for t in titles:
        assert "Zorvex" in t.split()
        assert any(s in t for s in synonyms)


def test_text_query_has_brand_and_product_query_does_not():
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert "zorvex" in text_query(rng, "Zorvex", "mug", ATTRS).split()
        assert "zorvex" not in product_query_text(rng, "mug", ATTRS).lower()
