from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moon.data.importers.augment import augmented_query_image
from moon.data.importers.fashion import attribute_query, fashion_split, import_fashion
from moon.data.records import DataError, QueryKind
from moon.data.shards import open_dataset
from moon.data.validate import validate_dataset

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName,extra"


def _jpeg(path: Path, colour: tuple[int, int, int]) -> None:
    Image.new("RGB", (48, 64), colour).save(path, "JPEG")


def _catalogue(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    good_ids = list(range(100, 124))
    lines = [HEADER]
    for i in good_ids:
        lines.append(f'{i},Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,"Brand {i}, Blue Tee",x')
        _jpeg(root / "images" / f"{i}.jpg", (i % 255, 40, 200))
    lines += [
        "200,Women,Apparel,Topwear,Tops,Red,,2012,,Has No Image,x",  # missing image
        "201,Women,Apparel,Topwear,Tops,Red,Fall,2012,Casual,Corrupt Image,x",
        "202,Women,Apparel,Topwear,Tops,Red,Fall,2012,Casual,,x",  # empty title
        "203,Women,Apparel,Topwear",  # missing columns
        "204,Women,Apparel,Topwear,Tops,Red,Fall,2012,Casual,Too, Many,x",  # unknown columns
        "100,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Duplicate,x",
        "205,Women,Apparel,,Tops,Red,Fall,2012,Casual,No Subcategory,x",
    ]
    for i in (202, 203, 204, 205):
        _jpeg(root / "images" / f"{i}.jpg", (10, 10, 10))
    (root / "images" / "201.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "styles.csv").write_text("\n".join(lines) + "\n")
    return root


def test_split_rule_is_the_documented_hash():
    for pid in (1, 10000, 15970, "39386"):
        expected = "test" if int(hashlib.sha256(str(pid).encode()).hexdigest(), 16) % 10 == 1 else "train"
        assert fashion_split(pid) == expected
    splits = [fashion_split(i) for i in range(2000)]
    assert 0.07 < splits.count("test") / len(splits) < 0.13


def test_import_tiny_catalogue_reports_every_bad_row(tmp_path):
    src = _catalogue(tmp_path / "cat")
    report = import_fashion(src, tmp_path / "out", show_progress=False)
    assert report.rows == 31
    assert sum(report.products.values()) == 24
    bad = {b.id: b.reason for b in report.bad_rows}
    assert bad["200"].startswith("missing image")
    assert bad["201"].startswith("corrupt image")
    assert bad["202"].startswith("empty title")
    assert bad["203"].startswith("missing columns")
    assert bad["204"].startswith("unknown columns")
    assert bad["100"].startswith("duplicate id")
    assert bad["205"].startswith("empty category")
    assert report.rows == sum(report.products.values()) + len(report.bad_rows)
    assert any("extra" in note for note in report.notes)
    saved = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert len(saved["bad_rows"]) == 7 and all(b["line"] for b in saved["bad_rows"])

    ds = open_dataset(tmp_path / "out")
    assert ds.manifest.category_levels == ["masterCategory", "subCategory", "articleType"]
    for split in ds.splits:
        for p in ds.load_products(split):
            assert fashion_split(p.product_id) == split
            assert p.category == ["Apparel", "Topwear", "Tshirts"]
            assert p.attributes == {"baseColour": "Blue", "gender": "Men", "season": "Summer", "usage": "Casual",
                                    "year": "2012"}
            assert p.title == f"Brand {p.product_id}, Blue Tee" and p.group_id == p.product_id
    train_ids = {p.product_id for p in ds.load_products("train")}
    queries = ds.load_queries("train")
    assert len(queries) == 3 * len(train_ids)
    assert {q.positive_id for q in queries} == train_ids
    attr = [q for q in queries if q.query_id.endswith("-attr")]
    assert all(q.text == "men blue tshirts" for q in attr)
    assert sum(q.kind == QueryKind.IMAGE for q in queries) == len(train_ids)
    assert validate_dataset(tmp_path / "out", show_progress=False).ok


def test_missing_required_columns_is_refused_with_names(tmp_path):
    (tmp_path / "styles.csv").write_text("id,gender,productDisplayName\n1,Men,Shirt\n")
    with pytest.raises(DataError, match="masterCategory, subCategory, articleType"):
        import_fashion(tmp_path, tmp_path / "out", show_progress=False)


def test_augmented_query_is_seeded_per_product():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8))
    a = np.asarray(augmented_query_image(img, 0, "42"))
    assert a.shape == (64, 48, 3)
    assert np.array_equal(a, np.asarray(augmented_query_image(img, 0, "42")))
    assert not np.array_equal(a, np.asarray(augmented_query_image(img, 0, "43")))
    assert not np.array_equal(a, np.asarray(img))


def test_attribute_query_drops_missing_parts():
    assert attribute_query({"gender": "Women", "baseColour": "Navy Blue"}, "Kurtas") == "women navy blue kurtas"
    assert attribute_query({}, "Watches") == "watches"


def test_real_fashion_catalogue_subset(fashion_dir, tmp_path):
    report = import_fashion(fashion_dir, tmp_path / "fashion", limit=120, show_progress=False)
    assert report.rows == 120
    assert sum(report.products.values()) + len(report.bad_rows) == 120
    ds = open_dataset(tmp_path / "fashion")
    products = [p for s in ds.splits for p in ds.load_products(s)]
    assert all(p.images[0].to_pil().size[0] > 0 for p in products[:10])
    assert all(len(p.category) == 3 and p.title for p in products)
    assert all(fashion_split(p.product_id) == s for s in ds.splits for p in ds.load_products(s))
