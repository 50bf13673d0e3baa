from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from moon.data.importers.mbe import MbeMapping, import_mbe, parse_attributes
from moon.data.records import DataError, QueryKind
from moon.data.shards import open_dataset
from moon.data.validate import validate_dataset


def _png(colour=(200, 20, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, "PNG")
    return buf.getvalue()


def _doc(i: int, image) -> dict:
    return {"id": f"d{i}", "doc_title": f"红色 连衣裙 {i}", "doc_image": image, "doc_industry_name": "服饰",
            "doc_cate1_name": "女装", "doc_cate2_name": "连衣裙", "doc_cate3_name": "", "doc_cate4_name": None,
            "doc_attributes": "颜色:红色;尺码：M"}


def test_parse_attribute_forms():
    assert parse_attributes({"colour": "red", "size": ""}) == {"colour": "red"}
    assert parse_attributes('{"colour": "red"}') == {"colour": "red"}
    assert parse_attributes("colour:red; size：M;") == {"colour": "red", "size": "M"}
    with pytest.raises(DataError, match="name:value"):
        parse_attributes("just words")


def test_jsonl_pairs_with_paths_base64_and_bad_rows(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "d0.png").write_bytes(_png())
    b64 = base64.b64encode(_png((0, 200, 0))).decode()
    rows = [
        {**_doc(0, "imgs/d0.png"), "query_id": "q0", "query_text": "红色连衣裙"},
        {**_doc(0, "imgs/d0.png"), "query_id": "q1", "query_image": "data:image/png;base64," + b64},
        {**_doc(1, b64), "query_id": "q2", "query_text": "裙子", "query_image": b64},
        {**_doc(2, "imgs/missing.png"), "query_id": "q3", "query_text": "x"},
        {**_doc(3, "https://example.invalid/a.jpg")},
        {**_doc(4, b64), "doc_title": ""},
        {**_doc(5, b64), "doc_attributes": "broken"},
    ]
    src = tmp_path / "mbe.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{oops\n")
    report = import_mbe(src, tmp_path / "out", show_progress=False)
    assert report.rows == 8
    assert report.products == {"test": 2} and report.queries == {"test": 3}
    reasons = {b.line: b.reason for b in report.bad_rows}
    assert reasons[4].startswith("missing image") and reasons[5].startswith("image is a URL")
    assert reasons[6].startswith("empty title") and reasons[7].startswith("bad attributes")
    assert reasons[8].startswith("invalid JSON")
    assert any("merged" in n for n in report.notes)
    ds = open_dataset(tmp_path / "out")
    products = {p.product_id: p for p in ds.load_products("test")}
    assert products["d0"].category == ["服饰", "女装", "连衣裙"]
    assert products["d0"].attributes == {"颜色": "红色", "尺码": "M"}
    kinds = {q.query_id: q.kind for q in ds.load_queries("test")}
    assert kinds == {"q0": QueryKind.TEXT, "q1": QueryKind.IMAGE, "q2": QueryKind.PRODUCT}
    assert ds.manifest.attribute_names == ["颜色", "尺码"]
    assert validate_dataset(tmp_path / "out", show_progress=False).ok


def test_parquet_with_mapping_file_and_separate_queries(tmp_path):
    table = pa.Table.from_pylist([
        {"item": "a", "name": "blue shoe", "pic": _png((0, 0, 200)), "cat": "shoes", "split": "train"},
        {"item": "b", "name": "red shoe", "pic": _png(), "cat": "shoes", "split": "test"},
    ])
    pq.write_table(table, tmp_path / "docs.parquet")
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in [
        {"qid": "1", "q": "blue shoe", "target": "a", "split": "train"},
        {"qid": "2", "q": "red shoe", "target": "a", "split": "test"},  # positive of another split
    ]))
    (tmp_path / "map.yaml").write_text(
        "id: item\ntitle: name\nimage: pic\nindustry: null\ncategories: [cat]\ncategory_levels: [category]\n"
        "attributes: null\nsplit: split\nquery_id: qid\nquery_text: q\nquery_image: null\npositive_id: target\n")
    mapping = MbeMapping.from_yaml(tmp_path / "map.yaml")
    report = import_mbe(tmp_path / "docs.parquet", tmp_path / "out", mapping=mapping,
                        queries=tmp_path / "queries.jsonl", show_progress=False)
    assert report.products == {"train": 1, "test": 1} and report.queries == {"train": 1}
    assert [b.id for b in report.bad_rows] == ["2"] and "unknown positive" in report.bad_rows[0].reason
    assert open_dataset(tmp_path / "out").load_queries("train")[0].positive_id == "a"


def test_mapping_errors_name_the_file_and_field(tmp_path):
    (tmp_path / "m.yaml").write_text("id: item\nnot_a_field: 1\n")
    with pytest.raises(DataError, match=r"m\.yaml: field 'not_a_field'"):
        MbeMapping.from_yaml(tmp_path / "m.yaml")
    with pytest.raises(DataError, match="unsupported extension"):
        import_mbe(Path(__file__), tmp_path / "o", show_progress=False)
