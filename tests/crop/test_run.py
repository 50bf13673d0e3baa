"""`crop run`: one CORE box per image, originals kept, resumable with identical output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from moon.crop.boxes import CropPolicy
from moon.crop.detector import Detector
from moon.crop.run import REPORT_FILE, crop_dataset
from moon.data.records import BoxRole, DataError
from moon.data.shards import MANIFEST, open_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cropped(trained_detector: Detector, scene_dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cropped") / "out"
    crop_dataset(trained_detector, scene_dataset, out, batch_size=8, show_progress=False)
    return out


def _tables(path: Path) -> dict:
    manifest = json.loads((path / MANIFEST).read_text())
    return {k: [(s["name"], s["sha256"]) for s in t["shards"]] for k, t in manifest["tables"].items()}


def test_every_image_gets_one_core_box_and_keeps_bytes_and_truth(cropped: Path, scene_dataset: Path,
                                                                  trained_detector: Detector):
    source, out = open_dataset(scene_dataset), open_dataset(cropped)
    assert out.manifest.info["crop"]["complete"] is True
    assert out.manifest.info["crop"]["detector_id"] == trained_detector.detector_id
    for split in source.splits:
        for before, after in zip(source.load_products(split), out.load_products(split)):
            assert before.product_id == after.product_id
            for im0, im1 in zip(before.images, after.images):
                assert im1.data == im0.data
                assert im1.box(BoxRole.TRUTH) == im0.box(BoxRole.TRUTH)
                core = [b for b in im1.boxes if b.role == BoxRole.CORE]
                assert len(core) == 1 and core[0].source == trained_detector.source
        if source.has(split, "queries"):
            for q0, q1 in zip(source.load_queries(split), out.load_queries(split)):
                assert q1.query_id == q0.query_id
                if q0.image is None:
                    assert q1 == q0
                else:
                    assert q1.image.data == q0.image.data and q1.image.box(BoxRole.CORE) is not None
    report = json.loads((cropped / REPORT_FILE).read_text())
    n_images = sum(len(p.images) for s in source.splits for p in source.products(s)) + sum(
        q.image is not None for s in source.splits if source.has(s, "queries") for q in source.queries(s))
    assert report["images"] == n_images and report["images_per_second"] > 0


def test_resume_skips_complete_shards_redoes_the_rest_and_matches(cropped: Path, scene_dataset: Path,
                                                                  trained_detector: Detector, tmp_path: Path):
    partial = tmp_path / "partial"
    shutil.copytree(cropped, partial)
    manifest = json.loads((partial / MANIFEST).read_text())
    table = manifest["tables"]["train/products"]
    unlisted, missing = table["shards"][-1], table["shards"][-2]
    # what a kill can leave: a shard renamed but not yet listed, a shard never written, a stray temp file
    table["shards"] = table["shards"][:-2]
    table["count"] = sum(s["count"] for s in table["shards"])
    for shard in (unlisted, missing):
        del manifest["info"]["crop"]["inputs"][shard["name"]]
    manifest["info"]["crop"]["complete"] = False
    (partial / MANIFEST).write_text(json.dumps(manifest))
    (partial / missing["name"]).unlink()
    (partial / "train" / ".products-00000.tar.123.tmp").write_bytes(b"half a shard")
    kept = partial / table["shards"][0]["name"]
    stat_before = kept.stat()

    report = crop_dataset(trained_detector, scene_dataset, partial, batch_size=8, show_progress=False)
    total = sum(len(t) for t in _tables(cropped).values())
    assert (report.shards_done, report.shards_skipped) == (2, total - 2)
    assert report.complete
    assert _tables(partial) == _tables(cropped)
    assert kept.stat().st_mtime_ns == stat_before.st_mtime_ns and kept.stat().st_ino == stat_before.st_ino

    again = crop_dataset(trained_detector, scene_dataset, partial, batch_size=8, show_progress=False)
    assert (again.shards_done, again.shards_skipped, again.images) == (0, total, 0)


def test_corrupted_output_shard_is_redone(cropped: Path, scene_dataset: Path, trained_detector: Detector,
                                          tmp_path: Path):
    out = tmp_path / "out"
    shutil.copytree(cropped, out)
    victim = out / _tables(cropped)["test/queries"][0][0]
    victim.write_bytes(victim.read_bytes()[:-1024])
    report = crop_dataset(trained_detector, scene_dataset, out, batch_size=4, show_progress=False)
    assert report.shards_done == 1 and _tables(out) == _tables(cropped)


def test_a_different_policy_cannot_continue_someone_elses_run(cropped: Path, scene_dataset: Path,
                                                              trained_detector: Detector):
    with pytest.raises(DataError, match="different policy"):
        crop_dataset(trained_detector, scene_dataset, cropped, policy=CropPolicy(pad=0.2), show_progress=False)
    with pytest.raises(ValueError, match="new directory"):
        crop_dataset(trained_detector, scene_dataset, scene_dataset, show_progress=False)
