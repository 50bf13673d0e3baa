"""Run benchmark tasks for any embedder the toolkit can load, and build the result.

The runner is the only part that talks to the model: it embeds each product set once per
view and each query list once (an in-run cache keyed by set and view, since several tasks
share a view: t2p and i2p both score against the full view), then hands the vectors to the
task's scorer. An embedder that cannot embed a task's inputs (UnsupportedInputError, e.g.
an image query for the text-only MiniLM) gets that task reported as n/a with the reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Hashable, Optional, Sequence, Union

import numpy as np

from moon.data.records import IMAGE_TITLE_VIEW, ProductRecord, ProductView
from moon.data.shards import Dataset, open_dataset
from moon.index.export import dataset_sha256
from moon.index.faiss_index import CorpusTooSmallError
from moon.model.api import Embedder, QueryInput, UnsupportedInputError
from moon.model.fingerprint import config_hash
from moon.model.registry import load_embedder

from benchmarks.mbe.examples import retrieval_examples
from benchmarks.mbe.fashion import Split, crop_catalogue, fashion_tasks, load_catalogue
from benchmarks.mbe.results import RunResult, make_result
from benchmarks.mbe.tasks import (ProbeTask, RetrievalTask, TaskScore, ZeroShotTask, category_values,
                                  distinct_labels, label_indices, query_retrieval_tasks, score_probe,
                                  score_retrieval, score_retrieval_ann, score_zero_shot, zero_shot_tasks)

Task = Union[RetrievalTask, ZeroShotTask, ProbeTask]


class EmbeddingCache:
    """Embeddings of one model within one run, keyed by (product set, view) or query key."""

    def __init__(self, embedder: Embedder, batch_size: int = 32, show_progress: bool = True):
        self.embedder = embedder
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._store: dict[Hashable, np.ndarray] = {}

    def products(self, set_name: str, products: Sequence[ProductRecord], view: ProductView) -> np.ndarray:
        key = ("products", set_name, view)
        if key not in self._store:
            self._store[key] = self.embedder.encode_products(products, batch_size=self.batch_size, view=view,
                                                             show_progress=self.show_progress)
        return self._store[key]

    def queries(self, key: Hashable, queries: Sequence[QueryInput]) -> np.ndarray:
        key = ("queries", key)
        if key not in self._store:
            self._store[key] = self.embedder.encode_queries(queries, batch_size=self.batch_size,
                                                            show_progress=self.show_progress)
        return self._store[key]


def run_tasks(embedder: Embedder, corpus: Sequence[ProductRecord], tasks: Sequence[Task],
              train: Sequence[ProductRecord] = (), ann_kind: Optional[str] = None, breakdown: bool = False,
              batch_size: int = 32, show_progress: bool = True,
              cache: Optional[EmbeddingCache] = None, examples: int = 0) -> list[TaskScore]:
    """Score every task; retrieval tasks also through an ANN index when `ann_kind` is set.

    `examples` > 0 keeps that many sampled queries per retrieval task with their top-5
    products (for the report's gallery).

    `cache` (default: a fresh one) must belong to `embedder` and to this corpus/train set.
    """
    cache = cache or EmbeddingCache(embedder, batch_size, show_progress)
    scores: list[TaskScore] = []
    for task in tasks:
        try:
            if isinstance(task, RetrievalTask):
                q = cache.queries(task.name, task.queries)
                c = cache.products("corpus", corpus, task.corpus_view)
                scores.append(score_retrieval(task, q, c, breakdown))
                if examples:
                    scores[-1].examples = retrieval_examples(task, q, c, corpus, examples)
                if ann_kind is not None:
                    scores.append(_ann_or_na(task, q, c, ann_kind))
            elif isinstance(task, ZeroShotTask):
                items = cache.products("corpus", corpus, task.view)
                labels = cache.queries(("labels", tuple(task.labels)), task.labels)
                scores.append(score_zero_shot(task, items, labels))
            else:
                scores.append(score_probe(task, cache.products("train", train, task.view),
                                          cache.products("corpus", corpus, task.view)))
        except UnsupportedInputError as exc:
            scores.append(TaskScore(task.name, None, na_reason=str(exc)))
            if isinstance(task, RetrievalTask) and ann_kind is not None:
                scores.append(TaskScore(f"{task.name}_ann", None, na_reason=str(exc)))
    return scores


def _ann_or_na(task: RetrievalTask, queries: np.ndarray, corpus: np.ndarray, kind: str) -> TaskScore:
    """The ANN variant, or n/a when the corpus is too small to tune an index on."""
    try:
        return score_retrieval_ann(task, queries, corpus, kind=kind)
    except CorpusTooSmallError as exc:
        return TaskScore(f"{task.name}_ann", None, na_reason=str(exc))


def _load(model: Union[str, Path, Embedder]) -> tuple[Embedder, str]:
    if isinstance(model, (str, Path)):
        return load_embedder(model), str(model)
    return model, model.model_id


def run_fashion(model: Union[str, Path, Embedder], catalogue: Union[str, Path], split: Split = "test",
                breakdown: bool = False, group_level: int = 0, batch_size: int = 32,
                show_progress: bool = True, examples: int = 0,
                detector: Optional[Union[str, Path]] = None) -> RunResult:
    """The README's five fashion tasks on a catalogue folder (test split or all products).

    `examples` sampled queries per retrieval task keep their top-5 products in the result.
    `detector` (a `moon crop train` directory) adds core-region boxes to the scored products
    and image queries, for models trained on cropped data.
    """
    started = time.perf_counter()
    embedder, model_path = _load(model)
    data = load_catalogue(catalogue, split)
    if detector is not None:
        data = crop_catalogue(data, detector, batch_size=batch_size)
    scores = run_tasks(embedder, data.products, fashion_tasks(data, group_level), breakdown=breakdown,
                       batch_size=batch_size, show_progress=show_progress, examples=examples)
    report = data.report
    return make_result(scores, benchmark="fashion", model_id=embedder.model_id, model_path=model_path,
                       config_hash=config_hash(embedder), data_id=data.data_id, data_path=str(data.source),
                       split=split, wall_time_s=time.perf_counter() - started,
                       data_report={"rows": report.rows, "scored_products": len(data.products),
                                    "bad_rows": len(report.bad_rows), "bad_reasons": report.bad_reasons,
                                    "bad_examples": [b.model_dump() for b in report.bad_rows[:20]]})


def probe_tasks(train: Sequence[ProductRecord], products: Sequence[ProductRecord],
                category_levels: Sequence[str], methods: Sequence[str],
                view: ProductView = IMAGE_TITLE_VIEW) -> list[ProbeTask]:
    """kNN / linear-probe classification per category level, labels from both splits."""
    tasks = []
    for level, name in enumerate(category_levels):
        train_values, values = category_values(train, level), category_values(products, level)
        labels = distinct_labels(train_values + values)
        for method in methods:
            tasks.append(ProbeTask(f"{method}.{name}", view, method, label_indices(train_values, labels),
                                   label_indices(values, labels), len(labels)))
    return tasks


def dataset_id(ds: Dataset) -> str:
    return f"{ds.name}@{dataset_sha256(ds)[:12]}"


def run_mbe(model: Union[str, Path, Embedder], data: Union[str, Path, Dataset], split: str = "test",
            ann_kind: Optional[str] = "hnsw", knn: bool = False, linear_probe: bool = False,
            train_split: str = "train", breakdown: bool = False, group_level: int = 0,
            batch_size: int = 32, show_progress: bool = True) -> RunResult:
    """MBE tasks on a moon dataset (MBE-synth, an MBE import, a fashion import).

    Retrieval per query kind of `split` (exact, and ANN through moon.index unless
    ann_kind is None), zero-shot classification per category level and attribute
    prediction per attribute; optional kNN / linear probes trained on `train_split`.
    """
    started = time.perf_counter()
    embedder, model_path = _load(model)
    ds = data if isinstance(data, Dataset) else open_dataset(data)
    products = ds.load_products(split)
    queries = ds.load_queries(split) if ds.has(split, "queries") else []
    tasks: list[Task] = []
    retrieval, missing = query_retrieval_tasks(products, queries, group_level)
    tasks += retrieval
    tasks += zero_shot_tasks(products, ds.manifest.category_levels, ds.manifest.attribute_names)
    methods = [m for m, on in (("knn", knn), ("linear", linear_probe)) if on]
    train = ds.load_products(train_split) if methods else []
    tasks += probe_tasks(train, products, ds.manifest.category_levels, methods)
    scores = run_tasks(embedder, products, tasks, train=train, ann_kind=ann_kind, breakdown=breakdown,
                       batch_size=batch_size, show_progress=show_progress)
    return make_result(scores, benchmark="mbe", model_id=embedder.model_id, model_path=model_path,
                       config_hash=config_hash(embedder), data_id=dataset_id(ds), data_path=str(ds.root),
                       split=split, wall_time_s=time.perf_counter() - started,
                       data_report={"products": len(products), "queries": len(queries),
                                    "queries_without_positive_in_split": missing})
