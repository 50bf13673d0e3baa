import json

import numpy as np
import pytest

from moon.data.shards import open_dataset
from moon.model.encode_dataset import encode_split, load_encoded, output_paths


def test_encode_split_products_and_queries(build_model, tiny_dataset, tmp_path):
    model = build_model()
    result = encode_split(model, tiny_dataset, "test", tmp_path / "emb.npy", batch_size=4, show_progress=False)
    products = open_dataset(tiny_dataset).load_products("test")
    emb, ids = load_encoded(tmp_path / "emb.npy")
    assert ids == [p.product_id for p in products] and result.count == len(products) and result.skipped == 0
    assert emb.dtype == np.float32 and emb.shape == (len(products), model.embedding_dim)
    assert np.abs(emb - model.encode_products(products, show_progress=False)).max() < 1e-5
    meta = json.loads((tmp_path / "emb.ids.json").read_text())
    assert meta["model_id"] == model.model_id and meta["split"] == "test"

    out_dir = tmp_path / "queries"
    result = encode_split(model, tiny_dataset, "test", out_dir, table="queries", show_progress=False)
    assert (out_dir / "embeddings.npy").is_file() and (out_dir / "ids.json").is_file()
    q_emb, q_ids = load_encoded(out_dir)
    assert q_emb.shape[0] == len(q_ids) == result.count == open_dataset(tiny_dataset).count("test", "queries")


def test_missing_split_is_a_clear_error(build_model, tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="no 'nope/products'"):
        encode_split(build_model(), tiny_dataset, "nope", tmp_path / "e.npy", show_progress=False)
    assert output_paths(tmp_path / "a.npy") == (tmp_path / "a.npy", tmp_path / "a.ids.json")
