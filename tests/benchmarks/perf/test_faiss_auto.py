from moon.index.faiss_index import AutoPolicy

from benchmarks.perf.faiss_auto import run
from tests.index.conftest import single_thread_faiss  # noqa: F401


def test_reports_auto_choice_recall_and_qps_for_both_corpora():
    rows = run(8000, 32, 200, policy=AutoPolicy(flat_max_cells=0, sample_queries=200))
    by_name = {r["corpus"]: r for r in rows}
    assert set(by_name) == {"random", "clustered"}
    assert by_name["clustered"]["auto_kind"] in ("hnsw", "ivf_flat")
    for r in rows:
        assert r["recall@10"] >= 0.9 and r["qps"] > 0 and r["exact_qps"] > 0
        assert {c["kind"] for c in r["candidates"]} == {"hnsw", "ivf_flat"} and r["decision"]
