"""The per-query reference agrees with the MBE runner's vectorised metrics (else no speedup counts)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.perf.mbe_metrics import make_vectors, per_query_metrics, vectorised_metrics


def test_reference_on_a_hand_made_ranking() -> None:
    corpus = np.eye(4, dtype=np.float32)
    queries = np.array([[1.0, 0.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]], dtype=np.float32)
    metrics = per_query_metrics(queries, corpus, np.array([0, 0]))
    assert metrics["R@1"] == 0.5, "query 2 ranks item 1 first, its positive second"
    assert metrics["R@5"] == 1.0
    assert metrics["MRR@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert metrics["nDCG@10"] == pytest.approx((1 + 1 / np.log2(3)) / 2)


def test_reference_equals_vectorised_runner_metrics() -> None:
    queries, corpus, positives = make_vectors(200, 1000, 32, noise=0.3, seed=1)
    reference, fast = per_query_metrics(queries, corpus, positives), vectorised_metrics(queries, corpus, positives)
    assert 0.0 < reference["R@1"] < 1.0, "the data must make the metrics non-trivial"
    assert fast == pytest.approx(reference, abs=1e-9)
