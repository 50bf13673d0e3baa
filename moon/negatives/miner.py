"""`moon mine`: embed a split's catalogue and training queries, search, write hard negatives.

The flow is streaming so that memory grows with the batch, not the catalogue: products
are decoded and embedded `chunk_size` at a time and only their vectors and integer codes
(group, category) are kept; queries are then decoded, embedded, searched and turned into
sidecar rows one chunk at a time. What remains proportional to the catalogue is the
vector matrix itself (n x d float32) and the FAISS index (see moon.negatives.index).

`mine_arrays` is the same mining on arrays, used by `mine_negatives` and by the 1M-vector
benchmark, so both measure one code path.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from moon.data.answers import SharedAnswers
from moon.data.records import DataError, QueryRecord
from moon.data.shards import Dataset, atomic_write_json
from moon.model.api import Embedder, UnsupportedInputError
from moon.negatives.index import VectorIndex, choose_index
from moon.negatives.policies import (
    POLICIES,
    Catalogue,
    Counters,
    PairNegatives,
    Policy,
    PolicySettings,
    SessionLog,
    pair_rng,
)
from moon.negatives.sidecar import NegativesWriter


class MinerConfig(BaseModel):
    """Everything that decides which negatives are written (stored in the sidecar metadata)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(8, ge=1, description="negatives per training pair")
    policies: list[Policy] = Field(default_factory=lambda: ["same_category", "knn"])
    seed: int = 0
    skip_top: int = Field(0, ge=0, description="knn: survivors skipped at the top (likely unlabelled positives)")
    relative_margin: Optional[float] = Field(0.95, gt=0.0, description=(
        "drop candidates scoring above this x the positive's score; None disables"))
    skip_shared_answers: bool = Field(True, description=(
        "never propose a product that another query of the split with the same text points at"))
    session_window: Optional[float] = Field(None, gt=0.0, description=(
        "session policy: also use queries within +/- this many seconds (any session)"))
    session_cap: int = Field(64, ge=1, description="session policy: at most this many time-window neighbours")
    oversample: int = Field(4, ge=1, description="candidates drawn per slot before filtering")
    knn_depth: Optional[int] = Field(None, ge=1, description="neighbours searched; None: skip_top + oversample*k + 32")
    embed_batch_size: int = Field(32, ge=1, description="batch size given to the embedder")
    chunk_size: int = Field(1024, ge=1, description="records decoded and embedded at once (bounds memory)")
    exact_max: int = Field(200_000, ge=1, description="largest catalogue searched exactly (IndexFlatIP)")
    nlist: Optional[int] = Field(None, ge=1, description="IVF lists; None: about sqrt(catalogue size)")
    nprobe: int = Field(32, ge=1, description="IVF lists searched per query")
    use_gpu: bool = Field(True, description="move the index to GPUs when faiss has them")

    @field_validator("policies")
    @classmethod
    def _policies(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"at least one policy is needed (choose from {', '.join(POLICIES)})")
        if len(set(v)) != len(v):
            raise ValueError(f"policies repeat: {v}")
        return v

    @property
    def depth(self) -> int:
        return self.knn_depth or self.skip_top + self.oversample * self.k + 32

    def settings(self) -> PolicySettings:
        return PolicySettings(k=self.k, policies=self.policies, skip_top=self.skip_top,
                              relative_margin=self.relative_margin, oversample=self.oversample)


class MiningReport(BaseModel):
    """What a mining run produced and left out (written next to the sidecar as JSON)."""

    model_config = ConfigDict(extra="forbid")

    out_path: str = ""
    model_id: str = ""
    catalogue: int = 0
    queries: int = 0
    pairs: int = 0
    negatives: int = 0
    per_policy: dict[str, int] = Field(default_factory=dict)
    short_pairs: int = Field(0, description="pairs that got fewer than k negatives")
    skipped: dict[str, int] = Field(default_factory=dict, description="queries without rows, by reason")
    filtered: dict[str, int] = Field(default_factory=dict, description="candidates removed, by filter")
    index: dict = Field(default_factory=dict)
    seconds: dict[str, float] = Field(default_factory=dict)


@dataclass
class QueryChunk:
    """Training queries ready for mining: ids, log entry numbers, positive rows, unit vectors,
    and per query the rows of the other products that answer its text (never its negatives)."""

    ids: list[str]
    entries: np.ndarray
    positives: np.ndarray
    vectors: np.ndarray
    answers: Optional[list[list[int]]] = None


@dataclass
class _Codes:
    """Dense integer codes for strings (group ids, category paths, session ids)."""

    table: dict = field(default_factory=dict)

    def __call__(self, key) -> int:
        return self.table.setdefault(key, len(self.table))


def mine_arrays(catalogue: Catalogue, chunks: Iterable[QueryChunk], writer: NegativesWriter,
                config: MinerConfig, log: Optional[SessionLog] = None, index: Optional[VectorIndex] = None,
                report: Optional[MiningReport] = None, total: Optional[int] = None,
                show_progress: bool = True) -> MiningReport:
    """Mine negatives for query chunks against a catalogue and stream them into `writer`."""
    report = report or MiningReport()
    if "session" in config.policies and log is None:
        raise ValueError("the session policy needs the behaviour log (SessionLog)")
    started = time.perf_counter()
    if "knn" in config.policies and index is None:
        spec = choose_index(len(catalogue), config.exact_max, config.nlist, config.nprobe, config.use_gpu)
        index = VectorIndex.build(catalogue.vectors, spec, seed=config.seed)
    report.index = index.spec.to_json() if index is not None else {"kind": "none"}
    report.seconds["index"] = report.seconds.get("index", 0.0) + time.perf_counter() - started
    report.catalogue = len(catalogue)
    settings, counters = config.settings(), Counters()
    per_policy = {p: 0 for p in config.policies}
    bar = tqdm(total=total, desc="mine", unit="query", disable=not show_progress)
    search_time = select_time = 0.0
    try:
        for chunk in chunks:
            t0 = time.perf_counter()
            ids = index.search(chunk.vectors, config.depth)[1] if "knn" in config.policies else None
            t1 = time.perf_counter()
            rows: dict[str, list] = {"query_id": [], "positive_id": [], "negative_id": [], "policy": [],
                                     "rank": [], "score": []}
            for i, query_id in enumerate(chunk.ids):
                pair = PairNegatives(catalogue, chunk.vectors[i], int(chunk.positives[i]), settings, counters,
                                     chunk.answers[i] if chunk.answers is not None else ())
                streams = {}
                if "same_category" in config.policies:
                    streams["same_category"] = pair.same_category(pair_rng(config.seed, query_id))
                if ids is not None:
                    streams["knn"] = pair.knn(ids[i])
                if log is not None and "session" in config.policies:
                    streams["session"] = pair.session(log.candidates(int(chunk.entries[i])))
                negatives = pair.merge(streams)
                positive_id = catalogue.ids[int(chunk.positives[i])]
                for rank, (row, policy, score) in enumerate(negatives):
                    rows["query_id"].append(query_id)
                    rows["positive_id"].append(positive_id)
                    rows["negative_id"].append(catalogue.ids[row])
                    rows["policy"].append(policy)
                    rows["rank"].append(rank)
                    rows["score"].append(score)
                    per_policy[policy] += 1
                report.short_pairs += int(len(negatives) < config.k)
            writer.write(rows)
            report.pairs += len(chunk.ids)
            report.negatives += len(rows["query_id"])
            search_time += t1 - t0
            select_time += time.perf_counter() - t1
            bar.update(len(chunk.ids))
    finally:
        bar.close()
    report.per_policy = per_policy
    report.filtered = {"same_group": counters.same_group, "shared_answer": counters.shared_answer,
                       "margin": counters.margin, "skipped_top": counters.skipped_top}
    report.seconds["search"] = search_time
    report.seconds["select"] = select_time
    return report


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _unit_rows(vectors, where: str) -> np.ndarray:
    """float32 rows, re-normalised; an embedder returning NaN/zero rows is named, not indexed."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise DataError(f"{where}: the embedder returned zero or non-finite vectors")
    return v / norms


def embed_catalogue(embedder: Embedder, ds: Dataset, split: str, config: MinerConfig,
                    show_progress: bool = True) -> Catalogue:
    """Stream the split's products through the embedder, keeping only ids, codes and vectors."""
    n = ds.count(split, "products")
    if n == 0:
        raise DataError(f"{ds.root}: split '{split}' has no products to draw negatives from")
    ids: list[str] = []
    seen: set[str] = set()
    groups, categories = _Codes(), _Codes()
    group_codes = np.empty(n, dtype=np.int64)
    category_codes = np.empty(n, dtype=np.int64)
    vectors: Optional[np.ndarray] = None
    bar = tqdm(total=n, desc="embed catalogue", unit="product", disable=not show_progress)
    try:
        for batch in _chunks(ds.products(split), config.chunk_size):
            start = len(ids)
            if start + len(batch) > n:
                raise DataError(f"{ds.root}: split '{split}' holds more products than its manifest count {n}")
            emb = _unit_rows(embedder.encode_products(batch, batch_size=config.embed_batch_size,
                                                      show_progress=False), f"{split} products")
            if vectors is None:
                vectors = np.empty((n, emb.shape[1]), dtype=np.float32)
            vectors[start:start + len(batch)] = emb
            for j, p in enumerate(batch):
                if p.product_id in seen:
                    raise DataError(f"{ds.root}: product_id '{p.product_id}' appears twice in split '{split}'")
                seen.add(p.product_id)
                ids.append(p.product_id)
                group_codes[start + j] = groups(p.group_id)
                category_codes[start + j] = categories(tuple(p.category))
            bar.update(len(batch))
    finally:
        bar.close()
    m = len(ids)
    return Catalogue(ids=ids, groups=group_codes[:m], categories=category_codes[:m], vectors=vectors[:m])


def session_log(ds: Dataset, split: str, row_of: dict[str, int], window: Optional[float] = None,
                cap: int = 64) -> SessionLog:
    """One pass over the split's queries keeping session, time and positive row per query."""
    sessions, times, positives = [], [], []
    codes = _Codes()
    for q in ds.queries(split):
        sessions.append(codes(q.session_id) if q.session_id is not None else -1)
        times.append(q.timestamp if q.timestamp is not None else math.nan)
        positives.append(row_of.get(q.positive_id, -1))
    return SessionLog(sessions=np.asarray(sessions, dtype=np.int64), timestamps=np.asarray(times, dtype=np.float64),
                      positives=np.asarray(positives, dtype=np.int64), window=window, cap=cap)


def _embed_queries(embedder: Embedder, batch: list[QueryRecord], config: MinerConfig,
                   skipped: dict[str, int]) -> tuple[list[int], Optional[np.ndarray]]:
    """Embed a batch kind by kind; kinds the model cannot embed are counted and left out."""
    kept: list[int] = []
    parts: list[np.ndarray] = []
    for kind in sorted({q.kind for q in batch}, key=lambda k: k.value):
        idx = [i for i, q in enumerate(batch) if q.kind == kind]
        try:
            emb = embedder.encode_queries([batch[i] for i in idx], batch_size=config.embed_batch_size,
                                          show_progress=False)
        except UnsupportedInputError:
            key = f"unsupported_{kind.value}_query"
            skipped[key] = skipped.get(key, 0) + len(idx)
            continue
        kept += idx
        parts.append(_unit_rows(emb, f"{kind.value} queries"))
    if not kept:
        return [], None
    order = np.argsort(kept, kind="stable")
    return [kept[i] for i in order], np.concatenate(parts)[order]


def _query_chunks(embedder: Embedder, ds: Dataset, split: str, row_of: dict[str, int], config: MinerConfig,
                  report: MiningReport, answers: Optional[SharedAnswers] = None) -> Iterator[QueryChunk]:
    entry = 0
    for batch in _chunks(ds.queries(split), config.chunk_size):
        entries = np.arange(entry, entry + len(batch))
        entry += len(batch)
        report.queries += len(batch)
        known = [i for i, q in enumerate(batch) if q.positive_id in row_of]
        if len(known) < len(batch):
            report.skipped["positive_not_in_catalogue"] = (
                report.skipped.get("positive_not_in_catalogue", 0) + len(batch) - len(known))
        kept, vectors = _embed_queries(embedder, [batch[i] for i in known], config, report.skipped)
        if not kept:
            continue
        chosen = [known[i] for i in kept]
        shared = None
        if answers is not None:
            shared = [[row_of[p] for p in answers.of(batch[i]) if p in row_of] for i in chosen]
        yield QueryChunk(ids=[batch[i].query_id for i in chosen], entries=entries[chosen],
                         positives=np.asarray([row_of[batch[i].positive_id] for i in chosen], dtype=np.int64),
                         vectors=vectors, answers=shared)


def _model_fingerprint(embedder: Embedder) -> str:
    return hashlib.sha256(json.dumps(dict(embedder.config_dict()), sort_keys=True, default=str).encode()).hexdigest()


def report_path(out_path: Union[str, Path]) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.report.json")


def mine_negatives(embedder: Embedder, dataset: Union[str, Path, Dataset], split: str,
                   out_path: Union[str, Path], config: Optional[MinerConfig] = None,
                   show_progress: bool = True) -> MiningReport:
    """Write k hard negatives per (query, positive) pair of `split` to the sidecar `out_path`.

    The catalogue is the split's own products, so negatives never leak from other splits.
    Also writes `<out stem>.report.json` with counts of what was produced and left out.
    """
    config = config if config is not None else MinerConfig()
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if not ds.has(split, "queries"):
        raise DataError(f"{ds.root}: split '{split}' has no queries (training pairs) to mine for")
    report = MiningReport(out_path=str(out_path), model_id=embedder.model_id)
    t0 = time.perf_counter()
    catalogue = embed_catalogue(embedder, ds, split, config, show_progress)
    report.seconds["embed_catalogue"] = time.perf_counter() - t0
    row_of = {pid: i for i, pid in enumerate(catalogue.ids)}
    log = None
    if "session" in config.policies:
        log = session_log(ds, split, row_of, config.session_window, config.session_cap)
    answers = SharedAnswers(ds.queries(split)) if config.skip_shared_answers else None
    metadata = {"model_id": embedder.model_id, "model_fingerprint": _model_fingerprint(embedder),
                "dataset": str(ds.root.resolve()), "dataset_name": ds.name, "split": split,
                "config": config.model_dump(mode="json")}
    t1 = time.perf_counter()
    with NegativesWriter(out_path, metadata) as writer:
        mine_arrays(catalogue, _query_chunks(embedder, ds, split, row_of, config, report, answers), writer, config,
                    log=log, report=report, total=ds.count(split, "queries"), show_progress=show_progress)
    report.seconds["mine"] = time.perf_counter() - t1
    atomic_write_json(report_path(out_path), report.model_dump(mode="json"))
    return report

