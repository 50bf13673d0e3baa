"""Moon dataset -> YOLO dataset export, and validation of user YOLO datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moon.crop.yolo_data import export_yolo_dataset, open_yolo_dataset, yolo_label_line
from moon.data.records import Box, BoxRole, ProductImage, ProductRecord
from moon.data.shards import DatasetWriter
from tests.crop.conftest import scene_products


def test_leaf_classes_and_seeded_holdout_when_there_is_no_val_split(tmp_path: Path):
    products = scene_products(20, seed=3)
    unboxed = products[0].model_copy(update={"product_id": "nobox", "images": [
        ProductImage(data=products[0].images[0].data, boxes=[])]})
    with DatasetWriter(tmp_path / "ds", name="d", category_levels=["i", "t"], attribute_names=[]) as w:
        for p in products + [unboxed]:
            w.add_product("train", p)
    first = export_yolo_dataset(tmp_path / "ds", tmp_path / "yolo", classes="leaf", val_fraction=0.3, seed=1)
    assert first.class_names == ["mug", "tote", "vase"]
    assert first.skipped == {"no_box": 1}
    n_images = sum(len(p.images) for p in products)
    assert first.images["train"] + first.images["val"] == n_images and first.images["val"] > 0
    spec = yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())
    assert spec["names"] == {0: "mug", 1: "tote", 2: "vase"} and spec["val"] == "images/val"
    again = export_yolo_dataset(tmp_path / "ds", tmp_path / "yolo", classes="leaf", val_fraction=0.3, seed=1)
    assert again.images == first.images
    labels = [f.read_text() for f in (tmp_path / "yolo" / "labels").rglob("*.txt")]
    assert {line.split()[0] for text in labels for line in text.splitlines()} == {"0", "1", "2"}
    assert open_yolo_dataset(tmp_path / "yolo").images == first.images


def test_label_line_clamps_and_drops_boxes_outside():
    box = Box(x0=-10, y0=0, x1=50, y1=100, role=BoxRole.TRUTH, source="t")
    assert yolo_label_line(box, 0, 100, 100) == "0 0.250000 0.500000 0.500000 1.000000"
    assert yolo_label_line(Box(x0=120, y0=0, x1=150, y1=10, source="t"), 0, 100, 100) is None


def test_dataset_without_any_box_is_refused(tmp_path: Path):
    p = scene_products(2, seed=4)
    bare = [q.model_copy(update={"images": [ProductImage(data=q.images[0].data)]}) for q in p]
    with DatasetWriter(tmp_path / "ds", name="d", category_levels=["i", "t"], attribute_names=[]) as w:
        for record in bare:
            w.add_product("train", record)
    with pytest.raises(ValueError, match="no train image has a TRUTH or CORE box"):
        export_yolo_dataset(tmp_path / "ds", tmp_path / "yolo")
    assert not (tmp_path / "yolo").exists()


@pytest.mark.parametrize("spec, message", [
    ({"train": "images/train", "val": "images/val"}, "field 'names'"),
    ({"names": ["a"], "train": "images/train"}, "field 'val' is missing"),
    ({"names": ["a"], "train": "images/train", "val": "nope"}, "field 'val': directory"),
])
def test_bad_yolo_dataset_names_the_field(tmp_path: Path, spec, message):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=message):
        open_yolo_dataset(tmp_path)


def test_records_are_unchanged_by_export(tmp_path: Path):
    products: list[ProductRecord] = scene_products(3, seed=5)
    with DatasetWriter(tmp_path / "ds", name="d", category_levels=["i", "t"], attribute_names=[]) as w:
        for p in products:
            w.add_product("train", p)
            w.add_product("val", p)
    result = export_yolo_dataset(tmp_path / "ds", tmp_path / "yolo")
    n = sum(len(p.images) for p in products)
    assert result.images == {"train": n, "val": n} and result.boxes == {"train": n, "val": n}
    exported = sorted((tmp_path / "yolo" / "images" / "train").iterdir())
    assert exported[0].read_bytes() == products[0].images[0].data
