"""Import the fashion-catalogue layout: `styles.csv` + `images/<id>.jpg`.

Mapping (one place, so the benchmark and training agree):
- category path = [masterCategory, subCategory, articleType] (all three required);
- attributes = the non-empty ones of baseColour, gender, season, usage, year;
- title = productDisplayName; group_id = product id (the layout has no variant groups);
- split = `fashion_split(id)`: test when int(sha256(str(id)).hexdigest(), 16) % 10 == 1,
  train otherwise. It hashes the id, not a row position, so it holds for any folder of
  this layout, including one with other ids.

Training queries (train split only, so `moon train` can run on the import): per product,
the title as a text query, the attribute string "{gender} {baseColour} {articleType}"
(lower case, the t2p query form) as a text query, and an image query made by the seeded
augmentation in importers/augment.py.

Bad rows (missing or corrupt image, empty title/id/category level, wrong field count,
duplicate id) are counted and listed with id and line in the import report; a file
missing required columns is refused as a whole with the missing names.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Iterator, Optional, Union

from pydantic import ValidationError
from tqdm import tqdm

from moon.data.importers.augment import augmented_query_image
from moon.data.importers.images import product_image
from moon.data.importers.report import REPORT_NAME, ImportReport
from moon.data.records import (DataError, ProductImage, ProductRecord, QueryKind, QueryRecord, decode_image,
                                format_validation_error)
from moon.data.shards import DatasetWriter

CATEGORY_COLUMNS = ["masterCategory", "subCategory", "articleType"]
ATTRIBUTE_COLUMNS = ["baseColour", "gender", "season", "usage", "year"]
REQUIRED_COLUMNS = ["id", *CATEGORY_COLUMNS, "productDisplayName"]
KNOWN_COLUMNS = ["id", "gender", *CATEGORY_COLUMNS, "baseColour", "season", "year", "usage", "productDisplayName"]
STYLES = "styles.csv"
IMAGES = "images"


def fashion_split(product_id: Union[int, str]) -> str:
    """The fashion catalogue's split rule: 'test' for hash % 10 == 1, else 'train'."""
    digest = hashlib.sha256(str(product_id).strip().encode()).hexdigest()
    return "test" if int(digest, 16) % 10 == 1 else "train"


def attribute_query(attributes: dict[str, str], article_type: str) -> str:
    """The t2p query string "{gender} {baseColour} {articleType}" in lower case (empty parts dropped)."""
    parts = [attributes.get("gender", ""), attributes.get("baseColour", ""), article_type]
    return " ".join(p for p in parts if p).lower()


def read_styles(source: Path, report: ImportReport,
                limit: Optional[int] = None) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line, row) for rows with the header's field count; count every row, report the bad."""
    path = source / STYLES
    if not path.is_file():
        raise DataError(f"{path}: not found (expected the fashion-catalogue layout: {STYLES} + {IMAGES}/<id>.jpg)")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected a header with columns {', '.join(KNOWN_COLUMNS)}")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing required column(s) {', '.join(missing)} "
                            f"(found {', '.join(header)})")
        unknown = [c for c in header if c not in KNOWN_COLUMNS]
        if unknown:
            report.notes.append(f"{STYLES}: ignored unknown column(s) {', '.join(unknown)}")
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if limit is not None and report.rows >= limit:
                return
            report.rows += 1
            row_id = row[0].strip() if header[0] == "id" else None
            if len(row) < len(header):
                report.bad(f"missing columns: row has {len(row)} fields, header has {len(header)} "
                           f"(missing {', '.join(header[len(row):])})", row_id, line)
                continue
            if len(row) > len(header):
                report.bad(f"unknown columns: row has {len(row)} fields, header has {len(header)} "
                           "(unquoted comma in a title?)", row_id, line)
                continue
            yield line, {h: cell.strip() for h, cell in zip(header, row)}


def product_from_row(source: Path, row: dict[str, str]) -> ProductRecord:
    """One styles.csv row -> a ProductRecord; DataError names what is wrong with the row.

    Public because the fashion benchmark reads a catalogue folder with exactly this mapping.
    """
    pid = row["id"]
    if not pid:
        raise DataError("empty id")
    if not row["productDisplayName"]:
        raise DataError("empty title: productDisplayName is empty")
    for level in CATEGORY_COLUMNS:
        if not row[level]:
            raise DataError(f"empty category: {level} is empty")
    image_path = source / IMAGES / f"{pid}.jpg"
    if not image_path.is_file():
        raise DataError(f"missing image: {IMAGES}/{pid}.jpg not found")
    image = product_image(image_path.read_bytes())
    attributes = {c: row[c] for c in ATTRIBUTE_COLUMNS if row.get(c)}
    try:
        return ProductRecord(product_id=pid, group_id=pid, images=[image], title=row["productDisplayName"],
                             category=[row[c] for c in CATEGORY_COLUMNS], attributes=attributes)
    except ValidationError as exc:
        raise DataError("invalid record: " + format_validation_error(exc, pid)) from exc


def training_queries(record: ProductRecord, seed: int) -> list[QueryRecord]:
    """Two text queries and one augmented image query with this product as the positive."""
    pid = record.product_id
    query_img = augmented_query_image(decode_image(record.images[0].data), seed, pid)
    image = ProductImage.from_pil(query_img, "jpg", quality=90)
    return [
        QueryRecord(query_id=f"{pid}-title", kind=QueryKind.TEXT, text=record.title, positive_id=pid),
        QueryRecord(query_id=f"{pid}-attr", kind=QueryKind.TEXT,
                    text=attribute_query(record.attributes, record.category[-1]), positive_id=pid),
        QueryRecord(query_id=f"{pid}-image", kind=QueryKind.IMAGE, image=image, positive_id=pid),
    ]


def import_fashion(source: Union[str, Path], out: Union[str, Path], seed: int = 0, limit: Optional[int] = None,
                   overwrite: bool = False, shard_size: int = 256, show_progress: bool = True) -> ImportReport:
    """Import a fashion-catalogue folder into a dataset at `out`; returns (and writes) the report.

    `limit` imports only the first N data rows (quick looks and tests).
    """
    source, out = Path(source), Path(out)
    report = ImportReport(source=str(source), out=str(out))
    rows = list(read_styles(source, report, limit))
    seen: set[str] = set()
    info = {"importer": "fashion", "source": str(source), "seed": seed,
            "split_rule": "test if int(sha256(str(id)).hexdigest(), 16) % 10 == 1 else train"}
    with DatasetWriter(out, name=source.name or "fashion", category_levels=CATEGORY_COLUMNS,
                       attribute_names=ATTRIBUTE_COLUMNS, shard_size=shard_size, info=info,
                       overwrite=overwrite) as writer:
        for line, row in tqdm(rows, desc="import fashion", unit="row", disable=not show_progress):
            pid = row["id"]
            if pid and pid in seen:
                report.bad("duplicate id: already imported from an earlier row", pid, line)
                continue
            try:
                record = product_from_row(source, row)
            except DataError as exc:
                report.bad(str(exc), pid or None, line)
                continue
            seen.add(pid)
            split = fashion_split(pid)
            writer.add_product(split, record)
            report.imported("products", split)
            if split == "train":
                for query in training_queries(record, seed):
                    writer.add_query(split, query)
                    report.imported("queries", split)
    report.write(out / REPORT_NAME)
    return report
