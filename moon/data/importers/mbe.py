"""Import the MBE benchmark's own layout (JSON lines, JSON list or parquet).

Product fields of the MBE test split: `id, doc_title, doc_image, doc_industry_name,
doc_cate1_name..doc_cate4_name, doc_attributes`. Queries are either in the same rows
(query-document pairs: the row's product is the positive) or in a separate file with a
positive-id column. Column names are not fixed across releases, so every field goes
through `MbeMapping` (defaults = the names above), loadable from YAML.

Field forms accepted:
- image: a path (relative to `image_root`, default the input file's folder), base64
  (optionally a `data:` URI), raw bytes (parquet binary) or {"bytes"|"path": ...}
  (Hugging Face image struct). URLs are refused: the toolkit never downloads at import.
- attributes: a dict, a JSON object string, or "k:v;k:v" (full-width ：/； accepted).
- category: industry + cate1..cate4, empty levels dropped (paths may be shorter).

Every input row is accounted for in the import report: imported, merged (a product row
repeated identically in pair layout), or bad with its id, line and reason; queries whose
positive is not an imported product of their split are bad rows too (queries are held
until all products are read for that check; products stream straight to the shards).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tqdm import tqdm

from moon.data.importers.images import product_image
from moon.data.importers.report import REPORT_NAME, ImportReport
from moon.data.records import (
    DataError,
    ProductImage,
    ProductRecord,
    QueryKind,
    QueryRecord,
    format_validation_error,
)
from moon.data.shards import DatasetWriter


class MbeMapping(BaseModel):
    """Which input column holds which field; None = the input has no such column."""

    model_config = ConfigDict(extra="forbid")

    id: str = "id"
    title: str = "doc_title"
    image: str = "doc_image"
    industry: Optional[str] = "doc_industry_name"
    categories: list[str] = Field(default_factory=lambda: [f"doc_cate{i}_name" for i in range(1, 5)])
    category_levels: list[str] = Field(default_factory=lambda: ["industry", "cate1", "cate2", "cate3", "cate4"])
    attributes: Optional[str] = "doc_attributes"
    group_id: Optional[str] = Field(None, description="variant-group column; default: the product id")
    split: Optional[str] = Field(None, description="column with the split name; default: `default_split`")
    default_split: str = "test"
    query_id: Optional[str] = "query_id"
    query_text: Optional[str] = "query_text"
    query_image: Optional[str] = "query_image"
    positive_id: Optional[str] = Field(None, description="positive product id column; default: the row's id")
    session_id: Optional[str] = None
    timestamp: Optional[str] = None
    image_root: Optional[Path] = Field(None, description="base folder of relative image paths")

    @model_validator(mode="after")
    def _levels(self) -> "MbeMapping":
        n = len(self.categories) + (1 if self.industry else 0)
        if len(self.category_levels) != n:
            raise ValueError(f"category_levels has {len(self.category_levels)} names but the mapping gives "
                             f"{n} category columns")
        return self

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "MbeMapping":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DataError(f"{path}: cannot read the mapping ({exc})") from exc
        if not isinstance(raw, dict):
            raise DataError(f"{path}: expected a mapping of field -> column name")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise DataError(format_validation_error(exc, str(path))) from exc


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or row number, row dict) from .jsonl/.json/.parquet; unparseable lines raise DataError."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{path}: not a readable parquet file ({exc})") from exc
        n = 0
        for batch in table.iter_batches(batch_size=512):
            for row in batch.to_pylist():
                n += 1
                yield n, row
        return
    if suffix not in (".jsonl", ".json", ".ndjson"):
        raise DataError(f"{path}: unsupported extension '{suffix}' (expected .jsonl, .json or .parquet)")
    with open(path, encoding="utf-8") as fh:
        first = fh.read(1)
        while first and first.isspace():
            first = fh.read(1)
        fh.seek(0)
        if first == "[":
            try:
                rows = json.load(fh)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: invalid JSON ({exc})") from exc
            for n, row in enumerate(rows, 1):
                yield n, row
            return
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield n, {"__error__": f"invalid JSON: {exc}"}


def parse_attributes(value: Any) -> dict[str, str]:
    """Dict, JSON object string or "k:v;k:v" string -> {name: value}; DataError when neither."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k).strip(): str(v).strip() for k, v in value.items() if str(v).strip()}
    if not isinstance(value, str):
        raise DataError(f"bad attributes: expected a dict or string, got {type(value).__name__}")
    text = value.strip()
    if text.startswith("{"):
        try:
            return parse_attributes(json.loads(text))
        except json.JSONDecodeError as exc:
            raise DataError(f"bad attributes: invalid JSON object ({exc})") from exc
    out = {}
    for part in text.replace("；", ";").split(";"):
        if not part.strip():
            continue
        key, sep, val = part.replace("：", ":").partition(":")
        if not sep or not key.strip():
            raise DataError(f"bad attributes: '{part}' is not 'name:value'")
        if val.strip():
            out[key.strip()] = val.strip()
    return out


def _image_bytes(value: Any, root: Path) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return _image_bytes(str(value["path"]), root)
        raise DataError("bad image: object without 'bytes' or 'path'")
    if not isinstance(value, str) or not value.strip():
        raise DataError("missing image: the image field is empty")
    text = value.strip()
    if text.startswith(("http://", "https://")):
        raise DataError("image is a URL: download the images first (the importer never fetches)")
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    elif len(text) < 1024:
        path = Path(text) if Path(text).is_absolute() else root / text
        if path.is_file():
            return path.read_bytes()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataError(f"missing image: '{text[:80]}' is neither a file under {root} nor base64") from exc


def _text(row: dict, column: Optional[str]) -> str:
    if column is None or row.get(column) is None:
        return ""
    return str(row[column]).strip()


def _product(row: dict, m: MbeMapping, root: Path) -> ProductRecord:
    pid = _text(row, m.id)
    if not pid:
        raise DataError(f"empty id: column '{m.id}' is missing or empty")
    title = _text(row, m.title)
    if not title:
        raise DataError(f"empty title: column '{m.title}' is missing or empty")
    columns = ([m.industry] if m.industry else []) + list(m.categories)
    category = [_text(row, c) for c in columns]
    category = [c for c in category if c]
    if not category:
        raise DataError(f"empty category: none of {', '.join(columns)} has a value")
    attributes = parse_attributes(row.get(m.attributes)) if m.attributes else {}
    image = product_image(_image_bytes(row.get(m.image), root))
    try:
        return ProductRecord(product_id=pid, group_id=_text(row, m.group_id) or pid, images=[image], title=title,
                             category=category, attributes=attributes)
    except ValidationError as exc:
        raise DataError("invalid record: " + format_validation_error(exc, pid)) from exc


def _query(row: dict, m: MbeMapping, root: Path, line: int) -> Optional[QueryRecord]:
    """The row's query, or None when the row carries no query text or image."""
    text = _text(row, m.query_text) or None
    raw_image = row.get(m.query_image) if m.query_image else None
    if text is None and raw_image in (None, ""):
        return None
    image: Optional[ProductImage] = None
    if raw_image not in (None, ""):
        image = product_image(_image_bytes(raw_image, root))
    kind = QueryKind.PRODUCT if text and image else (QueryKind.TEXT if text else QueryKind.IMAGE)
    positive = _text(row, m.positive_id) if m.positive_id else _text(row, m.id)
    if not positive:
        raise DataError(f"missing positive: column '{m.positive_id or m.id}' is empty")
    timestamp = row.get(m.timestamp) if m.timestamp else None
    try:
        return QueryRecord(query_id=_text(row, m.query_id) or f"line{line}", kind=kind, text=text, image=image,
                           positive_id=positive, session_id=_text(row, m.session_id) or None,
                           timestamp=float(timestamp) if timestamp not in (None, "") else None)
    except (ValidationError, ValueError) as exc:
        detail = format_validation_error(exc, f"line {line}") if isinstance(exc, ValidationError) else str(exc)
        raise DataError(f"invalid query: {detail}") from exc


def _attribute_names(paths: list[Path], m: MbeMapping) -> list[str]:
    """A first, cheap pass: attribute names in order of first appearance (the manifest lists them)."""
    names: dict[str, None] = {}
    if not m.attributes:
        return []
    for path in paths:
        for _, row in read_rows(path):
            try:
                names.update(dict.fromkeys(parse_attributes(row.get(m.attributes))))
            except DataError:
                continue
    return list(names)


def import_mbe(source: Union[str, Path], out: Union[str, Path], mapping: Optional[MbeMapping] = None,
               queries: Optional[Union[str, Path]] = None, overwrite: bool = False, shard_size: int = 256,
               show_progress: bool = True) -> ImportReport:
    """Import MBE rows from `source` (and queries from `queries`, else from the same rows)."""
    source, out = Path(source), Path(out)
    m = mapping or MbeMapping()
    files = [source] + ([Path(queries)] if queries else [])
    for f in files:
        if not f.is_file():
            raise DataError(f"{f}: file not found")
    root = m.image_root or source.parent
    report = ImportReport(source=str(source), out=str(out))
    products: dict[str, tuple[str, str]] = {}  # id -> (split, title)
    pending: list[tuple[int, str, QueryRecord]] = []
    merged = 0
    info = {"importer": "mbe", "source": str(source), "queries": str(queries) if queries else None,
            "mapping": m.model_dump(mode="json")}
    with DatasetWriter(out, name=source.stem, category_levels=m.category_levels,
                       attribute_names=_attribute_names([source], m), shard_size=shard_size, info=info,
                       overwrite=overwrite) as writer:
        for f in files:
            is_product_file = f == source
            for line, row in tqdm(read_rows(f), desc=f"import {f.name}", unit="row", disable=not show_progress):
                report.rows += 1
                row_id = None
                if isinstance(row, dict):
                    row_id = _text(row, m.id if is_product_file else m.query_id) or None
                if not isinstance(row, dict) or "__error__" in row:
                    report.bad(row.get("__error__", "not an object") if isinstance(row, dict)
                               else f"not an object: got {type(row).__name__}", None, line)
                    continue
                split = _text(row, m.split) or m.default_split
                try:
                    if is_product_file:
                        if row_id in products:
                            if products[row_id][1] != _text(row, m.title):
                                raise DataError("conflicting duplicate id: same id, different title")
                            merged += 1
                        else:
                            record = _product(row, m, root)
                            writer.add_product(split, record)
                            products[record.product_id] = (split, record.title)
                            report.imported("products", split)
                    query = _query(row, m, root, line)
                except DataError as exc:
                    report.bad(str(exc), row_id, line)
                    continue
                if query is not None:
                    pending.append((line, split, query))
        for line, split, query in pending:
            known = products.get(query.positive_id)
            if known is None or known[0] != split:
                report.bad(f"unknown positive: {query.positive_id!r} is not an imported product of split "
                           f"'{split}'", query.query_id, line)
                continue
            writer.add_query(split, query)
            report.imported("queries", split)
    if merged:
        report.notes.append(f"{merged} repeated product rows (same id and title) merged into one product")
    report.write(out / REPORT_NAME)
    return report
