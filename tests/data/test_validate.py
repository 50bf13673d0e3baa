from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from moon.data.shards import open_dataset
from moon.data.validate import validate_dataset


def _rewrite_member(dataset: Path, shard: str, member: str, change) -> None:
    """Replace one tar member's bytes (without updating the manifest), like on-disk corruption."""
    path = dataset / shard
    with tarfile.open(path) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar if info.isfile()]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            if info.name == member:
                data = change(data)
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _edit_json(field: str, value):
    def change(data: bytes) -> bytes:
        meta = json.loads(data)
        if value is _DELETE:
            del meta[field]
        else:
            meta[field] = value
        return json.dumps(meta).encode()
    return change


_DELETE = object()


def _first_shard(dataset: Path, key: str) -> str:
    return open_dataset(dataset).manifest.tables[key].shards[0].name


def test_clean_dataset_passes(tiny_dataset):
    report = validate_dataset(tiny_dataset, show_progress=False)
    assert report.ok and report.errors == 0
    assert report.samples["train/products"] == 12 and report.samples["test/queries"] == 18


def test_every_problem_is_reported_with_shard_sample_and_field(tiny_dataset):
    shard = _first_shard(tiny_dataset, "train/products")
    _rewrite_member(tiny_dataset, shard, "000000001.img0.jpg", lambda d: d[: len(d) // 3])
    _rewrite_member(tiny_dataset, shard, "000000002.json", _edit_json("title", _DELETE))
    _rewrite_member(tiny_dataset, shard, "000000003.json", _edit_json("category", "home/kitchen"))
    report = validate_dataset(tiny_dataset, show_progress=False)
    assert not report.ok
    found = {(p.shard, p.key, p.field) for p in report.problems}
    assert (shard, "000000001", "images[0]") in found
    assert (shard, "000000002", "title") in found
    assert (shard, "000000003", "category") in found
    assert any(p.shard == shard and p.key is None and "sha256" in p.message for p in report.problems)
    messages = {p.key: p.message for p in report.problems if p.key}
    assert "decode" in messages["000000001"]
    assert "list" in messages["000000003"].lower()


def test_manifest_count_and_positive_mismatches(tiny_dataset):
    manifest_path = tiny_dataset / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["tables"]["val/products"]["shards"][0]["count"] += 1
    manifest_path.write_text(json.dumps(manifest))
    shard = _first_shard(tiny_dataset, "test/queries")
    _rewrite_member(tiny_dataset, shard, "000000000.json", _edit_json("positive_id", "nope"))
    report = validate_dataset(tiny_dataset, show_progress=False)
    messages = [str(p) for p in report.problems]
    assert any("manifest lists" in m and "val/products-00000.tar" in m for m in messages)
    assert any("positive_id" in m and "'nope'" in m and f"{shard}:000000000" in m for m in messages)


def test_box_outside_image_and_missing_member(tiny_dataset):
    shard = _first_shard(tiny_dataset, "val/products")

    def bad_box(data: bytes) -> bytes:
        meta = json.loads(data)
        meta["images"][0]["boxes"] = [{"x0": 10, "y0": 10, "x1": 500, "y1": 20, "role": "truth", "source": "t"}]
        meta["images"].append({"format": "png", "boxes": []})
        return json.dumps(meta).encode()

    _rewrite_member(tiny_dataset, shard, "000000000.json", bad_box)
    problems = {p.field: p.message for p in validate_dataset(tiny_dataset, show_progress=False).problems
                if p.key == "000000000"}
    assert "outside" in problems["images[0].boxes[0]"]
    assert "missing" in next(m for f, m in problems.items() if f.startswith("images[") and "boxes" not in f)


def test_missing_manifest_and_stray_files(tmp_path, tiny_dataset):
    report = validate_dataset(tmp_path / "nothing", show_progress=False)
    assert not report.ok and "manifest.json not found" in report.problems[0].message
    (tiny_dataset / "train" / ".products-00009.tar.abc.tmp").write_bytes(b"partial")
    report = validate_dataset(tiny_dataset, show_progress=False)
    assert report.ok and report.warnings == 1
    assert report.problems[0].severity == "warning" and "not listed" in report.problems[0].message


@pytest.mark.parametrize("bad_json", [b"{not json", b"[1, 2]"])
def test_unparseable_metadata(tiny_dataset, bad_json):
    shard = _first_shard(tiny_dataset, "test/products")
    _rewrite_member(tiny_dataset, shard, "000000000.json", lambda _: bad_json)
    problems = [p for p in validate_dataset(tiny_dataset, show_progress=False).problems if p.key == "000000000"]
    assert problems and problems[0].field == "json"
