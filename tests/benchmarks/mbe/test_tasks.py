import numpy as np
import pytest

from moon.data.records import IMAGE_TITLE_VIEW

from benchmarks.mbe.metrics import Relevance
from benchmarks.mbe.tasks import (RetrievalTask, ZeroShotTask, knn_predict, linear_probe_predict,
                                  score_retrieval, score_retrieval_ann, score_zero_shot, zero_shot_tasks)
from tests.conftest import build_products


def blobs(n_per_class: int, n_classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)) * 3
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[labels] + rng.standard_normal((len(labels), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def test_knn_and_linear_probe_separate_clusters():
    train, train_y = blobs(30, 4, 16, seed=0)
    test, test_y = blobs(10, 4, 16, seed=0)
    assert (knn_predict(train, train_y, test, 4, k=5) == test_y).mean() == 1.0
    assert (linear_probe_predict(train, train_y, test, 4) == test_y).mean() >= 0.95


def test_exact_and_ann_retrieval_agree_on_a_small_corpus():
    corpus, groups = blobs(150, 8, 24, seed=1)
    rng = np.random.default_rng(2)
    positives = rng.choice(len(corpus), 200, replace=False)
    queries = corpus[positives] + 0.1 * rng.standard_normal((200, 24)).astype(np.float32)
    task = RetrievalTask("q2p", [], IMAGE_TITLE_VIEW, Relevance.from_positives(positives, len(corpus)))
    exact = score_retrieval(task, queries, corpus).metrics
    ann = score_retrieval_ann(task, queries, corpus, kind="hnsw", target_recall=0.95)
    assert ann.name == "q2p_ann" and ann.details["index_kind"] == "hnsw"
    assert exact["R@10"] > 0.5
    for metric in ("R@1", "R@10", "MRR@10"):
        assert abs(exact[metric] - ann.metrics[metric]) <= 0.05, metric


def test_zero_shot_tasks_per_level_and_attribute():
    products = build_products(6, seed=0, images_per_product=(1, 1), size=16)
    products[2].attributes.pop("shape")
    tasks = {t.name: t for t in zero_shot_tasks(products, ["industry", "category", "type"], ["colour", "shape"])}
    assert list(tasks) == ["cls.industry", "cls.category", "cls.type", "attr.colour", "attr.shape"]
    assert tasks["cls.type"].labels == ["mug", "tote", "vase"]
    assert [tasks["cls.type"].labels[i] for i in tasks["cls.type"].truth] == [p.category[2] for p in products]
    assert tasks["attr.shape"].truth[2] == -1 and (np.delete(tasks["attr.shape"].truth, 2) >= 0).all()


def test_zero_shot_without_any_value_is_not_applicable():
    task = ZeroShotTask("attr.size", IMAGE_TITLE_VIEW, [], np.array([-1, -1]))
    score = score_zero_shot(task, np.ones((2, 4), np.float32), np.zeros((0, 4), np.float32))
    assert score.metrics is None and score.counts == {"excluded_no_value": 2} and "attr.size" in score.na_reason


def test_zero_shot_names_the_label_that_took_most_wrong_predictions():
    labels = np.eye(3, dtype=np.float32)
    items = labels[[0, 2, 2, 2, 1]]  # products of classes 0, 0, 1, 1, 1: three predicted "c", one right
    task = ZeroShotTask("attr.colour", IMAGE_TITLE_VIEW, ["a", "b", "c"], np.array([0, 0, 1, 1, 1]))
    score = score_zero_shot(task, items, labels)
    assert score.details == {"most_wrong_label": "c", "most_wrong_count": 3, "most_wrong_share": 1.0}
    assert score.metrics["acc"] == pytest.approx(2 / 5)
    right = score_zero_shot(task, labels[[0, 0, 1, 1, 1]], labels)
    assert right.details == {} and right.metrics["acc"] == 1.0
