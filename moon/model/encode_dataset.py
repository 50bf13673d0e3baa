"""Embed one split of a dataset with any embedder and write float32 .npy + ids JSON.

Streams the split in chunks (memory holds only the embeddings), works for every embedder
the registry loads (MOON, baselines), and writes both files atomically, so a killed run
never leaves a half-written matrix that looks complete.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator, Literal, Sequence, TypeVar, Union

import numpy as np
from tqdm.auto import tqdm

from moon.data.records import FULL_VIEW, ProductView
from moon.data.shards import OnError, atomic_write_bytes, atomic_write_json, open_dataset
from moon.model.api import Embedder

TableName = Literal["products", "queries"]
T = TypeVar("T")


@dataclass
class EncodeResult:
    embeddings_path: str
    ids_path: str
    model_id: str
    dataset: str
    split: str
    table: str
    count: int
    dim: int
    skipped: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "per_second": self.per_second}


def output_paths(out: Union[str, Path]) -> tuple[Path, Path]:
    """`EMB.npy` -> (EMB.npy, EMB.ids.json); a directory -> (DIR/embeddings.npy, DIR/ids.json)."""
    out = Path(out)
    if out.suffix == ".npy":
        return out, out.with_name(out.stem + ".ids.json")
    return out / "embeddings.npy", out / "ids.json"


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(islice(items, size)):
        yield chunk


def encode_split(model: Embedder, data: Union[str, Path], split: str, out: Union[str, Path],
                 table: TableName = "products", batch_size: int = 32, view: ProductView = FULL_VIEW,
                 on_error: OnError = "raise", show_progress: bool = True) -> EncodeResult:
    """Embed every product (or query) of `split`; rows follow the dataset order."""
    dataset = open_dataset(data)
    if not dataset.has(split, table):
        raise ValueError(f"{data}: no '{split}/{table}' (splits: {', '.join(dataset.splits) or 'none'})")
    total = dataset.count(split, table)
    records = dataset.products(split, on_error=on_error) if table == "products" else \
        dataset.queries(split, on_error=on_error)
    ids: list[str] = []
    parts: list[np.ndarray] = []
    start = time.perf_counter()
    with tqdm(total=total, desc=f"encode {split}/{table}", unit="item", disable=not show_progress) as bar:
        for chunk in _chunks(iter(records), batch_size * 8):
            if table == "products":
                emb = model.encode_products(chunk, batch_size=batch_size, view=view, show_progress=False)
                ids.extend(r.product_id for r in chunk)
            else:
                emb = model.encode_queries(chunk, batch_size=batch_size, show_progress=False)
                ids.extend(r.query_id for r in chunk)
            parts.append(np.asarray(emb, dtype=np.float32))
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    dim = parts[0].shape[1] if parts else 0
    matrix = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    emb_path, ids_path = output_paths(out)
    buf = io.BytesIO()
    np.save(buf, matrix)
    atomic_write_bytes(emb_path, buf.getvalue())
    result = EncodeResult(embeddings_path=str(emb_path), ids_path=str(ids_path), model_id=model.model_id,
                          dataset=str(data), split=split, table=table, count=len(ids), dim=int(dim),
                          skipped=total - len(ids), seconds=seconds)
    atomic_write_json(ids_path, {**result.to_json(), "ids": ids})
    return result


def load_encoded(out: Union[str, Path]) -> tuple[np.ndarray, Sequence[str]]:
    """Read back what `encode_split` wrote: (embeddings [N, D] float32, ids)."""
    emb_path, ids_path = output_paths(out)
    matrix = np.load(emb_path, allow_pickle=False)
    ids = json.loads(ids_path.read_text())["ids"]
    if len(ids) != matrix.shape[0]:
        raise ValueError(f"{ids_path}: {len(ids)} ids for {matrix.shape[0]} embedding rows")
    return matrix, ids
