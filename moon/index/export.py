"""Embed a dataset split into vector shards: batched, rank-sharded, resumable.

Layout of an export directory::

    OUT/spec.json                        what is being exported (checked on every resume)
    OUT/chunks/meta-000000.parquet       sidecar rows of chunk 0 (written first)
    OUT/chunks/vectors-000000.safetensors  vectors of chunk 0 + its ids (the commit marker)
    OUT/metadata.parquet                 all sidecar rows in export order (written at the end)
    OUT/manifest.json                    model id, config hash, dims, counts (written at the end)

Why chunks: the split is cut into fixed chunks of `chunk_size` products in stream order,
and chunk c belongs to rank c % world_size. A chunk's vectors file is written atomically
(tmp + fsync + rename) and only after its sidecar rows, so its existence means the chunk
is complete. A restarted run (any world size) skips existing chunks, so after an
interruption no id is lost or written twice. The rank that finds all chunks present writes
the merged sidecar and the manifest; that step is idempotent, so two ranks finishing at
the same moment both write the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import safe_open
from safetensors.numpy import save as st_save
from tqdm.auto import tqdm

from moon.data.records import FULL_VIEW, DataError, ProductRecord, ProductView, format_validation_error
from moon.data.shards import MANIFEST as DATASET_MANIFEST
from moon.data.shards import Dataset, atomic_write_bytes, atomic_write_json, open_dataset
from moon.model.api import Embedder
from moon.model.fingerprint import config_hash

SPEC_FILE = "spec.json"
MANIFEST_FILE = "manifest.json"
SIDECAR_FILE = "metadata.parquet"
CHUNK_DIR = "chunks"
EXPORT_FORMAT = 1

StoreDtype = Literal["float32", "float16"]

SIDECAR_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("category", pa.list_(pa.string())),
    ("attributes", pa.string()),
    ("title", pa.string()),
])
"""Sidecar columns: product id, category path (top level first), attributes as JSON, title."""


class ExportSpec(BaseModel):
    """Everything that must be equal for chunks of two runs to belong to one export."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str
    config_hash: str
    dataset_name: str
    dataset_sha256: str = Field(description="sha256 of the dataset's manifest.json")
    split: str
    view: ProductView
    dtype: StoreDtype
    matryoshka_dim: Optional[int]
    chunk_size: int
    total: int
    category_levels: list[str]
    attribute_names: list[str]


class ExportManifest(BaseModel):
    """The finished export: what downstream stages (index, search) read first."""

    model_config = ConfigDict(extra="forbid")

    format: int = EXPORT_FORMAT
    spec: ExportSpec
    dim: int = Field(description="stored vector width (the Matryoshka dim when truncated)")
    full_dim: int = Field(description="the model's embedding width")
    count: int
    chunks: list[str] = Field(description="vector files relative to the export directory, in order")


@dataclass
class ExportResult:
    """What one call did: the manifest is None while other ranks still have chunks to write."""

    out_dir: Path
    rank: int
    world_size: int
    chunks_total: int
    chunks_written: int
    chunks_skipped: int
    manifest: Optional[ExportManifest]


@dataclass
class ExportedVectors:
    """A complete export loaded in memory: row i of `vectors` is product `ids[i]`."""

    ids: list[str]
    vectors: np.ndarray
    metadata: pa.Table
    manifest: ExportManifest


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process: torch.distributed if initialised, else the
    RANK/WORLD_SIZE variables that torchrun and the deepspeed launcher set, else (0, 1)."""
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise ValueError(f"RANK/WORLD_SIZE environment variables must be integers ({exc})") from exc


def _chunk_paths(out_dir: Path, chunk: int) -> tuple[Path, Path]:
    return (out_dir / CHUNK_DIR / f"vectors-{chunk:06d}.safetensors",
            out_dir / CHUNK_DIR / f"meta-{chunk:06d}.parquet")


def sidecar_table(records: list[ProductRecord]) -> pa.Table:
    return pa.Table.from_pydict({
        "id": [r.product_id for r in records],
        "category": [list(r.category) for r in records],
        "attributes": [json.dumps(r.attributes, ensure_ascii=False, sort_keys=True) for r in records],
        "title": [r.title for r in records],
    }, schema=SIDECAR_SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit L2 norm (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def truncate(vectors: np.ndarray, dim: Optional[int]) -> np.ndarray:
    """Matryoshka prefix of `dim` columns, re-normalised (as the model's matryoshka heads)."""
    if dim is None:
        return normalize_rows(vectors)
    if not 1 <= dim <= vectors.shape[1]:
        raise ValueError(f"matryoshka_dim must be in 1..{vectors.shape[1]} (the model's dimension), got {dim}")
    return normalize_rows(vectors[:, :dim])


def dataset_sha256(ds: Dataset) -> str:
    """Fingerprint of a dataset: the sha256 of its manifest (which lists every shard's sha256)."""
    return hashlib.sha256((ds.root / DATASET_MANIFEST).read_bytes()).hexdigest()


def _check_spec(out_dir: Path, spec: ExportSpec) -> None:
    """Write spec.json on first use; on resume refuse to mix chunks of a different run."""
    path = out_dir / SPEC_FILE
    if not path.exists():
        atomic_write_json(path, spec.model_dump(mode="json"))
        return
    try:
        old = ExportSpec.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise DataError(format_validation_error(exc, str(path))) from exc
    if old != spec:
        diff = [f"{k}: {getattr(old, k)!r} (on disk) vs {getattr(spec, k)!r} (now)"
                for k in ExportSpec.model_fields if getattr(old, k) != getattr(spec, k)]
        raise DataError(f"{out_dir}: holds an export of a different run ({'; '.join(diff)}); "
                        "use a new output directory or the same arguments to resume")


def export_embeddings(embedder: Embedder, dataset: Union[Dataset, str, Path], split: str,
                      out_dir: Union[str, Path], view: ProductView = FULL_VIEW, batch_size: int = 32,
                      dtype: StoreDtype = "float32", matryoshka_dim: Optional[int] = None,
                      chunk_size: int = 1024, rank: Optional[int] = None,
                      world_size: Optional[int] = None, show_progress: bool = True) -> ExportResult:
    """Embed the products of `split` into `out_dir`, resuming any earlier partial run.

    rank/world_size default to the launcher's (torchrun/deepspeed); each rank encodes only
    its chunks. Returns with `manifest` set once every chunk of every rank exists.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if matryoshka_dim is not None and matryoshka_dim < 1:
        raise ValueError(f"matryoshka_dim must be >= 1, got {matryoshka_dim}")
    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    if not ds.has(split, "products"):
        raise DataError(f"{ds.root}: no products in split '{split}' (splits: {', '.join(ds.splits)})")
    env_rank, env_world = distributed_rank()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    out = Path(out_dir)
    total = ds.count(split, "products")
    if total == 0:
        raise DataError(f"{ds.root}: split '{split}' has no products to export")
    spec = ExportSpec(model_id=embedder.model_id, config_hash=config_hash(embedder),
                      dataset_name=ds.name, dataset_sha256=dataset_sha256(ds), split=split, view=view,
                      dtype=dtype, matryoshka_dim=matryoshka_dim, chunk_size=chunk_size, total=total,
                      category_levels=ds.manifest.category_levels,
                      attribute_names=ds.manifest.attribute_names)
    (out / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
    _check_spec(out, spec)
    n_chunks = math.ceil(total / chunk_size)
    mine = [c for c in range(n_chunks) if c % world_size == rank]
    todo = {c for c in mine if not _chunk_paths(out, c)[0].exists()}
    remaining = set(todo)
    if remaining:
        bar = tqdm(total=len(todo), desc=f"export rank {rank}/{world_size}", unit="chunk",
                   disable=not show_progress)
        pending: list[ProductRecord] = []
        for position, record in enumerate(ds.products(split)):
            chunk = position // chunk_size
            if chunk not in remaining:
                continue
            pending.append(record)
            if len(pending) == min(chunk_size, total - chunk * chunk_size):
                _write_chunk(embedder, out, chunk, pending, spec, batch_size)
                pending = []
                remaining.discard(chunk)
                bar.update(1)
                if not remaining:
                    break
        bar.close()
        if remaining:
            raise DataError(f"{ds.root}: split '{split}' streamed fewer products than the {total} its "
                            "manifest lists; the dataset changed during export or is damaged")
    written = len(todo)
    manifest = _finalize(out, spec, n_chunks)
    return ExportResult(out_dir=out, rank=rank, world_size=world_size, chunks_total=n_chunks,
                        chunks_written=written, chunks_skipped=len(mine) - written, manifest=manifest)


def _write_chunk(embedder: Embedder, out: Path, chunk: int, records: list[ProductRecord],
                 spec: ExportSpec, batch_size: int) -> None:
    vectors = embedder.encode_products(records, batch_size=batch_size, view=spec.view,
                                       show_progress=False, output="numpy")
    full_dim = int(vectors.shape[1])
    stored = truncate(vectors, spec.matryoshka_dim).astype(spec.dtype)
    vec_path, meta_path = _chunk_paths(out, chunk)
    atomic_write_bytes(meta_path, parquet_bytes(sidecar_table(records)))
    header = {"ids": json.dumps([r.product_id for r in records], ensure_ascii=False),
              "chunk": str(chunk), "full_dim": str(full_dim)}
    atomic_write_bytes(vec_path, st_save({"vectors": np.ascontiguousarray(stored)}, metadata=header))


def _chunk_header(fh, path: Path) -> tuple[list[str], int]:
    header = fh.metadata() or {}
    try:
        return json.loads(header["ids"]), int(header["full_dim"])
    except (KeyError, json.JSONDecodeError, ValueError) as exc:
        raise DataError(f"{path}: chunk header lacks valid 'ids'/'full_dim' ({exc})") from exc


def read_chunk(path: Path, with_vectors: bool = True) -> tuple[list[str], Optional[np.ndarray], int, int]:
    """(ids, vectors or None, stored dim, full model dim) of one committed chunk file."""
    with safe_open(str(path), framework="numpy") as fh:
        ids, full_dim = _chunk_header(fh, path)
        rows, dim = fh.get_slice("vectors").get_shape()
        vectors = fh.get_tensor("vectors") if with_vectors else None
    if len(ids) != rows:
        raise DataError(f"{path}: {len(ids)} ids for {rows} vectors")
    return ids, vectors, dim, full_dim


def _finalize(out: Path, spec: ExportSpec, n_chunks: int) -> Optional[ExportManifest]:
    """Merge sidecars and write the manifest once every chunk exists; else None."""
    vec_paths = [_chunk_paths(out, c)[0] for c in range(n_chunks)]
    if not all(p.exists() for p in vec_paths):
        return None
    ids: list[str] = []
    dim = full_dim = 0
    for path in vec_paths:
        chunk_ids, _, dim, full_dim = read_chunk(path, with_vectors=False)
        ids.extend(chunk_ids)
    if len(ids) != spec.total:
        raise DataError(f"{out}: chunks hold {len(ids)} products, expected {spec.total}")
    if len(set(ids)) != len(ids):
        uniq, counts = np.unique(np.asarray(ids, dtype=object), return_counts=True)
        dups = [str(u) for u in uniq[counts > 1][:5]]
        raise DataError(f"dataset '{spec.dataset_name}' split '{spec.split}' has duplicate product ids "
                        f"({int((counts > 1).sum())} ids, e.g. {', '.join(dups)}); fix the data and export again")
    sidecar = pa.concat_tables([pq.read_table(_chunk_paths(out, c)[1]) for c in range(n_chunks)])
    if sidecar.column("id").to_pylist() != ids:
        raise DataError(f"{out}: sidecar rows do not match the vector chunks; delete {CHUNK_DIR}/ and export again")
    atomic_write_bytes(out / SIDECAR_FILE, parquet_bytes(sidecar))
    manifest = ExportManifest(spec=spec, dim=dim, full_dim=full_dim, count=len(ids),
                              chunks=[str(p.relative_to(out)) for p in vec_paths])
    atomic_write_json(out / MANIFEST_FILE, manifest.model_dump(mode="json"))
    return manifest


def read_export_manifest(export_dir: Union[str, Path]) -> ExportManifest:
    root = Path(export_dir)
    path = root / MANIFEST_FILE
    if not path.is_file():
        partial = "an unfinished export (rerun `moon export` with the same arguments to resume)" \
            if (root / SPEC_FILE).is_file() else "not an export directory"
        raise DataError(f"{root}: {MANIFEST_FILE} not found: {partial}")
    try:
        return ExportManifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise DataError(format_validation_error(exc, str(path))) from exc


def load_export(export_dir: Union[str, Path]) -> ExportedVectors:
    """Read a complete export: ids, float32 unit vectors, sidecar table, manifest."""
    root = Path(export_dir)
    manifest = read_export_manifest(root)
    ids: list[str] = []
    blocks = []
    for rel in manifest.chunks:
        chunk_ids, vectors, _, _ = read_chunk(root / rel)
        ids.extend(chunk_ids)
        blocks.append(vectors)
    vectors = np.concatenate(blocks)
    metadata = pq.read_table(root / SIDECAR_FILE)
    if len(ids) != manifest.count or metadata.num_rows != manifest.count:
        raise DataError(f"{root}: manifest lists {manifest.count} products but chunks hold {len(ids)} "
                        f"and the sidecar {metadata.num_rows}")
    return ExportedVectors(ids=ids, vectors=normalize_rows(vectors), metadata=metadata, manifest=manifest)
