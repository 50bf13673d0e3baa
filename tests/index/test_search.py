import json
from dataclasses import replace

import faiss
import numpy as np
import pyarrow as pa
import pytest

from moon.data.records import DataError
from moon.index.export import SIDECAR_SCHEMA, export_embeddings, load_export
from moon.index.faiss_index import add_to_index, build_index, read_index_dir, write_index_dir
from moon.index.search import IndexSearcher
from tests.index.test_faiss_index import TRY_ANN, clustered


@pytest.fixture
def exported(tiny_text_embedder, make_dataset):
    """Export of 60 tiny products (4 colours x 3 shapes x 3 category paths)."""
    data = make_dataset(60)
    export_embeddings(tiny_text_embedder, data, "test", data.parent / "ex", chunk_size=16, show_progress=False)
    return data.parent / "ex"


def brute_force(vectors: np.ndarray, query: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    scores = np.where(allowed, vectors @ query, -np.inf)
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(i) for i in order if allowed[i]]


def test_filters_match_sidecar_and_equal_exact_subset_search(exported, tmp_path):
    write_index_dir(build_index(exported, show_progress=False), tmp_path / "ix")
    searcher = IndexSearcher.load(tmp_path / "ix")
    data = load_export(exported)
    attrs = [json.loads(a) for a in data.metadata.column("attributes").to_pylist()]
    cats = data.metadata.column("category").to_pylist()
    query = data.vectors[7]
    hits = searcher.search(query, k=5, filters={"category": "Kitchen", "attr.colour": "red"})[0]
    allowed = np.array([a["colour"] == "red" and "kitchen" in c for a, c in zip(attrs, cats)])
    assert 0 < allowed.sum() < 60
    assert [h.id for h in hits] == [data.ids[i] for i in brute_force(data.vectors, query, allowed, 5)]
    assert all(h.title for h in hits)
    by_level = searcher.search(query, k=60, filters={"category.type": "tote"})[0]
    assert {h.id for h in by_level} == {pid for pid, c in zip(data.ids, cats) if c[2] == "tote"}
    assert searcher.search(query, k=3, filters={"attr.colour": "purple"}) == [[]]
    with pytest.raises(ValueError, match="unknown filter key"):
        searcher.search(query, filters={"brand": "x"})
    with pytest.raises(ValueError, match="no product has attribute 'size'"):
        searcher.search(query, filters={"attr.size": "L"})


def test_broad_filter_uses_faiss_id_selector_on_ann_index():
    corpus = clustered(6000, 16, seed=8)
    built = build_index(corpus, kind="ivf_flat", policy=TRY_ANN, show_progress=False)
    rows = np.asarray(built.ids, dtype=np.int64)
    parity = ["even" if r % 2 == 0 else "odd" for r in rows]
    metadata = pa.Table.from_pydict({"id": built.ids, "category": [["all"]] * len(rows),
                                     "attributes": [json.dumps({"parity": p}) for p in parity],
                                     "title": [f"item {r}" for r in rows]}, schema=SIDECAR_SCHEMA)
    searcher = IndexSearcher(replace(built, metadata=metadata), exact_subset_limit=0)
    queries = corpus[:50]
    _, labels = searcher.search_labels(queries, 10, filters={"attr.parity": "EVEN"})
    assert (labels >= 0).all() and (rows[labels] % 2 == 0).all()
    truth = [brute_force(corpus, q, np.arange(6000) % 2 == 0, 10) for q in queries]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(rows[labels], truth)])
    assert recall >= 0.9


def test_incremental_add_grows_index_without_duplicates(tiny_text_embedder, make_dataset, tmp_path):
    first = make_dataset(30, name="a")
    grown = make_dataset(40, name="b")
    export_embeddings(tiny_text_embedder, first, "test", tmp_path / "ex_a", show_progress=False)
    export_embeddings(tiny_text_embedder, grown, "test", tmp_path / "ex_b", show_progress=False)
    old = write_index_dir(build_index(tmp_path / "ex_a", show_progress=False), tmp_path / "ix")
    result = add_to_index(tmp_path / "ix", tmp_path / "ex_b")
    assert (result.added, result.already_present, result.count, result.generation) == (10, 30, 40, 1)
    assert not (tmp_path / "ix" / old.index_file).exists()
    reloaded = read_index_dir(tmp_path / "ix")
    assert sorted(reloaded.ids) == sorted(load_export(tmp_path / "ex_b").ids)
    stock = faiss.read_index(str(tmp_path / "ix" / reloaded.manifest.index_file))
    assert stock.ntotal == 40
    searcher = IndexSearcher(reloaded)
    new_id = load_export(tmp_path / "ex_b").ids[35]
    assert searcher.search(searcher.vector(new_id), k=1)[0][0].id == new_id
    again = add_to_index(tmp_path / "ix", tmp_path / "ex_b")
    assert (again.added, again.already_present, again.count) == (0, 40, 40)


def test_add_refuses_vectors_of_another_model(tiny_text_embedder, make_dataset, tmp_path):
    data = make_dataset(12)
    export_embeddings(tiny_text_embedder, data, "test", tmp_path / "ex", show_progress=False)
    export_embeddings(tiny_text_embedder, data, "test", tmp_path / "ex8", matryoshka_dim=8, show_progress=False)
    write_index_dir(build_index(tmp_path / "ex", show_progress=False), tmp_path / "ix")
    with pytest.raises(DataError, match="cannot go into an index"):
        add_to_index(tmp_path / "ix", tmp_path / "ex8")


def test_full_width_queries_are_cut_to_the_matryoshka_prefix(tiny_text_embedder, make_dataset, tmp_path):
    data = make_dataset(12)
    export_embeddings(tiny_text_embedder, data, "test", tmp_path / "ex8", matryoshka_dim=8, show_progress=False)
    searcher = IndexSearcher(build_index(tmp_path / "ex8", show_progress=False))
    products = load_export(tmp_path / "ex8")
    full = tiny_text_embedder.encode_queries([f"query {i}" for i in range(3)], show_progress=False)
    scores, _ = searcher.search_labels(full, k=2)
    prefix = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(scores[:, 0], (prefix @ products.vectors.T).max(axis=1), atol=1e-4)
    with pytest.raises(ValueError, match="dimension 5"):
        searcher.search_labels(np.ones((1, 5)), k=1)
