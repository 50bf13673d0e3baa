"""Data loading: shard read + decode + crop + processor, in images/s, against raw JPEG decode.

The loading path is what training and export run per product: stream the products of a
split from the webdataset shards (tar read, JSON + record validation), then the MOON
processor on batches (JPEG decode, core-region crop, resize, patch packing, tokenisation).
The baseline decodes the very same JPEG bytes with PIL and nothing else, so the ratio says
how close loading is to the unavoidable decode cost (1.0 = loading costs only the decode).
Images = the products' stored images; each also yields a crop when it has a core box.
"""

from __future__ import annotations

import io

from PIL import Image

from moon.data.records import FULL_VIEW
from moon.data.shards import open_dataset

from benchmarks.perf.timing import interleaved_best


def _load(dataset, processor, batch: int) -> int:
    """Stream the train split's products through the processor; returns the images seen."""
    images = 0
    pending = []
    for record in open_dataset(dataset).products("train"):
        pending.append(record)
        if len(pending) == batch:
            processor.products(pending, FULL_VIEW)
            images += sum(len(p.images) for p in pending)
            pending = []
    if pending:
        processor.products(pending, FULL_VIEW)
        images += sum(len(p.images) for p in pending)
    return images


def _decode(blobs: list[bytes]) -> None:
    for blob in blobs:
        Image.open(io.BytesIO(blob)).convert("RGB")


def run(ctx) -> dict:
    dataset = ctx.dataset()
    processor = ctx.model().processor
    blobs = [im.data for p in open_dataset(dataset).products("train") for im in p.images]
    seen = _load(dataset, processor, batch=32)
    if seen != len(blobs):
        raise RuntimeError(f"loading saw {seen} images but the split holds {len(blobs)}")
    seconds = interleaved_best({"load": lambda: _load(dataset, processor, batch=32), "decode": lambda: _decode(blobs)},
                               repeats=1 if ctx.quick else 3, warmup=False)
    products = open_dataset(dataset).count("train", "products")
    load_rate, decode_rate = len(blobs) / seconds["load"], len(blobs) / seconds["decode"]
    return {"ratio": load_rate / decode_rate,
            "meaning": "images/s through shards + decode + crop + processor / images/s of raw JPEG decode",
            "products": products, "images": len(blobs), "loading_images_per_second": load_rate,
            "loading_products_per_second": products / seconds["load"], "raw_decode_images_per_second": decode_rate,
            "image_side": Image.open(io.BytesIO(blobs[0])).size[0]}
