"""`crop run`: add a detector's CORE box to every image of a dataset, shard by shard, resumably.

The output is a new dataset whose shards mirror the input one to one (same names, same
sample keys, same order): original image bytes and all non-CORE boxes are copied as they
are, and each image (products and query images) gets exactly one CORE box from the crop
policy. Earlier CORE boxes are replaced and counted, since an image has one core region.

Resume: each finished output shard is written atomically and then listed in the output
manifest together with the sha256 of the input shard it came from. Re-running with the
same detector, policy and input skips every shard that is listed, present and intact, and
redoes the rest; a run killed half-way therefore loses at most the shard it was writing.
The output manifest says `info.crop.complete = false` until every shard is done.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence, Union

from PIL import Image
from pydantic import BaseModel, ConfigDict
from tqdm.auto import tqdm
from webdataset import TarWriter

from moon.crop.boxes import CropPolicy, choose_core_box
from moon.crop.detector import Detector, file_sha256
from moon.data.records import BoxRole, DataError, ProductImage, ProductRecord, QueryRecord
from moon.data.shards import (
    MANIFEST,
    Dataset,
    DatasetManifest,
    ShardInfo,
    TableManifest,
    atomic_write_json,
    decode_product,
    decode_query,
    iter_tar_samples,
    product_members,
    query_members,
)

REPORT_FILE = "crop_report.json"


class CropReport(BaseModel):
    """What a crop run did (written to OUT/crop_report.json)."""

    model_config = ConfigDict(extra="forbid")

    detector_id: str
    out_dir: str
    complete: bool
    shards_done: int = 0
    shards_skipped: int = 0
    products: int = 0
    queries: int = 0
    images: int = 0
    fallbacks: int = 0
    replaced_core_boxes: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0


class _ImageSlot:
    """Where one image of a shard sits, so its new box can be put back in place."""

    __slots__ = ("sample", "index", "image")

    def __init__(self, sample: int, index: Optional[int], image: ProductImage):
        self.sample, self.index, self.image = sample, index, image


def _input_fingerprint(manifest: DatasetManifest) -> str:
    tables = {k: [(s.name, s.sha256) for s in t.shards] for k, t in sorted(manifest.tables.items())}
    return hashlib.sha256(json.dumps(tables).encode()).hexdigest()


def _run_identity(detector: Detector, policy: CropPolicy, source: Dataset) -> dict:
    return {"detector_id": detector.detector_id, "source": detector.source,
            "policy": policy.model_dump(mode="json"), "input": str(source.root.resolve()),
            "input_fingerprint": _input_fingerprint(source.manifest)}


def _open_output(out_dir: Path, identity: dict, source: Dataset) -> DatasetManifest:
    """The output manifest to continue, or a fresh one; refuses a different run's directory."""
    path = out_dir / MANIFEST
    if path.is_file():
        manifest = Dataset(out_dir).manifest
        previous = manifest.info.get("crop")
        if not isinstance(previous, dict):
            raise DataError(f"{out_dir}: holds a dataset that is not a crop run; choose another output directory")
        for key in ("detector_id", "policy", "input_fingerprint"):
            if previous.get(key) != identity[key]:
                raise DataError(f"{out_dir}: holds a crop run with a different {key} "
                                f"({previous.get(key)!r}); choose another output directory")
        return manifest
    info = {**source.manifest.info, "crop": {**identity, "complete": False, "inputs": {}}}
    return DatasetManifest(name=source.manifest.name, category_levels=source.manifest.category_levels,
                           attribute_names=source.manifest.attribute_names, info=info)


def _is_done(out_dir: Path, manifest: DatasetManifest, key: str, shard: ShardInfo) -> bool:
    """True when the output of `shard` is listed, present, intact and made from this input."""
    if manifest.info["crop"]["inputs"].get(shard.name) != shard.sha256:
        return False
    done = next((s for s in manifest.tables.get(key, TableManifest()).shards if s.name == shard.name), None)
    path = out_dir / shard.name
    return done is not None and path.is_file() and file_sha256(path) == done.sha256


def _decode(members: dict[str, bytes], table: str) -> Union[ProductRecord, QueryRecord]:
    return decode_product(members) if table == "products" else decode_query(members)


def _slots(records: list[Union[ProductRecord, QueryRecord]]) -> list[_ImageSlot]:
    slots = []
    for n, record in enumerate(records):
        if isinstance(record, ProductRecord):
            slots += [_ImageSlot(n, i, image) for i, image in enumerate(record.images)]
        elif record.image is not None:
            slots.append(_ImageSlot(n, None, record.image))
    return slots


class _ShardCropper:
    """Detects, chooses and stores CORE boxes for the images of one shard, in batches."""

    def __init__(self, detector: Detector, policy: CropPolicy, batch_size: int, report: CropReport):
        self.detector, self.policy, self.batch_size = detector, policy, batch_size
        self.report = report

    def crop(self, shard_name: str, keys: list[str],
             records: list[Union[ProductRecord, QueryRecord]]) -> list[Union[ProductRecord, QueryRecord]]:
        slots = _slots(records)
        new_images: dict[tuple[int, Optional[int]], ProductImage] = {}
        for start in range(0, len(slots), self.batch_size):
            batch = slots[start:start + self.batch_size]
            pils = [self._pil(shard_name, keys[s.sample], s.image) for s in batch]
            for slot, pil, dets in zip(batch, pils, self.detector.predict(pils, batch_size=self.batch_size)):
                box = choose_core_box(dets, pil.width, pil.height, self.policy, self.detector.source)
                kept = [b for b in slot.image.boxes if b.role != BoxRole.CORE]
                self.report.replaced_core_boxes += len(slot.image.boxes) - len(kept)
                self.report.fallbacks += int(box.fallback)
                new_images[(slot.sample, slot.index)] = ProductImage(
                    data=slot.image.data, format=slot.image.format, boxes=kept + [box])
            self.report.images += len(batch)
        out = []
        for n, record in enumerate(records):
            if isinstance(record, ProductRecord):
                images = [new_images[(n, i)] for i in range(len(record.images))]
                out.append(record.model_copy(update={"images": images}))
            elif record.image is not None:
                out.append(record.model_copy(update={"image": new_images[(n, None)]}))
            else:
                out.append(record)
        return out

    @staticmethod
    def _pil(shard_name: str, key: str, image: ProductImage) -> Image.Image:
        try:
            return image.to_pil()
        except DataError as exc:
            raise DataError(f"{shard_name}:{key}: {exc}") from exc


def _write_shard(path: Path, keys: list[str], records: list[Union[ProductRecord, QueryRecord]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            with TarWriter(fh, encoder=False, mtime=0, user="", group="", mode=0o644) as writer:
                for key, record in zip(keys, records):
                    members = (product_members(record) if isinstance(record, ProductRecord)
                               else query_members(record))
                    writer.write({"__key__": key, **members})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _commit(out_dir: Path, manifest: DatasetManifest, source: Dataset, key: str, shard: ShardInfo,
            written: ShardInfo) -> None:
    """List `written` in the output manifest, keeping the input's shard order."""
    previous = {s.name: s for s in manifest.tables.get(key, TableManifest()).shards}
    previous[written.name] = written
    ordered = [previous[s.name] for s in source.manifest.tables[key].shards if s.name in previous]
    manifest.tables[key] = TableManifest(count=sum(s.count for s in ordered), shards=ordered)
    manifest.info["crop"]["inputs"][shard.name] = shard.sha256
    atomic_write_json(out_dir / MANIFEST, manifest.model_dump(mode="json"))


def add_core_boxes(detector: Detector, records: Sequence[Union[ProductRecord, QueryRecord]],
                   policy: CropPolicy = CropPolicy(), batch_size: int = 32,
                   where: str = "records") -> list[Union[ProductRecord, QueryRecord]]:
    """`records` with the detector's CORE box on every image, in memory.

    For data that is never written as shards, such as a benchmark's test products and image
    queries, which must be cropped the way the training data was."""
    report = CropReport(detector_id=detector.detector_id, out_dir="", complete=False)
    records = list(records)
    keys = [getattr(r, "product_id", None) or getattr(r, "query_id") for r in records]
    return _ShardCropper(detector, policy, batch_size, report).crop(where, keys, records)


def crop_dataset(detector: Detector, in_dataset: Union[str, Path], out_dataset: Union[str, Path],
                 batch_size: int = 32, policy: CropPolicy = CropPolicy(),
                 show_progress: bool = True) -> CropReport:
    """Write `out_dataset` = `in_dataset` with a CORE box on every image (see module docstring)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    source = Dataset(in_dataset)
    out_dir = Path(out_dataset)
    if out_dir.resolve() == source.root.resolve():
        raise ValueError(f"{out_dir}: the output must be a new directory, not the input dataset")
    identity = _run_identity(detector, policy, source)
    manifest = _open_output(out_dir, identity, source)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / MANIFEST, manifest.model_dump(mode="json"))

    todo, report = [], CropReport(detector_id=detector.detector_id, out_dir=str(out_dir), complete=False)
    for key, table in source.manifest.tables.items():
        for shard in table.shards:
            if _is_done(out_dir, manifest, key, shard):
                report.shards_skipped += 1
            else:
                todo.append((key, shard))
    bar = tqdm(total=sum(s.count for _, s in todo), desc="crop", unit="sample", disable=not show_progress)
    cropper = _ShardCropper(detector, policy, batch_size, report)
    started = time.perf_counter()
    try:
        for key, shard in todo:
            table = key.split("/")[1]
            samples = list(iter_tar_samples(source.root / shard.name))
            keys = [k for k, _ in samples]
            try:
                records = [_decode(members, table) for _, members in samples]
            except ValueError as exc:
                raise DataError(f"{source.root / shard.name}: {exc}") from exc
            records = cropper.crop(shard.name, keys, records)
            out_path = out_dir / shard.name
            _write_shard(out_path, keys, records)
            written = ShardInfo(name=shard.name, count=len(records), sha256=file_sha256(out_path),
                                bytes=out_path.stat().st_size)
            _commit(out_dir, manifest, source, key, shard, written)
            report.shards_done += 1
            setattr(report, table, getattr(report, table) + len(records))
            elapsed = time.perf_counter() - started
            bar.set_postfix(img_s=f"{report.images / max(elapsed, 1e-9):.1f}")
            bar.update(len(records))
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    report.images_per_second = report.images / report.seconds if report.images else 0.0
    report.complete = report.shards_done + report.shards_skipped == sum(
        len(t.shards) for t in source.manifest.tables.values())
    manifest.info["crop"]["complete"] = report.complete
    atomic_write_json(out_dir / MANIFEST, manifest.model_dump(mode="json"))
    atomic_write_json(out_dir / REPORT_FILE, report.model_dump(mode="json"))
    return report
