"""Shared inputs of the perf benchmarks: a small MBE-synth dataset with core boxes, moon-tiny.

The dataset's CORE boxes are copies of the generator's true boxes (source "truth"), so the
crop path of the processor runs exactly as after `moon crop run`, without training a
detector inside a timing benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, TypeVar

from moon.data.records import BoxRole, ProductImage, ProductRecord, QueryRecord
from moon.data.shards import DatasetWriter, open_dataset

Record = TypeVar("Record", ProductRecord, QueryRecord)


def _with_core(image: ProductImage) -> ProductImage:
    truth = image.box(BoxRole.TRUTH)
    if truth is None:
        return image
    core = truth.model_copy(update={"role": BoxRole.CORE, "source": "truth"})
    return image.model_copy(update={"boxes": [b for b in image.boxes if b.role != BoxRole.CORE] + [core]})


def with_core_boxes(record: Record) -> Record:
    if isinstance(record, ProductRecord):
        return record.model_copy(update={"images": [_with_core(im) for im in record.images]})
    if record.image is None:
        return record
    return record.model_copy(update={"image": _with_core(record.image)})


def bench_dataset(work: Path, products: int, seed: int = 0) -> Path:
    """MBE-synth with `products` products in WORK/boxed (CORE = true box); returns its path."""
    from moon.data.synth import SynthConfig, generate

    raw, out = work / "synth", work / "boxed"
    generate(SynthConfig(products=products, seed=seed, workers=1), raw, overwrite=True, show_progress=False)
    source = open_dataset(raw)
    manifest = source.manifest
    with DatasetWriter(out, name=f"{source.name}-boxed", category_levels=manifest.category_levels,
                       attribute_names=manifest.attribute_names, overwrite=True) as writer:
        for split in source.splits:
            if source.has(split, "products"):
                for p in source.products(split):
                    writer.add_product(split, with_core_boxes(p))
            if source.has(split, "queries"):
                for q in source.queries(split):
                    writer.add_query(split, with_core_boxes(q))
    return out


def moon_tiny(dataset: Path, seed: int = 0, compute_dtype: Optional[str] = None):
    """moon-tiny with random weights and a tokenizer from the train split (same seed: same weights)."""
    from moon.model.bootstrap import dataset_corpus
    from moon.model.encoder import MoonModel

    overrides = {"compute_dtype": compute_dtype} if compute_dtype else None
    return MoonModel.from_config("moon-tiny", tokenizer_corpus=dataset_corpus(dataset, ["train"]),
                                 overrides=overrides, seed=seed)
