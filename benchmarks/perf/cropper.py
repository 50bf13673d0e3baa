"""The core-region cropper on a dataset with true boxes (MBE-synth): detection and crop quality.

Trains a detector on the dataset's train split (val for model selection), then reports:
detection mAP50 on the held-out test images (ultralytics' own validation, from
detector.json), the mean IoU of the crop the policy chooses with the true box on test
images, against centre crops of several sizes (the best of which is the baseline), and
the throughput of `crop_dataset` over the whole dataset (images/s).

    python -m moon data synth --out /tmp/synth --products 500
    python -m benchmarks.perf.cropper --data /tmp/synth --work /tmp/cropper [--epochs 30] [--imgsz 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from moon.crop.boxes import CropPolicy, box_iou, centre_box, choose_core_box
from moon.crop.detector import Detector, DetectorTrainConfig, train_detector
from moon.crop.run import crop_dataset
from moon.data.records import BoxRole
from moon.data.shards import open_dataset

CENTRE_FRACTIONS = (0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def crop_quality(detector: Detector, data: Path, split: str, policy: CropPolicy, batch: int) -> dict:
    """Mean IoU with the TRUTH box: chosen crop (policy, and unpadded) vs centre crops."""
    ds = open_dataset(data)
    images = [im for p in ds.products(split) for im in p.images if im.box(BoxRole.TRUTH)]
    if ds.has(split, "queries"):
        images += [q.image for q in ds.queries(split) if q.image is not None and q.image.box(BoxRole.TRUTH)]
    pils = [im.to_pil() for im in images]
    truths = [im.box(BoxRole.TRUTH) for im in images]
    dets = detector.predict(pils, batch_size=batch)
    unpadded = policy.model_copy(update={"pad": 0.0})
    chosen = [choose_core_box(d, p.width, p.height, policy, detector.source) for d, p in zip(dets, pils)]
    raw = [choose_core_box(d, p.width, p.height, unpadded, detector.source) for d, p in zip(dets, pils)]
    centre = {f: float(np.mean([box_iou(centre_box(p.width, p.height, f), t) for p, t in zip(pils, truths)]))
              for f in CENTRE_FRACTIONS}
    best = max(centre, key=centre.get)
    iou_chosen = float(np.mean([box_iou(c, t) for c, t in zip(chosen, truths)]))
    return {"images": len(images), "iou_chosen_crop": iou_chosen,
            "iou_chosen_unpadded": float(np.mean([box_iou(c, t) for c, t in zip(raw, truths)])),
            "iou_centre": centre, "best_centre_fraction": best, "iou_best_centre": centre[best],
            "iou_ratio_vs_best_centre": iou_chosen / centre[best],
            "fallback_share": float(np.mean([c.fallback for c in chosen])),
            "iou_at_least_0.5": float(np.mean([box_iou(c, t) >= 0.5 for c, t in zip(raw, truths)]))}


def _cpu_seconds() -> float:
    """CPU time of this process and its children: comparable across runs on a shared machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(data: Path, work: Path, overrides: dict) -> dict:
    """Train with DetectorTrainConfig's defaults (the shipped setting) plus `overrides`, then measure."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    detector = train_detector(data, work / "detector", overwrite=True, **overrides)
    train_s, train_cpu_s = time.perf_counter() - wall, _cpu_seconds() - cpu
    policy = CropPolicy()
    quality = crop_quality(detector, data, "test", policy, batch=32)
    out = work / "cropped"
    shutil.rmtree(out, ignore_errors=True)
    report = crop_dataset(Detector.load(detector.path), data, out, batch_size=32, policy=policy)
    return {"benchmark": "perf.cropper", "data": str(data),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "params": detector.info.train.model_dump(mode="json"), "policy": policy.model_dump(mode="json"),
            "detector_id": detector.detector_id, "train_seconds": train_s, "train_cpu_seconds": train_cpu_s,
            "train_images": detector.info.data.get("images", {}), "metrics": detector.info.metrics,
            "crop_quality_test": quality, "crop_run": report.model_dump(mode="json")}


def _print(result: dict) -> None:
    q, m, r, p = result["crop_quality_test"], result["metrics"], result["crop_run"], result["params"]
    table = Table(title=f"cropper on {result['data']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in [
        ("train images / val images", f"{result['train_images'].get('train', 0)} / {result['train_images'].get('val', 0)}"),
        ("model / imgsz / epochs", f"{p['model']} / {p['imgsz']} / {p['epochs']}"),
        ("train CPU seconds (wall)", f"{result['train_cpu_seconds']:.0f} ({result['train_seconds']:.0f})"),
        ("mAP50 val / test", f"{m.get('val_map50', 0):.3f} / {m.get('test_map50', float('nan')):.3f}"),
        ("mAP50-95 test", f"{m.get('test_map50_95', float('nan')):.3f}"),
        ("test images with true box", str(q["images"])),
        ("mean IoU chosen crop (padded / unpadded)", f"{q['iou_chosen_crop']:.3f} / {q['iou_chosen_unpadded']:.3f}"),
        (f"mean IoU best centre crop ({q['best_centre_fraction']})", f"{q['iou_best_centre']:.3f}"),
        ("IoU ratio chosen crop / best centre crop", f"{q['iou_ratio_vs_best_centre']:.2f}"),
        ("share IoU >= 0.5 (unpadded)", f"{q['iou_at_least_0.5']:.3f}"),
        ("fallback share", f"{q['fallback_share']:.3f}"),
        ("crop run images / s", f"{r['images_per_second']:.1f} ({r['images']} images)"),
    ]:
        table.add_row(name, value)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="moon dataset with TRUTH boxes")
    parser.add_argument("--work", type=Path, required=True, help="directory for the detector and cropped dataset")
    defaults = DetectorTrainConfig()
    parser.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    parser.add_argument("--imgsz", type=int, help=f"default {defaults.imgsz}")
    parser.add_argument("--batch", type=int, help=f"default {defaults.batch}")
    parser.add_argument("--model", help=f"default {defaults.model}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/perf/results/cropper.json"))
    args = parser.parse_args()
    overrides = {k: getattr(args, k) for k in ("epochs", "imgsz", "batch", "model", "seed")
                 if getattr(args, k) is not None}
    result = run(args.data, args.work, overrides)
    _print(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
