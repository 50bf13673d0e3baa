import math

import numpy as np
import pytest

from benchmarks.mbe.metrics import (Relevance, accuracy, argmax_cosine, hit_at_k, macro_f1, mrr_at_k,
                                    ndcg_at_k, ranked_per_query, recall_at_k, retrieval_per_query)


def test_hand_built_single_relevant():
    # query 0: positive at rank 1; query 1: rank 3; query 2: not retrieved in the top 4
    hits = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    n_rel = np.ones(3, dtype=np.int64)
    assert recall_at_k(hits, n_rel, 1).tolist() == [1, 0, 0]
    assert recall_at_k(hits, n_rel, 3).tolist() == [1, 1, 0]
    assert mrr_at_k(hits, 4).tolist() == pytest.approx([1, 1 / 3, 0])
    assert mrr_at_k(hits, 2).tolist() == pytest.approx([1, 0, 0])
    assert ndcg_at_k(hits, n_rel, 4).tolist() == pytest.approx([1, 0.5, 0])
    assert hit_at_k(hits, 3).tolist() == [1, 1, 0]


def test_hand_built_multiple_relevant():
    # 3 relevant items; the top 4 holds two of them, at ranks 2 and 4
    hits = np.array([[0, 1, 0, 1]], dtype=bool)
    n_rel = np.array([3])
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(hits, n_rel, 4)[0] == pytest.approx(dcg / idcg)
    assert recall_at_k(hits, n_rel, 4)[0] == pytest.approx(2 / 3)
    assert mrr_at_k(hits, 4)[0] == pytest.approx(0.5)
    # more relevant items than K: the ideal ranking fills all K slots
    assert ndcg_at_k(np.ones((1, 2), bool), np.array([5]), 2)[0] == pytest.approx(1.0)


def test_hand_built_classification():
    true = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    assert accuracy(pred, true) == pytest.approx(0.6)
    # F1: class 0 = 2*1/(2+2) = .5, class 1 = 2*2/(3+2) = .8, class 2 = 0
    assert macro_f1(pred, true) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # a class that is only predicted counts (as in sklearn), one never seen does not
    assert macro_f1(np.array([3, 0]), np.array([0, 0])) == pytest.approx((2 / 3 + 0) / 2)


def reference_metrics(scores: np.ndarray, relevant: list[set], k: int) -> dict[str, list[float]]:
    """Straightforward per-query loops, written from the textbook definitions."""
    out = {"R": [], "hit": [], "MRR": [], "nDCG": []}
    for row, rel in zip(scores, relevant):
        ranking = sorted(range(len(row)), key=lambda i: -row[i])[:k]
        found = [1 if item in rel else 0 for item in ranking]
        out["R"].append(sum(found) / len(rel))
        out["hit"].append(1.0 if any(found) else 0.0)
        first = next((i for i, f in enumerate(found) if f), None)
        out["MRR"].append(0.0 if first is None else 1.0 / (first + 1))
        dcg = sum(f / math.log2(i + 2) for i, f in enumerate(found))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(rel), k)))
        out["nDCG"].append(dcg / idcg)
    return out


@pytest.mark.parametrize("k", [1, 5, 10])
def test_vectorised_metrics_agree_with_reference_on_random_rankings(k):
    rng = np.random.default_rng(k)
    n_queries, n_items, dim = 70, 45, 8
    queries = rng.standard_normal((n_queries, dim)).astype(np.float32)
    corpus = rng.standard_normal((n_items, dim)).astype(np.float32)
    item_group = rng.integers(0, 9, n_items)
    query_group = rng.choice(np.unique(item_group), n_queries)
    relevance = Relevance.from_groups(query_group, item_group)
    names = [f"R@{k}", f"hit@{k}", f"MRR@{k}", f"nDCG@{k}"]
    got = retrieval_per_query(queries, corpus, relevance, names, chunk_size=16)
    ref = reference_metrics(queries @ corpus.T, [set(np.flatnonzero(item_group == g)) for g in query_group], k)
    for name in names:
        np.testing.assert_allclose(got[name], ref[name.split("@")[0]], atol=1e-9, err_msg=name)


def test_relevance_from_groups_lists_exactly_the_group_members():
    item_group = np.array(["b", "a", "b", "c", "a", "b"], dtype=object)
    rel = Relevance.from_groups(np.array(["a", "b", "z"], dtype=object), item_group)
    rows = [set(rel.items[rel.indptr[i]:rel.indptr[i + 1]].tolist()) for i in range(3)]
    assert rows == [{1, 4}, {0, 2, 5}, set()]
    assert rel.counts.tolist() == [2, 3, 0]


def test_ranked_metrics_ignore_missing_results():
    rel = Relevance.from_positives(np.array([3, 0]), 5)
    ranked = np.array([[-1, 3], [4, -1]])
    values = ranked_per_query(ranked, rel, ["R@1", "R@2", "MRR@2"])
    assert values["R@1"].tolist() == [0, 0] and values["R@2"].tolist() == [1, 0]
    assert values["MRR@2"].tolist() == pytest.approx([0.5, 0])


def test_argmax_cosine_picks_nearest_label():
    labels = np.eye(3, dtype=np.float32)
    items = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.0, 0.2, 0.7]], dtype=np.float32)
    assert argmax_cosine(items, labels, chunk_size=2).tolist() == [1, 0, 2]
