"""Moon dataset boxes -> a standard YOLO dataset directory (and validation of existing ones).

ultralytics trains from `data.yaml` + `images/<split>/*.jpg` + `labels/<split>/*.txt`
(one `class cx cy w h` line per box, normalised to the image). Exporting to that layout,
rather than feeding ultralytics from our shards, keeps the training path the one the
library documents and lets users train on a YOLO dataset they already have.

Which boxes are the targets: TRUTH boxes (from a generator or an annotation import) when an
image has them, else CORE boxes that are not whole-image fallbacks. An image with neither
is left out, because "no box" in a catalogue means "unknown", not "no product"; the number
left out is reported.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Optional, Union

import yaml

from moon.data.records import Box, BoxRole, DataError, ProductImage, decode_image
from moon.data.shards import MANIFEST, Dataset

ClassMode = Literal["product", "leaf"]
"""'product': one class for every product; 'leaf': one class per leaf category."""

YOLO_SPLITS = ("train", "val", "test")
DATA_YAML = "data.yaml"


@dataclass
class YoloDataset:
    """A YOLO dataset directory ready for ultralytics, with what went into it."""

    data_yaml: Path
    class_names: list[str]
    images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    """reason -> count of images (or boxes) not exported, e.g. 'no_box', 'unknown_leaf'."""

    @property
    def splits(self) -> list[str]:
        return [s for s in YOLO_SPLITS if self.images.get(s)]

    def to_json(self) -> dict:
        return {"data_yaml": str(self.data_yaml), "class_names": self.class_names,
                "images": self.images, "boxes": self.boxes, "skipped": self.skipped}


def target_boxes(image: ProductImage) -> list[Box]:
    """The boxes a detector should learn for this image (see module docstring)."""
    truth = [b for b in image.boxes if b.role == BoxRole.TRUTH]
    if truth:
        return truth
    return [b for b in image.boxes if b.role == BoxRole.CORE and not b.fallback]


def yolo_label_line(box: Box, class_id: int, width: int, height: int) -> Optional[str]:
    """`class cx cy w h` normalised, after clamping to the image; None if nothing is left."""
    x0, x1 = min(max(box.x0, 0.0), width), min(max(box.x1, 0.0), width)
    y0, y1 = min(max(box.y0, 0.0), height), min(max(box.y1, 0.0), height)
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        return None
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    return f"{class_id} {cx:.6f} {cy:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"


def _image_size(image: ProductImage, where: str) -> tuple[int, int]:
    try:
        return decode_image(image.data).size
    except DataError as exc:
        raise DataError(f"{where}: image is not a readable {image.format.upper()} ({exc})") from exc


@dataclass
class _Item:
    """One image to export with the leaf category that names its class."""

    where: str
    product_id: str
    """the product (for queries: the positive) whose images stay together in one split"""
    image: ProductImage
    leaf: Optional[str]


def _split_items(ds: Dataset, split: str, leaf_of: dict[str, str]) -> Iterator[_Item]:
    """Product images, then query images (their leaf is the positive product's)."""
    if ds.has(split, "products"):
        for p in ds.products(split):
            for i, image in enumerate(p.images):
                yield _Item(f"{split} product {p.product_id} image {i}", p.product_id, image,
                            p.category[-1])
    if ds.has(split, "queries"):
        for q in ds.queries(split):
            if q.image is not None:
                yield _Item(f"{split} query {q.query_id}", q.positive_id, q.image,
                            leaf_of.get(q.positive_id))


def _holdout(product_id: str, seed: int, fraction: float) -> bool:
    """Deterministic per-product coin flip, so all images of one product land in the same split."""
    digest = hashlib.sha256(f"{seed}:{product_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def export_yolo_dataset(dataset: Union[str, Path, Dataset], out_dir: Union[str, Path],
                        classes: ClassMode = "product", val_fraction: float = 0.1,
                        seed: int = 0) -> YoloDataset:
    """Write the boxes of a moon dataset as a YOLO dataset in `out_dir` (replaced atomically).

    Splits map by name (train, val, test). When the dataset has no val split, a seeded
    `val_fraction` of train images (whole products) is held out for validation.
    """
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if not ds.has("train", "products"):
        raise DataError(f"{ds.root}: no 'train/products' table to train a detector on")
    if classes not in ("product", "leaf"):
        raise ValueError(f"classes must be 'product' or 'leaf', got {classes!r}")
    leaf_of: dict[str, str] = {}
    if classes == "leaf":
        for split in ds.splits:
            if ds.has(split, "products"):
                leaf_of.update({p.product_id: p.category[-1] for p in ds.products(split)})
    names = sorted(set(leaf_of.values())) if classes == "leaf" else ["product"]
    class_id = {name: i for i, name in enumerate(names)}

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    result = YoloDataset(data_yaml=out_dir / DATA_YAML, class_names=names)
    try:
        holdout = not ds.has("val", "products")
        for split in [s for s in ds.splits if s in YOLO_SPLITS]:
            for n, item in enumerate(_split_items(ds, split, leaf_of)):
                target = split
                if holdout and split == "train" and _holdout(item.product_id, seed, val_fraction):
                    target = "val"
                _export_item(item, classes, class_id, tmp, target, f"{split}-{n:07d}", result)
        if not result.images.get("train"):
            raise DataError(f"{ds.root}: no train image has a TRUTH or CORE box; nothing to train on "
                            f"(skipped: {result.skipped})")
        if not result.images.get("val"):
            raise DataError(f"{ds.root}: no validation images with boxes (val split empty and "
                            f"val_fraction={val_fraction} held out nothing)")
        _write_data_yaml(tmp, out_dir, names, result.splits)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _export_item(item: _Item, classes: ClassMode, class_id: dict[str, int], root: Path,
                 split: str, stem: str, result: YoloDataset) -> None:
    boxes = target_boxes(item.image)
    if not boxes:
        result.skipped["no_box"] = result.skipped.get("no_box", 0) + 1
        return
    if classes == "leaf" and item.leaf not in class_id:
        result.skipped["unknown_leaf"] = result.skipped.get("unknown_leaf", 0) + 1
        return
    cls = class_id[item.leaf] if classes == "leaf" else 0
    width, height = _image_size(item.image, item.where)
    lines = [line for line in (yolo_label_line(b, cls, width, height) for b in boxes) if line]
    if len(lines) < len(boxes):
        result.skipped["box_outside_image"] = result.skipped.get("box_outside_image", 0) + len(boxes) - len(lines)
    if not lines:
        result.skipped["no_box"] = result.skipped.get("no_box", 0) + 1
        return
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    (root / "images" / split / f"{stem}.{item.image.format}").write_bytes(item.image.data)
    (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    result.images[split] = result.images.get(split, 0) + 1
    result.boxes[split] = result.boxes.get(split, 0) + len(lines)


def _write_data_yaml(root: Path, final_root: Path, names: list[str], splits: list[str]) -> None:
    spec = {"path": str(final_root.resolve()), "names": dict(enumerate(names))}
    spec.update({s: f"images/{s}" for s in splits})
    (root / DATA_YAML).write_text(yaml.safe_dump(spec, sort_keys=False))


def open_yolo_dataset(path: Union[str, Path]) -> YoloDataset:
    """Validate an existing YOLO dataset (a directory with data.yaml, or the yaml itself)."""
    path = Path(path)
    data_yaml = path / DATA_YAML if path.is_dir() else path
    if not data_yaml.is_file():
        raise DataError(f"{path}: not a YOLO dataset ({DATA_YAML} not found)")
    try:
        spec = yaml.safe_load(data_yaml.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{data_yaml}: not valid YAML ({exc})") from exc
    if not isinstance(spec, dict):
        raise DataError(f"{data_yaml}: expected a mapping with keys 'train', 'val', 'names'")
    names = spec.get("names")
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise DataError(f"{data_yaml}: field 'names': expected a non-empty list or {{id: name}} mapping")
    root = Path(spec.get("path") or data_yaml.parent)
    if not root.is_absolute():
        root = data_yaml.parent / root
    result = YoloDataset(data_yaml=data_yaml, class_names=names)
    for split in YOLO_SPLITS:
        rel = spec.get(split)
        if rel is None:
            if split in ("train", "val"):
                raise DataError(f"{data_yaml}: field '{split}' is missing (expected an images directory)")
            continue
        if not isinstance(rel, str):
            raise DataError(f"{data_yaml}: field '{split}': expected one images directory path, got {rel!r}")
        images_dir = root / rel
        if not images_dir.is_dir():
            raise DataError(f"{data_yaml}: field '{split}': directory {images_dir} not found")
        result.images[split] = sum(1 for f in images_dir.iterdir() if f.is_file())
    return result


def is_moon_dataset(path: Union[str, Path]) -> bool:
    return (Path(path) / MANIFEST).is_file()
