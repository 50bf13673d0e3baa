import json

import numpy as np

from moon.data.importers.fashion import import_fashion
from moon.data.shards import DatasetWriter
from moon.model.bootstrap import init_model

from benchmarks.mbe.fashion import fashion_tasks, load_catalogue
from benchmarks.mbe.results import read_result, write_result
from benchmarks.mbe.runner import EmbeddingCache, run_fashion, run_mbe, run_tasks
from tests.conftest import build_products, build_queries

FASHION_KEYS = {
    "t2i": {"R@1", "R@10", "MRR@10"}, "i2p": {"R@1", "R@10"}, "t2p": {"nDCG@10", "hit@10"},
    "cls": {"articleType": {"acc", "macro_f1"}, "subCategory": {"acc", "macro_f1"},
            "masterCategory": {"acc", "macro_f1"}},
    "attr": {"baseColour": {"acc"}, "gender": {"acc"}, "usage": {"acc"}, "season": {"acc"}},
}
TOP_LEVEL = {"schema", "benchmark", "model_id", "model_path", "config_hash", "data_id", "data_path", "split",
             "tasks", "not_applicable", "counts", "details", "breakdown", "data_report", "examples", "software",
             "wall_time_s", "created"}


def check_metric_tree(tree, spec):
    assert set(tree) == set(spec)
    for key, sub in spec.items():
        if isinstance(sub, dict):
            check_metric_tree(tree[key], sub)
        elif tree[key] is not None:
            assert set(tree[key]) == sub
            assert all(0.0 <= v <= 1.0 for v in tree[key].values())


def test_text_only_model_reports_image_tasks_as_na(tiny_text_embedder, mini_catalogue, tmp_path):
    result = run_fashion(tiny_text_embedder, mini_catalogue, split="all", show_progress=False)
    write_result(result, tmp_path / "RESULTS.json")
    raw = json.loads((tmp_path / "RESULTS.json").read_text())
    assert set(raw) == TOP_LEVEL and raw["schema"] == "moon-bench-result/1"
    check_metric_tree(raw["tasks"], FASHION_KEYS)
    assert raw["tasks"]["t2i"] is None and raw["tasks"]["i2p"] is None
    assert set(raw["not_applicable"]) == {"t2i", "i2p"} and "text-only" in raw["not_applicable"]["i2p"]
    assert raw["tasks"]["t2p"]["hit@10"] > 0
    assert {"python", "torch", "transformers", "faiss", "moon"} <= set(raw["software"])
    assert raw["config_hash"] and raw["model_id"] == "tiny-bert" and raw["wall_time_s"] > 0
    assert raw["data_report"]["bad_rows"] == 1 and raw["counts"]["attr.usage"]["excluded_no_value"] == 1
    assert read_result(tmp_path / "RESULTS.json") == result


def test_image_model_scores_every_fashion_task(mini_catalogue, tmp_path):
    """An untrained tiny MOON model (images + text) through the whole fashion protocol."""
    import_fashion(mini_catalogue, tmp_path / "imported", show_progress=False)
    init_model("moon-tiny", tmp_path / "moon", corpus=tmp_path / "imported", corpus_splits=("train", "test"),
               overrides={"backbone.text.num_layers": 1, "backbone.vision.depth": 1, "inputs.image_size": 56})
    result = run_fashion(tmp_path / "moon", mini_catalogue, split="all", breakdown=True, show_progress=False)
    tasks = result.model_dump(by_alias=True)["tasks"]
    check_metric_tree(tasks, FASHION_KEYS)
    assert tasks["t2i"] is not None and tasks["i2p"] is not None and not result.not_applicable
    assert set(result.breakdown["t2i"]) == {"Accessories", "Apparel", "Footwear"}
    assert sum(v["n"] for v in result.breakdown["t2i"].values()) == 36


def test_embeddings_are_computed_once_per_view(tiny_text_embedder, mini_catalogue):
    catalogue = load_catalogue(mini_catalogue, "all")
    cache = EmbeddingCache(tiny_text_embedder, show_progress=False)
    run_tasks(tiny_text_embedder, catalogue.products, fashion_tasks(catalogue), cache=cache)
    product_keys = [key for key in cache._store if key[0] == "products"]
    assert len(product_keys) == 2  # full (i2p, t2p) and image+title (cls, attr); image-only is n/a


def write_mbe_dataset(out, n_test: int, n_train: int):
    with DatasetWriter(out, name="mbe-mini", category_levels=["industry", "category", "type"],
                       attribute_names=["colour", "shape"], shard_size=32) as writer:
        for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
            products = build_products(n, seed=seed, images_per_product=(1, 1), size=16)
            for p in products:
                writer.add_product(split, p)
            for q in build_queries(products, seed=seed):
                writer.add_query(split, q)
    return out


def test_mbe_runner_exact_ann_and_probes(tiny_text_embedder, tmp_path):
    data = write_mbe_dataset(tmp_path / "mbe", n_test=40, n_train=24)
    result = run_mbe(tiny_text_embedder, data, split="test", ann_kind="hnsw", knn=True, linear_probe=True,
                     breakdown=True, show_progress=False)
    tasks = result.tasks
    exact, ann = tasks["text2product"], tasks["text2product_ann"]
    assert set(exact) == {"R@1", "R@5", "R@10", "MRR@10", "nDCG@10"} == set(ann)
    assert abs(exact["R@10"] - ann["R@10"]) <= 0.2
    assert tasks["image2product"] is None and tasks["image2product_ann"] is None
    assert tasks["product2product"] is not None
    assert set(tasks["cls"]) == {"industry", "category", "type"} and set(tasks["attr"]) == {"colour", "shape"}
    assert set(tasks["knn"]) == set(tasks["linear"]) == {"industry", "category", "type"}
    assert result.counts["text2product"]["queries"] == 40 and result.counts["knn.type"]["train"] == 24
    assert result.details["text2product_ann"]["index_kind"] == "hnsw"
    assert set(result.breakdown) == {"text2product", "product2product"}
    assert result.data_id.startswith("mbe-mini@")
    assert np.isfinite(result.tasks["linear"]["type"]["acc"])


def test_ann_variant_is_na_on_a_corpus_too_small_to_tune(tiny_text_embedder, tiny_dataset):
    result = run_mbe(tiny_text_embedder, tiny_dataset, split="test", show_progress=False)
    assert result.tasks["text2product"] is not None and result.tasks["text2product_ann"] is None
    assert "too few" in result.not_applicable["text2product_ann"]
