import numpy as np
from PIL import Image

from moon.data.records import FULL_VIEW, ProductImage, QueryKind, QueryRecord

from benchmarks.mbe.examples import example_indices, retrieval_examples
from benchmarks.mbe.metrics import Relevance
from benchmarks.mbe.runner import run_fashion
from benchmarks.mbe.tasks import RetrievalTask
from tests.conftest import build_products


def test_indices_are_even_unique_and_bounded():
    assert example_indices(10, 3).tolist() == [0, 4, 9]
    assert example_indices(2, 8).tolist() == [0, 1] and example_indices(0, 8).size == 0


def test_top5_ids_scores_and_hits():
    products = build_products(6, seed=0)
    corpus = np.eye(6, dtype=np.float32)
    queries = np.array([[0.1, 0.9, 0, 0, 0.5, 0], [0, 0, 0, 0, 0, 1]], dtype=np.float32)
    image = ProductImage.from_pil(Image.new("RGB", (200, 150), (255, 0, 0)), "jpg")
    task = RetrievalTask("x", ["blue shirt", QueryRecord(query_id="q", kind=QueryKind.IMAGE, image=image,
                                                         positive_id=products[4].product_id)],
                         FULL_VIEW, Relevance.from_positives(np.array([4, 5]), 6), metrics=("R@1",))
    first, second = retrieval_examples(task, queries, corpus, products, n_examples=5, k=3)
    assert [t["id"] for t in first["top"]] == [products[i].product_id for i in (1, 4, 0)]
    assert [t["hit"] for t in first["top"]] == [False, True, False] and first["top"][0]["score"] == 0.9
    assert first["query"] == {"text": "blue shirt", "image_jpeg_b64": None} and first["relevant"] == [products[4].product_id]
    assert second["top"][0]["hit"] and second["query"]["image_jpeg_b64"]


def test_fashion_result_keeps_examples_only_when_asked(tiny_text_embedder, mini_catalogue):
    result = run_fashion(tiny_text_embedder, mini_catalogue, split="all", show_progress=False, examples=3)
    assert list(result.examples) == ["t2p"] and len(result.examples["t2p"]) == 3
    for ex in result.examples["t2p"]:
        assert len(ex["top"]) == 5 and sum(t["hit"] for t in ex["top"]) <= ex["n_relevant"]
    assert run_fashion(tiny_text_embedder, mini_catalogue, split="all", show_progress=False).examples is None
