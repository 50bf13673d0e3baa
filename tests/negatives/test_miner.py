"""The miner: false-negative filtering, margin, policies, determinism, scale paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from moon.data.answers import SharedAnswers
from moon.data.records import DataError
from moon.data.shards import open_dataset
from moon.negatives.fallback import FallbackEmbedder
from moon.negatives.miner import MinerConfig, mine_negatives, report_path
from moon.negatives.sidecar import negatives_metadata, read_negatives


@pytest.fixture(scope="module")
def records(mining_dataset: Path):
    ds = open_dataset(mining_dataset)
    return {p.product_id: p for p in ds.products("train")}, {q.query_id: q for q in ds.queries("train")}


def _mine(dataset: Path, out: Path, **config):
    report = mine_negatives(FallbackEmbedder(), dataset, "train", out, MinerConfig(**config), show_progress=False)
    return report, read_negatives(out).to_pylist()


ALL = ["same_category", "knn", "session"]


def test_never_the_positive_nor_its_group_and_policy_recorded(mining_dataset, records, tmp_path):
    products, queries = records
    report, rows = _mine(mining_dataset, tmp_path / "neg.parquet", k=6, policies=ALL, session_window=2.0)
    assert rows and report.pairs == len(queries) and report.negatives == len(rows)
    for r in rows:
        assert r["positive_id"] == queries[r["query_id"]].positive_id
        assert r["negative_id"] != r["positive_id"]
        assert products[r["negative_id"]].group_id != products[r["positive_id"]].group_id
    assert {r["policy"] for r in rows} == set(ALL)
    assert report.filtered["same_group"] > 0
    per_pair: dict = {}
    for r in rows:
        per_pair.setdefault(r["query_id"], []).append(r)
    for pair in per_pair.values():
        assert [r["rank"] for r in pair] == list(range(len(pair))) and len(pair) <= 6
        assert len({r["negative_id"] for r in pair}) == len(pair)
    assert report_path(tmp_path / "neg.parquet").is_file()


def test_products_answering_the_same_query_text_are_never_proposed(mining_dataset, records, tmp_path):
    _, queries = records
    answers = SharedAnswers(queries.values())
    shared = lambda rows: sum(r["negative_id"] in answers.of(queries[r["query_id"]]) for r in rows)  # noqa: E731
    report, rows = _mine(mining_dataset, tmp_path / "neg.parquet", k=6, policies=["knn", "same_category"])
    assert shared(rows) == 0 and report.filtered["shared_answer"] > 0
    unfiltered_report, unfiltered = _mine(mining_dataset, tmp_path / "raw.parquet", k=6,
                                          policies=["knn", "same_category"], skip_shared_answers=False)
    assert shared(unfiltered) > 0 and unfiltered_report.filtered["shared_answer"] == 0


def test_margin_is_respected_and_scores_are_true_cosines(mining_dataset, records, tmp_path):
    products, queries = records
    report, rows = _mine(mining_dataset, tmp_path / "neg.parquet", k=5, policies=["knn", "same_category"],
                         relative_margin=0.6)
    embedder = FallbackEmbedder()
    pids = sorted(products)
    pvec = dict(zip(pids, embedder.encode_products([products[p] for p in pids], show_progress=False)))
    qids = sorted({r["query_id"] for r in rows})
    qvec = dict(zip(qids, embedder.encode_queries([queries[q] for q in qids], show_progress=False)))
    for r in rows:
        q = qvec[r["query_id"]]
        assert r["score"] == pytest.approx(float(q @ pvec[r["negative_id"]]), abs=1e-5)
        assert r["score"] <= 0.6 * float(q @ pvec[r["positive_id"]]) + 1e-6
    assert report.filtered["margin"] > 0


def test_same_seed_same_table_other_seed_other_samples_any_chunking(mining_dataset, tmp_path):
    _, a = _mine(mining_dataset, tmp_path / "a.parquet", k=4, seed=3, chunk_size=1000)
    _, b = _mine(mining_dataset, tmp_path / "b.parquet", k=4, seed=3, chunk_size=7, embed_batch_size=2)
    _, c = _mine(mining_dataset, tmp_path / "c.parquet", k=4, seed=4)
    assert a == b
    sampled = lambda rows: [(r["query_id"], r["negative_id"]) for r in rows if r["policy"] == "same_category"]
    assert sampled(a) != sampled(c)


def test_skip_top_drops_the_hardest_neighbours(mining_dataset, tmp_path):
    _, full = _mine(mining_dataset, tmp_path / "a.parquet", k=8, policies=["knn"], relative_margin=None)
    _, skipped = _mine(mining_dataset, tmp_path / "b.parquet", k=6, policies=["knn"], relative_margin=None,
                       skip_top=2)
    by_query = lambda rows: {q: [r["negative_id"] for r in rows if r["query_id"] == q]
                             for q in {r["query_id"] for r in rows}}
    full_q, skip_q = by_query(full), by_query(skipped)
    assert all(skip_q[q] == full_q[q][2:8] for q in skip_q)


def test_session_policy_draws_from_the_same_session(mining_dataset, records, tmp_path):
    products, queries = records
    report, rows = _mine(mining_dataset, tmp_path / "s.parquet", k=3, policies=["session"])
    assert rows and report.per_policy == {"session": len(rows)}
    for r in rows:
        session = queries[r["query_id"]].session_id
        same_session = {q.positive_id for q in queries.values() if q.session_id == session}
        assert r["negative_id"] in same_session
    scores = {}
    for r in rows:
        scores.setdefault(r["query_id"], []).append(r["score"])
    assert all(s == sorted(s, reverse=True) for s in scores.values())


def test_time_window_adds_neighbours_in_time(mining_dataset, records, tmp_path):
    products, queries = records
    _, plain = _mine(mining_dataset, tmp_path / "a.parquet", k=20, policies=["session"], relative_margin=None)
    _, windowed = _mine(mining_dataset, tmp_path / "b.parquet", k=20, policies=["session"], relative_margin=None,
                        session_window=4.0)
    assert len(windowed) > len(plain)
    for r in windowed:
        q = queries[r["query_id"]]
        near = {o.positive_id for o in queries.values()
                if o.session_id == q.session_id or abs(o.timestamp - q.timestamp) <= 4.0}
        assert r["negative_id"] in near


def test_ivf_index_path_keeps_the_guarantees(mining_dataset, records, tmp_path):
    products, _ = records
    report, rows = _mine(mining_dataset, tmp_path / "ivf.parquet", k=4, policies=["knn"], exact_max=10,
                         nlist=2, nprobe=2)
    assert report.index["kind"] == "ivf" and rows
    assert all(products[r["negative_id"]].group_id != products[r["positive_id"]].group_id for r in rows)
    meta = negatives_metadata(tmp_path / "ivf.parquet")
    assert meta["model_id"] == FallbackEmbedder().model_id and meta["config"]["exact_max"] == 10


def test_text_only_model_skips_image_queries_and_says_so(mining_dataset, tmp_path):
    from moon.model.registry import load_embedder

    report = mine_negatives(load_embedder("minilm"), mining_dataset, "train", tmp_path / "m.parquet",
                            MinerConfig(k=2), show_progress=False)
    assert report.skipped == {"unsupported_image_query": 30}
    assert report.pairs == 60
    rows = read_negatives(tmp_path / "m.parquet").to_pylist()
    assert not any(r["query_id"].endswith("-i") for r in rows)


def test_bad_inputs_are_named(mining_dataset, tmp_path):
    with pytest.raises(ValueError, match="policies"):
        MinerConfig(policies=[])
    with pytest.raises(ValueError, match="policies"):
        MinerConfig(policies=["knn", "bogus"])
    with pytest.raises(DataError, match="split 'test' has no queries"):
        mine_negatives(FallbackEmbedder(), mining_dataset, "test", tmp_path / "x.parquet", show_progress=False)
    assert not (tmp_path / "x.parquet").exists()
