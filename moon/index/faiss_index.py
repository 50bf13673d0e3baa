"""Build FAISS indexes from exported vectors: choose the kind, tune it, verify it beats exact.

Inner product on L2-normalised vectors (= cosine). `kind="auto"` picks candidates from the
corpus size, dimension and memory budget, tunes each one's search parameter (nprobe or
efSearch) on held-out corpus vectors used as queries until recall@k against exact search
reaches the target, and measures queries/s of each candidate and of exact search on the same
queries. The fastest candidate that meets the target and is at least `min_speedup` times
faster than exact search wins; otherwise the index FALLS BACK TO EXACT (Flat): an ANN index
that is slower than brute force, or below the recall target, buys nothing. The decision, the
achieved recall, the tuned parameter and the timings go into the index manifest.

Index directory layout (a "generation" is bumped by every incremental add)::

    DIR/index.json                  manifest (the commit point: names the current files)
    DIR/index-000000.faiss          stock faiss.write_index file, tuned params stored in it
    DIR/metadata-000000.parquet     row i = the product with faiss label i (id, category, ...)

Labels are row numbers of the metadata file, so any stock FAISS reader can map results back
to product ids with one parquet read.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from moon.data.records import DataError, format_validation_error
from moon.data.shards import atomic_write_bytes, atomic_write_json
from moon.index.export import (SIDECAR_SCHEMA, ExportedVectors, load_export, normalize_rows,
                               parquet_bytes)

MANIFEST_FILE = "index.json"
INDEX_FORMAT = 1

Kind = Literal["flat", "hnsw", "ivf_flat", "ivf_pq", "opq_ivf_pq"]
KINDS: tuple[str, ...] = ("flat", "hnsw", "ivf_flat", "ivf_pq", "opq_ivf_pq")
IndexKind = Literal["auto", "flat", "hnsw", "ivf_flat", "ivf_pq", "opq_ivf_pq"]


class CorpusTooSmallError(ValueError):
    """Too few vectors to hold out tuning queries and still fill a top-k."""


@dataclass(frozen=True)
class AutoPolicy:
    """Thresholds of the automatic choice (each one says why it exists).

    flat_max_cells: corpora with n*d at most this are searched exactly without trying ANN:
        a brute-force scan of 5M floats per query costs well under a millisecond batched,
        so an ANN index could only lose recall.
    hnsw_max: HNSW is only tried up to this many vectors because its graph build is slow on
        CPU (about 1M 256-d vectors take tens of minutes on 2 cores); IVF builds in seconds.
    min_speedup: an ANN candidate must be this much faster than exact search on the tuning
        queries; timings on a shared machine are noisy and ANN gives up some recall.
    sample_queries: held-out corpus vectors used as tuning queries (at most 10% of the corpus).
    """

    flat_max_cells: int = 5_000_000
    hnsw_max: int = 200_000
    hnsw_m: int = 32
    ef_construction: int = 40
    sample_queries: int = 1000
    k: int = 10
    min_speedup: float = 1.2
    seed: int = 0


class TuningPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: int
    recall: float
    qps: float


class CandidateReport(BaseModel):
    """One tried index kind: how long it took to build and the recall/speed curve."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    factory: str
    estimated_bytes: int
    build_seconds: float
    param: str
    value: int
    recall: float
    qps: float
    speedup: float
    meets_target: bool
    points: list[TuningPoint] = Field(default_factory=list)


class TuningReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int
    sample_size: int
    exact_qps: float
    min_speedup: float
    candidates: list[CandidateReport]
    decision: str


class IndexSource(BaseModel):
    """Where the vectors came from, so add/search can refuse vectors of another model."""

    model_config = ConfigDict(extra="forbid")

    model_id: str
    config_hash: str
    dataset_name: str
    split: str
    matryoshka_dim: Optional[int]
    full_dim: int


class IndexManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = INDEX_FORMAT
    kind: str
    factory: str
    metric: Literal["inner_product"] = "inner_product"
    dim: int
    count: int
    generation: int = 0
    index_file: str = ""
    metadata_file: str = ""
    search_params: dict[str, int] = Field(default_factory=dict)
    target_recall: float
    recall_at_k: float = Field(description="recall@k vs exact search on the held-out sample (1.0 = exact)")
    target_met: bool
    qps: Optional[float] = None
    exact_qps: Optional[float] = None
    tuning: Optional[TuningReport] = None
    tuned_on_count: int
    memory_budget_bytes: Optional[int] = None
    estimated_bytes: int
    timings: dict[str, float] = Field(default_factory=dict)
    source: Optional[IndexSource] = None
    category_levels: list[str] = Field(default_factory=list)
    attribute_names: list[str] = Field(default_factory=list)
    faiss_version: str = faiss.__version__


@dataclass
class BuiltIndex:
    """An index in memory: faiss label i is row i of `metadata`."""

    index: faiss.Index
    metadata: pa.Table
    manifest: IndexManifest

    @property
    def ids(self) -> list[str]:
        return self.metadata.column("id").to_pylist()


@dataclass
class AddResult:
    added: int
    already_present: int
    count: int
    generation: int
    skipped_ids: list[str] = field(default_factory=list)


def ivf_nlist(n: int) -> int:
    """Power of two near sqrt(n), with at least 39 training points per list (FAISS's minimum)."""
    target = 2 ** round(math.log2(max(1.0, math.sqrt(n))))
    return int(max(1, min(target, n // 39)))


def pq_m(d: int) -> int:
    """PQ sub-quantizers: 4 dims each (d/4 bytes per vector), or the largest divisor below."""
    m = max(1, d // 4)
    while d % m:
        m -= 1
    return m


def pq_nbits(n: int) -> int:
    """8-bit codebooks need 256*39 training points; smaller corpora get smaller codebooks."""
    return int(min(8, max(4, math.floor(math.log2(max(16, n) / 39)))))


def factory_string(kind: str, n: int, d: int, policy: AutoPolicy) -> str:
    """FAISS factory string of a kind ("np": no polysemous training, which the factory would
    otherwise run for IVF-PQ and which takes minutes while plain searches never use it)."""
    nlist, m = ivf_nlist(n), pq_m(d)
    return {
        "flat": "Flat",
        "hnsw": f"HNSW{policy.hnsw_m},Flat",
        "ivf_flat": f"IVF{nlist},Flat",
        "ivf_pq": f"IVF{nlist},PQ{m}x{pq_nbits(n)}np",
        "opq_ivf_pq": f"OPQ{m},IVF{nlist},PQ{m}x{pq_nbits(n)}np",
    }[kind]


def estimate_bytes(kind: str, n: int, d: int, policy: AutoPolicy) -> int:
    """Resident size of an index of `kind` holding n vectors of width d (ids included)."""
    nlist, m = ivf_nlist(n), pq_m(d)
    centroids = nlist * d * 4
    code = math.ceil(m * pq_nbits(n) / 8)
    return int({
        "flat": n * d * 4,
        "hnsw": n * (d * 4 + 2 * policy.hnsw_m * 4 * 1.1),
        "ivf_flat": n * (d * 4 + 8) + centroids,
        "ivf_pq": n * (code + 8) + centroids + 256 * d * 4,
        "opq_ivf_pq": n * (code + 8) + centroids + 256 * d * 4 + d * d * 4,
    }[kind])


def _param_name(kind: str) -> str:
    """The search-time knob of an ANN kind."""
    return "efSearch" if kind == "hnsw" else "nprobe"


def _param_values(kind: str, n: int, k: int) -> list[int]:
    """Increasing search effort: recall and cost both grow along this list."""
    if kind == "hnsw":
        top = min(4096, max(k, n))
        start = max(16, k)
        values = [start * 2 ** i for i in range(20) if start * 2 ** i <= top]
        return values or [top]
    nlist = ivf_nlist(n)
    return [2 ** i for i in range(20) if 2 ** i < nlist] + [nlist]


def set_search_param(index: faiss.Index, name: str, value: int) -> None:
    faiss.ParameterSpace().set_index_parameter(index, name, int(value))


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the exact top-k labels that the approximate top-k also returns."""
    k = truth.shape[1]
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum()
    return float(hits) / float(truth.size) if k else 1.0


def _timed_search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    _, labels = index.search(queries, k)
    return labels, len(queries) / max(time.perf_counter() - start, 1e-9)


def _new_index(kind: str, base: np.ndarray, policy: AutoPolicy) -> tuple[faiss.Index, str]:
    n, d = base.shape
    factory = factory_string(kind, n, d, policy)
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        faiss.downcast_index(index).hnsw.efConstruction = policy.ef_construction
    if not index.is_trained:
        # 64 points per centroid: k-means quality is flat beyond that, cost is linear in it
        rng = np.random.default_rng(policy.seed)
        limit = 64 * max(ivf_nlist(n), 2 ** pq_nbits(n))
        sample = base if n <= limit else base[np.sort(rng.choice(n, limit, replace=False))]
        index.train(sample)
    index.add(base)
    return index, factory


def _tune(kind: str, index: faiss.Index, queries: np.ndarray, truth: np.ndarray, k: int,
          target: float, exact_qps: float, min_speedup: Optional[float]) -> list[TuningPoint]:
    """Raise the search parameter until the target recall; with `min_speedup` also stop as
    soon as the index is slower than that multiple of exact search (it only gets slower)."""
    points = []
    name = _param_name(kind)
    for value in _param_values(kind, index.ntotal, k):
        set_search_param(index, name, value)
        labels, qps = _timed_search(index, queries, k)
        points.append(TuningPoint(value=value, recall=recall_at_k(labels, truth), qps=qps))
        if points[-1].recall >= target:
            break
        if min_speedup is not None and qps < exact_qps * min_speedup:
            break
    return points


def _candidate(kind: str, n_total: int, base: np.ndarray, queries: np.ndarray, truth: np.ndarray,
               target: float, exact_qps: float, policy: AutoPolicy,
               stop_when_slow: bool) -> tuple[faiss.Index, CandidateReport]:
    """Build one ANN kind on `base`, tune it, and leave it set to the chosen parameter:
    the first value meeting the target, else the best recall seen."""
    start = time.perf_counter()
    index, factory = _new_index(kind, base, policy)
    build = time.perf_counter() - start
    points = _tune(kind, index, queries, truth, policy.k, target, exact_qps,
                   policy.min_speedup if stop_when_slow else None)
    meeting = [p for p in points if p.recall >= target]
    best = meeting[0] if meeting else max(points, key=lambda p: p.recall)
    set_search_param(index, _param_name(kind), best.value)
    report = CandidateReport(kind=kind, factory=factory, build_seconds=build,
                             estimated_bytes=estimate_bytes(kind, n_total, base.shape[1], policy),
                             param=_param_name(kind), value=best.value, recall=best.recall, qps=best.qps,
                             speedup=best.qps / exact_qps, points=points, meets_target=best.recall >= target)
    return index, report


def auto_candidates(n: int, d: int, budget: Optional[int], policy: AutoPolicy) -> list[str]:
    """ANN kinds worth trying, best-recall first; [] means exact search is the answer."""
    def fits(kind: str) -> bool:
        return budget is None or estimate_bytes(kind, n, d, policy) <= budget

    if n * d <= policy.flat_max_cells and fits("flat"):
        return []
    kinds = [k for k in ("hnsw", "ivf_flat") if fits(k) and (k != "hnsw" or n <= policy.hnsw_max)]
    if not kinds:
        kinds = [k for k in ("ivf_pq", "opq_ivf_pq") if fits(k)]
    if not kinds and not fits("flat"):
        need = min(estimate_bytes(k, n, d, policy) for k in KINDS)
        raise ValueError(f"memory budget of {budget} bytes is too small for {n} vectors of dimension "
                         f"{d}: the smallest index (PQ) needs about {need} bytes")
    return kinds


@dataclass
class _Vectors:
    ids: list[str]
    vectors: np.ndarray
    metadata: pa.Table
    source: Optional[IndexSource]
    category_levels: list[str]
    attribute_names: list[str]


def _bare_metadata(ids: list[str]) -> pa.Table:
    return pa.Table.from_pydict({"id": ids, "category": [[] for _ in ids],
                                 "attributes": ["{}"] * len(ids), "title": [""] * len(ids)},
                                schema=SIDECAR_SCHEMA)


def _as_vectors(source: Union[str, Path, ExportedVectors, np.ndarray],
                ids: Optional[list[str]]) -> _Vectors:
    if isinstance(source, (str, Path)):
        source = load_export(source)
    if isinstance(source, ExportedVectors):
        spec = source.manifest.spec
        return _Vectors(source.ids, source.vectors, source.metadata,
                        IndexSource(model_id=spec.model_id, config_hash=spec.config_hash,
                                    dataset_name=spec.dataset_name, split=spec.split,
                                    matryoshka_dim=spec.matryoshka_dim, full_dim=source.manifest.full_dim),
                        spec.category_levels, spec.attribute_names)
    vectors = np.asarray(source)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"vectors must be a non-empty 2-D array, got shape {vectors.shape}")
    ids = [str(i) for i in range(len(vectors))] if ids is None else [str(i) for i in ids]
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    return _Vectors(ids, normalize_rows(vectors), _bare_metadata(ids), None, [], [])


def build_index(source: Union[str, Path, ExportedVectors, np.ndarray], kind: IndexKind = "auto",
                memory_budget_bytes: Optional[int] = None, target_recall: float = 0.95,
                ids: Optional[list[str]] = None, policy: AutoPolicy = AutoPolicy(),
                show_progress: bool = True) -> BuiltIndex:
    """Build (and for ANN kinds tune) an index over an export directory or raw vectors."""
    if kind not in ("auto", *KINDS):
        raise ValueError(f"kind must be one of auto, {', '.join(KINDS)}; got {kind!r}")
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    started = time.perf_counter()
    data = _as_vectors(source, ids)
    n, d = data.vectors.shape
    kinds = auto_candidates(n, d, memory_budget_bytes, policy) if kind == "auto" else [kind]
    common = dict(dim=d, count=n, target_recall=target_recall, tuned_on_count=n,
                  memory_budget_bytes=memory_budget_bytes, source=data.source,
                  category_levels=data.category_levels, attribute_names=data.attribute_names)
    if kinds in ([], ["flat"]):
        return _flat(data, exact_qps=None, tuning=None, started=started, policy=policy, **common)

    rng = np.random.default_rng(policy.seed)
    order = rng.permutation(n)
    shuffled = data.vectors[order]
    n_queries = max(1, min(policy.sample_queries, n // 10))
    if n - n_queries < policy.k:
        raise CorpusTooSmallError(f"{n} vectors are too few to tune a {kind} index for recall@{policy.k} "
                                  f"(need more than {policy.k + n_queries}); use kind='flat'")
    base, queries = shuffled[:n - n_queries], shuffled[n - n_queries:]
    start = time.perf_counter()
    _, truth = faiss.knn(queries, base, policy.k, metric=faiss.METRIC_INNER_PRODUCT)
    exact_qps = n_queries / max(time.perf_counter() - start, 1e-9)

    built = [_candidate(c, n, base, queries, truth, target_recall, exact_qps, policy,
                        stop_when_slow=kind == "auto")
             for c in tqdm(kinds, desc="index candidates", disable=not show_progress)]
    reports = [r for _, r in built]
    flat_fits = memory_budget_bytes is None or estimate_bytes("flat", n, d, policy) <= memory_budget_bytes
    chosen = _decide(kind == "auto", reports, flat_fits, policy.min_speedup)
    tuning = dict(k=policy.k, sample_size=n_queries, exact_qps=exact_qps, min_speedup=policy.min_speedup,
                  candidates=reports)
    if chosen is None:
        del built
        decision = (f"fallback to exact (Flat): no ANN candidate reached recall@{policy.k} {target_recall} "
                    f"at least {policy.min_speedup}x faster than exact search")
        return _flat(data, exact_qps=exact_qps, tuning=TuningReport(decision=decision, **tuning),
                     started=started, policy=policy, **common)
    index, report = built[chosen]
    del built
    index.add(queries)
    decision = (f"{report.kind}: {report.param}={report.value} reaches recall@{policy.k} {report.recall:.3f} "
                f"at {report.speedup:.1f}x exact qps") if report.meets_target else \
        (f"{report.kind}: best recall@{policy.k} {report.recall:.3f} reachable "
         f"({'forced kind' if kind != 'auto' else 'exact index exceeds the memory budget'}); "
         f"target {target_recall} not met")
    manifest = IndexManifest(kind=report.kind, factory=report.factory,
                             search_params={report.param: report.value},
                             recall_at_k=report.recall, target_met=report.meets_target, qps=report.qps,
                             exact_qps=exact_qps, tuning=TuningReport(decision=decision, **tuning),
                             estimated_bytes=report.estimated_bytes,
                             timings={"total_s": time.perf_counter() - started,
                                      "build_s": report.build_seconds}, **common)
    return BuiltIndex(index, data.metadata.take(pa.array(order)), manifest)


def _decide(auto: bool, reports: list[CandidateReport], flat_fits: bool, min_speedup: float) -> Optional[int]:
    """Which candidate to keep (None = exact Flat instead).

    A forced kind is kept as tuned. Auto keeps the fastest candidate meeting the recall
    target at `min_speedup` x exact speed; failing that exact search, unless exact does not
    fit the memory budget, in which case the highest-recall candidate is the best possible.
    """
    if not auto:
        return 0
    winners = [i for i, r in enumerate(reports) if r.meets_target and r.speedup >= min_speedup]
    if winners:
        return max(winners, key=lambda i: reports[i].qps)
    if flat_fits:
        return None
    return max(range(len(reports)), key=lambda i: reports[i].recall)


def _flat(data: _Vectors, exact_qps: Optional[float], tuning: Optional[TuningReport], started: float,
          policy: AutoPolicy, **common) -> BuiltIndex:
    index = faiss.IndexFlatIP(common["dim"])
    index.add(data.vectors)
    manifest = IndexManifest(kind="flat", factory="Flat", recall_at_k=1.0, target_met=True, qps=exact_qps,
                             exact_qps=exact_qps, tuning=tuning,
                             estimated_bytes=estimate_bytes("flat", common["count"], common["dim"], policy),
                             timings={"total_s": time.perf_counter() - started}, **common)
    return BuiltIndex(index, data.metadata, manifest)


def _write_faiss(index: faiss.Index, path: Path) -> None:
    """faiss.write_index to a temporary name in the same directory, fsync, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _commit(root: Path, built: BuiltIndex, generation: int) -> IndexManifest:
    """Write the generation's index and metadata, then the manifest that names them."""
    manifest = built.manifest.model_copy(update={
        "generation": generation, "count": int(built.index.ntotal),
        "index_file": f"index-{generation:06d}.faiss",
        "metadata_file": f"metadata-{generation:06d}.parquet"})
    _write_faiss(built.index, root / manifest.index_file)
    atomic_write_bytes(root / manifest.metadata_file, parquet_bytes(built.metadata))
    atomic_write_json(root / MANIFEST_FILE, manifest.model_dump(mode="json"))
    return manifest


def write_index_dir(built: BuiltIndex, out_dir: Union[str, Path], overwrite: bool = False) -> IndexManifest:
    root = Path(out_dir)
    if (root / MANIFEST_FILE).exists() and not overwrite:
        raise DataError(f"{root}: already holds an index ({MANIFEST_FILE}); use `moon index add` "
                        "to add products, or choose another output directory")
    root.mkdir(parents=True, exist_ok=True)
    return _commit(root, built, 0)


def read_index_manifest(index_dir: Union[str, Path]) -> IndexManifest:
    path = Path(index_dir) / MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{index_dir}: not an index directory ({MANIFEST_FILE} not found); "
                        "build one with `moon index build`")
    try:
        return IndexManifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise DataError(format_validation_error(exc, str(path))) from exc


def read_index_dir(index_dir: Union[str, Path]) -> BuiltIndex:
    """Load index, metadata and manifest; checks they describe the same products."""
    root = Path(index_dir)
    manifest = read_index_manifest(root)
    index = faiss.read_index(str(root / manifest.index_file))
    metadata = pq.read_table(root / manifest.metadata_file)
    if not index.ntotal == metadata.num_rows == manifest.count:
        raise DataError(f"{root}: index holds {index.ntotal} vectors, metadata {metadata.num_rows} rows, "
                        f"manifest {manifest.count}; the directory is damaged, rebuild it")
    return BuiltIndex(index, metadata, manifest)


def add_to_index(index_dir: Union[str, Path], source: Union[str, Path, ExportedVectors]) -> AddResult:
    """Add the products of an export that the index does not hold yet (new generation).

    Ids already indexed are not added again (counted in `already_present`); the search
    parameters keep their tuned values, so after large additions rebuild to re-tune.
    """
    root = Path(index_dir)
    built = read_index_dir(root)
    data = _as_vectors(source, None)
    old = built.manifest.source
    if old is not None and (data.source is None or data.source.config_hash != old.config_hash
                            or data.source.matryoshka_dim != old.matryoshka_dim):
        new = "raw vectors" if data.source is None else \
            f"model {data.source.model_id} ({data.source.config_hash[:12]}, dim {data.vectors.shape[1]})"
        raise DataError(f"{source}: vectors of {new} cannot go into an index of model {old.model_id} "
                        f"({old.config_hash[:12]}, dim {built.manifest.dim})")
    if data.vectors.shape[1] != built.manifest.dim:
        raise DataError(f"{source}: dimension {data.vectors.shape[1]} != index dimension {built.manifest.dim}")
    present = set(built.ids)
    new_rows = np.array([i for i, pid in enumerate(data.ids) if pid not in present], dtype=np.int64)
    skipped = [pid for pid in data.ids if pid in present]
    if len(new_rows) == 0:
        return AddResult(added=0, already_present=len(skipped), count=int(built.index.ntotal),
                         generation=built.manifest.generation, skipped_ids=skipped)
    built.index.add(data.vectors[new_rows])
    metadata = pa.concat_tables([built.metadata, data.metadata.take(pa.array(new_rows))])
    manifest = _commit(root, BuiltIndex(built.index, metadata, built.manifest), built.manifest.generation + 1)
    for stale in (built.manifest.index_file, built.manifest.metadata_file):
        (root / stale).unlink(missing_ok=True)
    return AddResult(added=len(new_rows), already_present=len(skipped), count=manifest.count,
                     generation=manifest.generation, skipped_ids=skipped)
