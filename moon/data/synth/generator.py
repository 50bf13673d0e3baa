"""Orchestrates MBE-synth: plan from the seed, render in parallel, write shards in order.

Rendering is the only expensive step (a few ms per 128-px photo), so it runs in a pool of
`workers` processes. Each product's task carries everything it needs (its plan and its
queries' plans) and seeds its own random streams from (seed, index), and results are
consumed in submission order (`imap`), so the shards are byte-identical for any worker
count. The pool uses the "spawn" start method: forking a parent that already runs
threads (torch, tokenizers, pytest plugins) can deadlock.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path
from typing import Iterator, Union

from tqdm import tqdm

from moon.data.records import ProductRecord, QueryKind, QueryRecord
from moon.data.shards import DatasetManifest, DatasetWriter
from moon.data.synth.config import SynthConfig
from moon.data.synth.plan import SPLITS, ProductPlan, derive_rng, plan_catalogue
from moon.data.synth.queries import QueryPlan, plan_queries
from moon.data.synth.scene import CATALOGUE, USER_PHOTO, render_view
from moon.data.synth.taxonomy import ATTRIBUTE_NAMES, CATEGORY_LEVELS

_Task = tuple[int, int, int, ProductPlan, list[QueryPlan]]


def render_product(task: _Task) -> tuple[ProductRecord, list[QueryRecord]]:
    """Draw one product's catalogue photos and its queries' user photos (pure function of task)."""
    seed, size, quality, plan, queries = task
    style = dataclasses.replace(CATALOGUE, jpeg_quality=quality)
    rng = derive_rng(seed, 4, plan.index)
    images = [render_view(plan.look, size, style, rng) for _ in range(plan.n_images)]
    record = ProductRecord(product_id=plan.product_id, group_id=plan.group_id, title=plan.title,
                           category=plan.category, attributes=dict(plan.attributes), images=images)
    records = []
    for q in queries:
        image = None
        if q.kind != QueryKind.TEXT:
            image = render_view(plan.look, size, USER_PHOTO, derive_rng(seed, 5, q.serial))
        records.append(QueryRecord(query_id=q.query_id, kind=q.kind, text=q.text, image=image,
                                   positive_id=plan.product_id, session_id=q.session_id, timestamp=q.timestamp))
    return record, records


def _rendered(tasks: list[_Task], workers: int) -> Iterator[tuple[ProductRecord, list[QueryRecord]]]:
    if workers == 1:
        yield from map(render_product, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(render_product, tasks, chunksize=16)


def generate(config: SynthConfig, out_dir: Union[str, Path], overwrite: bool = False,
             show_progress: bool = True) -> DatasetManifest:
    """Generate the dataset described by `config` into `out_dir` and return its manifest."""
    products = plan_catalogue(config)
    queries = plan_queries(config, products)
    by_product: dict[int, list[QueryPlan]] = {}
    for q in queries:
        by_product.setdefault(q.product_index, []).append(q)
    tasks = [(config.seed, config.image_size, config.jpeg_quality, p, by_product.get(p.index, []))
             for p in products]
    info = {"generator": "moon.data.synth", "config": config.model_dump(mode="json", exclude={"workers"})}
    rendered_queries: dict[int, QueryRecord] = {}
    with DatasetWriter(out_dir, name=config.name, category_levels=CATEGORY_LEVELS,
                       attribute_names=ATTRIBUTE_NAMES, shard_size=config.shard_size, info=info,
                       overwrite=overwrite) as writer:
        bar = tqdm(_rendered(tasks, config.workers), total=len(tasks), desc="mbe-synth products",
                   unit="product", disable=not show_progress)
        for plan, (record, query_records) in zip(products, bar):
            writer.add_product(plan.split, record)
            for q, qr in zip(by_product.get(plan.index, []), query_records):
                rendered_queries[q.serial] = qr
        for split in SPLITS:
            for q in queries:
                if q.split == split:
                    writer.add_query(split, rendered_queries[q.serial])
    return writer.manifest
