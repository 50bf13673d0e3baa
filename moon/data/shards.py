"""Datasets on disk: webdataset tar shards plus one manifest, written atomically.

Layout of a dataset directory::

    DIR/manifest.json                  counts, checksums, schema version, taxonomy names
    DIR/<split>/products-00000.tar     one sample per product
    DIR/<split>/queries-00000.tar      one sample per query

A sample is a group of tar members sharing a key (a zero-padded index, because stock
webdataset splits keys at the first dot and product ids may contain dots): `<key>.json`
holds the metadata, `<key>.img0.jpg`, `<key>.img1.png`... the product images,
`<key>.img.jpg` a query image. Plain `webdataset.WebDataset(...).decode("pil")` reads the
same shards.

A shard becomes part of the dataset only once it is complete: it is written to a temporary
name, fsynced, renamed, and only then listed in the manifest (itself replaced atomically).
A writer killed half-way leaves at most a stray temporary file that no reader looks at.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moon.data.records import (
    SCHEMA_VERSION,
    Box,
    DataError,
    ProductImage,
    ProductRecord,
    QueryRecord,
    format_validation_error,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
Table = Literal["products", "queries"]
TABLES: tuple[Table, ...] = ("products", "queries")
OnError = Literal["raise", "skip"]


class ShardInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="path relative to the dataset directory")
    count: int
    sha256: str
    bytes: int


class TableManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = 0
    shards: list[ShardInfo] = Field(default_factory=list)


class DatasetManifest(BaseModel):
    """What a dataset holds; readers trust only shards listed here."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    name: str
    category_levels: list[str]
    attribute_names: list[str]
    tables: dict[str, TableManifest] = Field(default_factory=dict)
    info: dict = Field(default_factory=dict)

    def table(self, split: str, table: Table) -> TableManifest:
        return self.tables.get(f"{split}/{table}", TableManifest())

    @property
    def splits(self) -> list[str]:
        return sorted({key.split("/")[0] for key in self.tables})


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> None:
    """Write `data` so that `path` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Union[str, Path], obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def product_members(record: ProductRecord) -> dict[str, bytes]:
    """The tar members (suffix -> bytes) of one product sample."""
    members = {"json": json.dumps(record.metadata()).encode()}
    for i, image in enumerate(record.images):
        members[f"img{i}.{image.format}"] = image.data
    return members


def query_members(record: QueryRecord) -> dict[str, bytes]:
    members = {"json": json.dumps(record.metadata()).encode()}
    if record.image is not None:
        members[f"img.{record.image.format}"] = record.image.data
    return members


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


class _TableWriter:
    """Buffers samples of one table of one split and flushes full shards atomically."""

    def __init__(self, root: Path, split: str, table: Table, shard_size: int,
                 manifest: TableManifest, on_shard: Callable[[], None]):
        self.root, self.split, self.table = root, split, table
        self.shard_size = shard_size
        self.manifest = manifest
        self.on_shard = on_shard
        self.pending: list[dict[str, bytes]] = []

    def add(self, members: dict[str, bytes]) -> None:
        self.pending.append(members)
        if len(self.pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        index = len(self.manifest.shards)
        rel = f"{self.split}/{self.table}-{index:05d}.tar"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        first_key = self.manifest.count
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                with tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                    for offset, members in enumerate(self.pending):
                        key = f"{first_key + offset:09d}"
                        for suffix, data in members.items():
                            _add_member(tar, f"{key}.{suffix}", data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.manifest.shards.append(ShardInfo(name=rel, count=len(self.pending),
                                              sha256=_sha256(path), bytes=path.stat().st_size))
        self.manifest.count += len(self.pending)
        self.pending = []
        self.on_shard()


class DatasetWriter:
    """Writes products and queries of several splits into one dataset directory.

    Every completed shard is committed to the manifest immediately, so an interrupted
    writer leaves a valid (smaller) dataset; `close()` flushes the last partial shards.
    Refuses to write into a directory that already holds a dataset unless `overwrite`.
    """

    def __init__(self, out_dir: Union[str, Path], name: str, category_levels: list[str],
                 attribute_names: list[str], shard_size: int = 256, info: Optional[dict] = None,
                 overwrite: bool = False):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.root = Path(out_dir)
        if (self.root / MANIFEST).exists() and not overwrite:
            raise DataError(f"{self.root}: already holds a dataset ({MANIFEST} exists); "
                            "choose another output directory or pass overwrite")
        if overwrite and self.root.exists():
            self._remove_dataset_files()
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = DatasetManifest(name=name, category_levels=list(category_levels),
                                        attribute_names=list(attribute_names), info=info or {})
        self.shard_size = shard_size
        self._writers: dict[str, _TableWriter] = {}
        self._closed = False
        self._save_manifest()

    def _remove_dataset_files(self) -> None:
        old = self.root / MANIFEST
        if old.exists():
            listed = Dataset(self.root).manifest
            for t in listed.tables.values():
                for s in t.shards:
                    (self.root / s.name).unlink(missing_ok=True)
            old.unlink()

    def _save_manifest(self) -> None:
        atomic_write_json(self.root / MANIFEST, self.manifest.model_dump(mode="json"))

    def _writer(self, split: str, table: Table) -> _TableWriter:
        if not split or "/" in split:
            raise ValueError(f"invalid split name {split!r}")
        key = f"{split}/{table}"
        if key not in self._writers:
            tm = self.manifest.tables.setdefault(key, TableManifest())
            self._writers[key] = _TableWriter(self.root, split, table, self.shard_size, tm,
                                              self._save_manifest)
        return self._writers[key]

    def add_product(self, split: str, record: ProductRecord) -> None:
        self._writer(split, "products").add(product_members(record))

    def add_query(self, split: str, record: QueryRecord) -> None:
        self._writer(split, "queries").add(query_members(record))

    def close(self) -> DatasetManifest:
        if not self._closed:
            for writer in self._writers.values():
                writer.flush()
            self._save_manifest()
            self._closed = True
        return self.manifest

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def _images_from_meta(meta_images, members: dict[str, bytes], numbered: bool) -> list[ProductImage]:
    """Product images are members img0.jpg, img1.png...; a query image is img.jpg."""
    images = []
    for i, im in enumerate(meta_images):
        if not isinstance(im, dict):
            raise DataError(f"field 'images[{i}]': expected an object with 'format' and 'boxes'")
        fmt = im.get("format")
        name = f"img{i}.{fmt}" if numbered else f"img.{fmt}"
        if name not in members:
            raise DataError(f"field 'images[{i}]': member '{name}' missing from the sample")
        boxes = [Box.model_validate(b) for b in im.get("boxes", [])]
        images.append(ProductImage(data=members[name], format=fmt, boxes=boxes))
    return images


def decode_product(members: dict[str, bytes]) -> ProductRecord:
    """Build a ProductRecord from the members of one sample (suffix -> bytes)."""
    meta = _load_json(members)
    if not isinstance(meta.get("images"), list):
        raise DataError("field 'images': expected a list of {format, boxes}")
    images = _images_from_meta(meta["images"], members, numbered=True)
    fields = {k: meta[k] for k in ("product_id", "group_id", "title", "category", "attributes") if k in meta}
    return ProductRecord(images=images, **fields)


def decode_query(members: dict[str, bytes]) -> QueryRecord:
    meta = _load_json(members)
    image = None
    if meta.get("image") is not None:
        image = _images_from_meta([meta["image"]], members, numbered=False)[0]
    fields = {k: meta[k] for k in ("query_id", "kind", "text", "positive_id", "session_id", "timestamp") if k in meta}
    return QueryRecord(image=image, **fields)


def _load_json(members: dict[str, bytes]) -> dict:
    if "json" not in members:
        raise DataError("member 'json' (the metadata) is missing")
    try:
        meta = json.loads(members["json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"member 'json' is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DataError("member 'json' must hold a JSON object")
    version = meta.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DataError(f"field 'schema_version': {version} is not supported (expected {SCHEMA_VERSION})")
    return meta


def iter_tar_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield (key, {suffix: bytes}) per sample of a webdataset tar, in file order."""
    try:
        tar = tarfile.open(path, mode="r")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{path}: not a readable tar shard ({exc})") from exc
    with tar:
        key: Optional[str] = None
        members: dict[str, bytes] = {}
        for info in tar:
            if not info.isfile():
                continue
            base = info.name.rsplit("/", 1)[-1]
            if "." not in base:
                continue
            k, suffix = base.split(".", 1)
            if k != key and key is not None:
                yield key, members
                members = {}
            key = k
            fh = tar.extractfile(info)
            members[suffix] = fh.read() if fh is not None else b""
        if key is not None:
            yield key, members


def _worker_slice() -> tuple[int, int]:
    """(worker id, number of workers) of the current torch DataLoader worker, else (0, 1).

    Without torch already imported there can be no DataLoader worker, so data-only commands
    never pay for importing torch.
    """
    if "torch" not in sys.modules:
        return 0, 1
    from torch.utils.data import get_worker_info
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class Dataset:
    """Read access to a dataset directory written by DatasetWriter (or compatible)."""

    def __init__(self, path: Union[str, Path]):
        self.root = Path(path)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise DataError(f"{self.root}: not a moon dataset ({MANIFEST} not found); "
                            "create one with `moon data synth` or `moon data import`")
        try:
            self.manifest = DatasetManifest.model_validate_json(manifest_path.read_text())
        except ValidationError as exc:
            raise DataError(format_validation_error(exc, str(manifest_path))) from exc
        if self.manifest.schema_version != SCHEMA_VERSION:
            raise DataError(f"{manifest_path}: schema_version {self.manifest.schema_version} "
                            f"is not supported (expected {SCHEMA_VERSION})")
        self.skipped: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def splits(self) -> list[str]:
        return self.manifest.splits

    def count(self, split: str, table: Table = "products") -> int:
        return self.manifest.table(split, table).count

    def shard_paths(self, split: str, table: Table = "products") -> list[Path]:
        return [self.root / s.name for s in self.manifest.table(split, table).shards]

    def _require(self, split: str, table: Table) -> TableManifest:
        key = f"{split}/{table}"
        if key not in self.manifest.tables:
            have = ", ".join(sorted(self.manifest.tables)) or "nothing"
            raise DataError(f"{self.root}: no '{key}' in this dataset (it has: {have})")
        return self.manifest.tables[key]

    def _iter(self, split: str, table: Table, decode, rank: int, world_size: int,
              on_error: OnError) -> Iterator:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        shards = self._require(split, table).shards
        worker, num_workers = _worker_slice()
        slot, slots = rank * num_workers + worker, world_size * num_workers
        for index, shard in enumerate(shards):
            if index % slots != slot:
                continue
            path = self.root / shard.name
            if not path.is_file():
                raise DataError(f"{path}: shard listed in {MANIFEST} is missing")
            for key, members in iter_tar_samples(path):
                try:
                    yield decode(members)
                except (DataError, ValidationError) as exc:
                    where = f"{shard.name}:{key}"
                    message = (format_validation_error(exc, where) if isinstance(exc, ValidationError)
                               else f"{where}: {exc}")
                    if on_error == "raise":
                        raise DataError(message) from exc
                    counter = f"{split}/{table}"
                    self.skipped[counter] = self.skipped.get(counter, 0) + 1
                    log.warning("skipping bad sample (on_error=skip): %s", message)

    def products(self, split: str, rank: int = 0, world_size: int = 1,
                 on_error: OnError = "raise") -> Iterator[ProductRecord]:
        """Stream products; shards are divided across ranks and DataLoader workers.

        on_error="raise" stops at the first bad sample naming shard, key and field;
        "skip" logs each bad sample and counts it in `self.skipped`.
        """
        return self._iter(split, "products", decode_product, rank, world_size, on_error)

    def queries(self, split: str, rank: int = 0, world_size: int = 1,
                on_error: OnError = "raise") -> Iterator[QueryRecord]:
        return self._iter(split, "queries", decode_query, rank, world_size, on_error)

    def load_products(self, split: str, on_error: OnError = "raise") -> list[ProductRecord]:
        return list(self.products(split, on_error=on_error))

    def load_queries(self, split: str, on_error: OnError = "raise") -> list[QueryRecord]:
        return list(self.queries(split, on_error=on_error))

    def has(self, split: str, table: Table) -> bool:
        return f"{split}/{table}" in self.manifest.tables


def open_dataset(path: Union[str, Path]) -> Dataset:
    return Dataset(path)
