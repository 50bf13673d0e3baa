"""The hard-negative sidecar table: one parquet file that `moon train` reads next to a dataset.

One row per (training pair, negative): `query_id, positive_id, negative_id, policy, rank,
score`. `rank` is the negative's position among that pair's negatives (0 = first to use),
`score` the miner's cosine similarity between query and negative, `policy` which policy
proposed it. How the table was made (model, config, seed, counts) is kept in the parquet
schema metadata under `moon.negatives`, so a training run can record its provenance.
Files are written to a temporary name in the same directory and renamed when complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import pyarrow as pa
import pyarrow.parquet as pq

from moon.data.records import DataError

SCHEMA = pa.schema([
    ("query_id", pa.string()),
    ("positive_id", pa.string()),
    ("negative_id", pa.string()),
    ("policy", pa.string()),
    ("rank", pa.int32()),
    ("score", pa.float32()),
])
COLUMNS = tuple(SCHEMA.names)
METADATA_KEY = b"moon.negatives"


class NegativesWriter:
    """Streams row batches into a parquet file that appears atomically on `close()`.

    Provenance `metadata` is fixed when the writer opens (it goes into the schema), so
    rows can be streamed without ever holding the whole table in memory.
    """

    def __init__(self, path: Union[str, Path], metadata: Optional[dict] = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        self._tmp = Path(tmp)
        schema = SCHEMA.with_metadata({METADATA_KEY: json.dumps(metadata or {})})
        self._writer = pq.ParquetWriter(self._tmp, schema)
        self.rows = 0

    def write(self, columns: dict[str, list]) -> None:
        """Append rows given as {column: values}; columns are checked against the schema."""
        table = _as_table(columns, where="rows to write")
        self._writer.write_table(table.replace_schema_metadata(self._writer.schema.metadata))
        self.rows += table.num_rows

    def close(self) -> Path:
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "NegativesWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _as_table(columns: dict[str, list], where: str) -> pa.Table:
    missing = [c for c in COLUMNS if c not in columns]
    extra = [c for c in columns if c not in COLUMNS]
    if missing or extra:
        raise DataError(f"{where}: columns must be exactly {', '.join(COLUMNS)} "
                        f"(missing: {missing or 'none'}, unexpected: {extra or 'none'})")
    try:
        return pa.table({c: columns[c] for c in COLUMNS}, schema=SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{where}: values do not match the negatives schema ({exc})") from exc


def write_negatives(path: Union[str, Path], columns: dict[str, list], metadata: Optional[dict] = None) -> Path:
    """Write a whole table at once (small tables, tests); see NegativesWriter for streaming."""
    with NegativesWriter(path, metadata) as writer:
        writer.write(columns)
    return Path(path)


def read_negatives(path: Union[str, Path]) -> pa.Table:
    """Read and validate a sidecar; errors name the file and the column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: negatives table not found (create it with `moon mine`)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable parquet file ({exc})") from exc
    for field in SCHEMA:
        if field.name not in table.column_names:
            raise DataError(f"{path}: missing column '{field.name}' (expected columns: {', '.join(COLUMNS)})")
        actual = table.schema.field(field.name).type
        if not actual.equals(field.type):
            try:
                table = table.set_column(table.column_names.index(field.name), field.name,
                                         table.column(field.name).cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise DataError(f"{path}: column '{field.name}' has type {actual}, expected {field.type}") from exc
    for name in ("query_id", "positive_id", "negative_id", "policy"):
        if table.column(name).null_count:
            raise DataError(f"{path}: column '{name}' has {table.column(name).null_count} empty values")
    return table.select(list(COLUMNS))


def negatives_metadata(path: Union[str, Path]) -> dict:
    """The provenance stored by the miner (model, config, counts), or {} if none."""
    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def negatives_by_pair(table: pa.Table) -> dict[tuple[str, str], list[str]]:
    """(query_id, positive_id) -> negative ids in rank order: the lookup a trainer needs."""
    out: dict[tuple[str, str], list[tuple[int, str]]] = {}
    cols = [table.column(c).to_pylist() for c in ("query_id", "positive_id", "negative_id", "rank")]
    for q, p, n, r in zip(*cols):
        out.setdefault((q, p), []).append((r, n))
    return {pair: [n for _, n in sorted(items)] for pair, items in out.items()}

