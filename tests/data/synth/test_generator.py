from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from moon.data.records import BoxRole, QueryKind
from moon.data.shards import open_dataset
from moon.data.synth import SynthConfig, generate
from moon.data.synth.taxonomy import ATTRIBUTE_NAMES, CATEGORY_LEVELS, LEAF_BY_NAME
from tests.data.synth.conftest import SMALL


def _shard_digests(path) -> dict[str, str]:
    manifest = open_dataset(path).manifest
    return {s.name: s.sha256 for t in manifest.tables.values() for s in t.shards}


def test_same_seed_same_bytes_for_any_worker_count(synth_dir, tmp_path):
    again = tmp_path / "again"
    generate(SMALL.model_copy(update={"workers": 2}), again, show_progress=False)
    assert _shard_digests(again) == _shard_digests(synth_dir)
    assert (again / "manifest.json").read_bytes() == (synth_dir / "manifest.json").read_bytes()


def test_other_seed_other_data(synth_dir, tmp_path):
    other = tmp_path / "other"
    generate(SMALL.model_copy(update={"seed": 8, "products": 20}), other, show_progress=False)
    titles = {p.title for p in open_dataset(other).load_products("train")}
    assert titles.isdisjoint({p.title for p in open_dataset(synth_dir).load_products("train")})


def test_sizes_schema_and_manifest(synth_dir):
    ds = open_dataset(synth_dir)
    assert ds.manifest.category_levels == CATEGORY_LEVELS
    assert ds.manifest.attribute_names == ATTRIBUTE_NAMES
    assert ds.manifest.info["config"]["seed"] == SMALL.seed and "workers" not in ds.manifest.info["config"]
    assert sum(ds.count(s, "products") for s in ds.splits) == SMALL.products
    for split in ("train", "val", "test"):
        for p in ds.load_products(split):
            assert 2 <= len(p.images) <= 4
            assert p.category == LEAF_BY_NAME[p.category[-1]].path
            assert set(p.attributes) == set(ATTRIBUTE_NAMES)
            assert all(im.box(BoxRole.TRUTH) is not None for im in p.images)


def test_splits_disjoint_by_product_and_group(synth_dir):
    ds = open_dataset(synth_dir)
    seen: dict[str, set] = {"product": set(), "group": set()}
    for split in ("train", "val", "test"):
        products = ds.load_products(split)
        assert products, f"split {split} is empty"
        groups = {p.group_id for p in products}
        ids = {p.product_id for p in products}
        assert ids.isdisjoint(seen["product"]) and groups.isdisjoint(seen["group"])
        seen["product"] |= ids
        seen["group"] |= groups


def test_variants_differ_in_exactly_one_attribute(synth_dir):
    products = open_dataset(synth_dir).load_products("train")
    by_group: dict[str, list] = {}
    for p in products:
        by_group.setdefault(p.group_id, []).append(p)
    multi = [g for g in by_group.values() if len(g) > 1]
    assert multi, "expected some variant groups"
    for group in multi:
        for other in group[1:]:
            assert other.category == group[0].category
            diff = [a for a in ATTRIBUTE_NAMES if other.attributes[a] != group[0].attributes[a]]
            assert len(diff) == 1


def test_queries_kinds_positives_and_fresh_photos(synth_dir):
    ds = open_dataset(synth_dir)
    for split in ("train", "val", "test"):
        products = {p.product_id: p for p in ds.load_products(split)}
        queries = ds.load_queries(split)
        kinds = Counter(q.kind for q in queries)
        assert all(q.positive_id in products for q in queries)
        if split != "train":
            assert kinds == {k: len(products) for k in QueryKind}
        for q in queries:
            if q.image is not None:
                catalogue = {hashlib.sha256(im.data).digest() for im in products[q.positive_id].images}
                assert hashlib.sha256(q.image.data).digest() not in catalogue
                assert q.image.box(BoxRole.TRUTH) is not None
            if q.kind == QueryKind.TEXT:
                brand = products[q.positive_id].title.replace(" by ", " ").split()
                assert any(w.lower() in q.text.split() for w in brand if w[0].isupper())


def test_sessions_are_close_in_time_and_within_one_industry(synth_dir):
    ds = open_dataset(synth_dir)
    products = {p.product_id: p for s in ds.splits for p in ds.load_products(s)}
    queries = ds.load_queries("train")
    assert [q.timestamp for q in queries] == sorted(q.timestamp for q in queries)
    sessions: dict[str, list] = {}
    for q in queries:
        sessions.setdefault(q.session_id, []).append(q)
    assert max(len(s) for s in sessions.values()) >= 2
    for members in sessions.values():
        times = [q.timestamp for q in members]
        assert max(times) - min(times) <= 5 * 300.0
        assert len({products[q.positive_id].category[0] for q in members}) == 1


def test_config_rejects_inconsistent_values():
    with pytest.raises(ValueError, match="val_fraction"):
        SynthConfig(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="images_per_product"):
        SynthConfig(images_per_product=(3, 2))


def test_generator_refuses_to_overwrite(synth_dir):
    with pytest.raises(ValueError, match="already holds a dataset"):
        generate(SMALL, synth_dir, show_progress=False)
