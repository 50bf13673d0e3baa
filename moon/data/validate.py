"""`moon data validate`: check a dataset end to end and name every problem's location.

The reader (shards.Dataset) either stops at the first bad sample or skips and counts;
neither says *everything* that is wrong. This module goes one level lower (the manifest,
the tar files, each member) and keeps going, so one run lists every problem with its
shard, sample key and field:

- manifest present and parseable; every listed shard exists, has the listed size and
  sha256, and holds the listed number of samples; table counts add up;
- every sample has a JSON member that parses, with the required fields of the right
  types (checked with the same pydantic records the toolkit uses);
- every image member exists, decodes, and has the declared format; boxes lie inside
  their image;
- ids are unique, products are disjoint across splits, and every query's positive is a
  product of the same split.

Warnings (stray shard files not in the manifest, e.g. left by a killed writer; unknown
members) are reported but do not fail validation.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, Field, ValidationError
from tqdm import tqdm

from moon.data.records import (SCHEMA_VERSION, Box, DataError, ProductImage, ProductRecord, QueryRecord,
                                decode_image)
from moon.data.shards import MANIFEST, DatasetManifest, ShardInfo, iter_tar_samples

Severity = Literal["error", "warning"]
_PIL_FORMATS = {"jpg": "JPEG", "png": "PNG"}
# Stands in for images (checked member by member) when the record's other fields are validated.
_PLACEHOLDER = b"checked separately"


class Problem(BaseModel):
    """One finding, located as precisely as possible."""

    severity: Severity = "error"
    shard: Optional[str] = Field(None, description="path relative to the dataset directory")
    key: Optional[str] = Field(None, description="sample key inside the shard")
    field: Optional[str] = None
    message: str

    def where(self) -> str:
        parts = [p for p in (self.shard, self.key) if p]
        loc = ":".join(parts) or MANIFEST
        return f"{loc} field '{self.field}'" if self.field else loc

    def __str__(self) -> str:
        return f"{self.severity}: {self.where()}: {self.message}"


class ValidationReport(BaseModel):
    """What `moon data validate` prints and writes as JSON."""

    path: str
    ok: bool = True
    samples: dict[str, int] = Field(default_factory=dict, description="samples read per '<split>/<table>'")
    errors: int = 0
    warnings: int = 0
    problems: list[Problem] = Field(default_factory=list)

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)
        if problem.severity == "error":
            self.errors += 1
            self.ok = False
        else:
            self.warnings += 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_image(data: bytes, fmt: str, boxes_meta, field: str) -> list[tuple[str, str]]:
    """(field, message) problems of one image member and its boxes."""
    problems = []
    try:
        img = decode_image(data)
    except DataError as exc:
        return [(field, f"image does not decode ({exc})")]
    if img.format != _PIL_FORMATS.get(fmt):
        problems.append((field, f"declared format '{fmt}' but the bytes are {img.format}"))
    if not isinstance(boxes_meta, list):
        return problems + [(f"{field}.boxes", f"expected a list, got {type(boxes_meta).__name__}")]
    width, height = img.size
    for j, raw in enumerate(boxes_meta):
        try:
            box = Box.model_validate(raw)
        except ValidationError as exc:
            problems += [(f"{field}.boxes[{j}].{'.'.join(str(p) for p in e['loc'])}".rstrip("."), e["msg"])
                         for e in exc.errors()]
            continue
        if box.x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height:
            problems.append((f"{field}.boxes[{j}]",
                             f"box {box.xyxy} lies outside the {width}x{height} image"))
    return problems


def _image_entries(meta_images, members: dict[str, bytes], numbered: bool, base: str):
    """Check image metadata + members; return (problems, placeholder images for record validation)."""
    problems: list[tuple[str, str]] = []
    placeholders = []
    for i, im in enumerate(meta_images):
        field = f"{base}[{i}]" if numbered else base
        if not isinstance(im, dict):
            problems.append((field, "expected an object with 'format' and 'boxes'"))
            continue
        fmt = im.get("format")
        if fmt not in _PIL_FORMATS:
            problems.append((f"{field}.format", f"expected 'jpg' or 'png', got {fmt!r}"))
            continue
        name = f"img{i}.{fmt}" if numbered else f"img.{fmt}"
        if name not in members:
            problems.append((field, f"member '{name}' is missing from the sample"))
            continue
        problems += _check_image(members[name], fmt, im.get("boxes", []), field)
        placeholders.append(ProductImage(data=_PLACEHOLDER, format="png"))
    return problems, placeholders


def _record_problems(model, fields: dict) -> list[tuple[str, str]]:
    try:
        model.model_validate(fields)
    except ValidationError as exc:
        return [(".".join(str(p) for p in e["loc"]) or "<record>", e["msg"]) for e in exc.errors()]
    return []


_PRODUCT_FIELDS = ("product_id", "group_id", "title", "category", "attributes")
_QUERY_FIELDS = ("query_id", "kind", "text", "positive_id", "session_id", "timestamp")


def check_product(meta: dict, members: dict[str, bytes]) -> list[tuple[str, str]]:
    """All (field, message) problems of one product sample's parsed JSON and members."""
    images_meta = meta.get("images")
    if not isinstance(images_meta, list):
        problems = [("images", f"expected a list of {{format, boxes}}, got {type(images_meta).__name__}")]
        images = [ProductImage(data=_PLACEHOLDER, format="png")]
    else:
        problems, images = _image_entries(images_meta, members, True, "images")
        if images_meta and not images:
            images = [ProductImage(data=_PLACEHOLDER, format="png")]
    fields = {k: meta[k] for k in _PRODUCT_FIELDS if k in meta}
    return problems + _record_problems(ProductRecord, {**fields, "images": images})


def check_query(meta: dict, members: dict[str, bytes]) -> list[tuple[str, str]]:
    """All (field, message) problems of one query sample's parsed JSON and members."""
    problems: list[tuple[str, str]] = []
    image = None
    if meta.get("image") is not None:
        problems, _ = _image_entries([meta["image"]], members, False, "image")
        image = ProductImage(data=_PLACEHOLDER, format="png")
    fields = {k: meta[k] for k in _QUERY_FIELDS if k in meta}
    return problems + _record_problems(QueryRecord, {**fields, "image": image})


def _expected_members(meta: dict, table: str) -> set[str]:
    names = {"json"}
    if table == "products" and isinstance(meta.get("images"), list):
        names |= {f"img{i}.{im.get('format')}" for i, im in enumerate(meta["images"]) if isinstance(im, dict)}
    if table == "queries" and isinstance(meta.get("image"), dict):
        names.add(f"img.{meta['image'].get('format')}")
    return names


class _Validator:
    def __init__(self, root: Path, report: ValidationReport):
        self.root, self.report = root, report
        self.product_split: dict[str, str] = {}
        self.query_ids: set[str] = set()
        self.positives: list[tuple[str, str, str, str]] = []  # (split, shard, key, positive_id)

    def error(self, message: str, shard=None, key=None, field=None, severity: Severity = "error") -> None:
        self.report.add(Problem(severity=severity, shard=shard, key=key, field=field, message=message))

    def shard(self, split: str, table: str, info: ShardInfo, bar) -> int:
        """Check one shard; return the number of samples read."""
        path = self.root / info.name
        if not path.is_file():
            self.error("shard listed in the manifest is missing", shard=info.name)
            return 0
        size = path.stat().st_size
        if size != info.bytes:
            self.error(f"size {size} bytes differs from the manifest's {info.bytes}", shard=info.name)
        digest = _sha256(path)
        if digest != info.sha256:
            self.error(f"sha256 {digest[:12]}... differs from the manifest's {info.sha256[:12]}... "
                       "(the file changed after it was written)", shard=info.name)
        seen_keys: set[str] = set()
        read = 0
        try:
            for key, members in iter_tar_samples(path):
                read += 1
                bar.update(1)
                if key in seen_keys:
                    self.error("sample key appears twice (members not contiguous?)", shard=info.name, key=key)
                seen_keys.add(key)
                self.sample(split, table, info.name, key, members)
        except (tarfile.TarError, OSError, EOFError) as exc:
            self.error(f"tar file is unreadable after {read} samples ({exc})", shard=info.name)
        except ValueError as exc:
            self.error(str(exc), shard=info.name)
        if read != info.count:
            self.error(f"holds {read} samples but the manifest lists {info.count}", shard=info.name)
        return read

    def sample(self, split: str, table: str, shard: str, key: str, members: dict[str, bytes]) -> None:
        if "json" not in members:
            self.error("member 'json' (the metadata) is missing", shard=shard, key=key, field="json")
            return
        try:
            meta = json.loads(members["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.error(f"metadata is not valid JSON ({exc})", shard=shard, key=key, field="json")
            return
        if not isinstance(meta, dict):
            self.error(f"metadata must be a JSON object, got {type(meta).__name__}", shard=shard, key=key,
                       field="json")
            return
        if meta.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            self.error(f"schema_version {meta.get('schema_version')!r} is not {SCHEMA_VERSION}", shard=shard,
                       key=key, field="schema_version")
        checker = check_product if table == "products" else check_query
        for field, message in checker(meta, members):
            self.error(message, shard=shard, key=key, field=field)
        for extra in sorted(set(members) - _expected_members(meta, table)):
            self.error(f"unexpected member '{key}.{extra}'", shard=shard, key=key, severity="warning")
        self._ids(split, table, shard, key, meta)

    def _ids(self, split: str, table: str, shard: str, key: str, meta: dict) -> None:
        if table == "products":
            pid = meta.get("product_id")
            if not isinstance(pid, str):
                return
            if pid in self.product_split:
                other = self.product_split[pid]
                where = "twice in this split" if other == split else f"also in split '{other}'"
                self.error(f"product_id {pid!r} appears {where} (splits must be disjoint, ids unique)",
                           shard=shard, key=key, field="product_id")
            else:
                self.product_split[pid] = split
        else:
            qid = meta.get("query_id")
            if isinstance(qid, str):
                if qid in self.query_ids:
                    self.error(f"query_id {qid!r} appears twice", shard=shard, key=key, field="query_id")
                self.query_ids.add(qid)
            if isinstance(meta.get("positive_id"), str):
                self.positives.append((split, shard, key, meta["positive_id"]))

    def positives_exist(self) -> None:
        for split, shard, key, positive in self.positives:
            where = self.product_split.get(positive)
            if where != split:
                detail = "is not a product of any split" if where is None else f"is a product of split '{where}'"
                self.error(f"positive {positive!r} {detail}, not of '{split}'", shard=shard, key=key,
                           field="positive_id")

    def stray_shards(self, manifest: DatasetManifest) -> None:
        listed = {s.name for t in manifest.tables.values() for s in t.shards}
        for path in sorted(self.root.rglob("*.tar*")):
            rel = path.relative_to(self.root).as_posix()
            if rel not in listed:
                self.error("file is not listed in the manifest (ignored by readers; e.g. left by an "
                           "interrupted writer)", shard=rel, severity="warning")


def validate_dataset(path: Union[str, Path], show_progress: bool = True) -> ValidationReport:
    """Check everything listed in the module docstring; never stops at the first problem."""
    root = Path(path)
    report = ValidationReport(path=str(root))
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        report.add(Problem(field=None, message=f"{MANIFEST} not found: {root} is not a moon dataset"))
        return report
    try:
        manifest = DatasetManifest.model_validate_json(manifest_path.read_text())
    except (ValidationError, ValueError) as exc:
        errors = exc.errors() if isinstance(exc, ValidationError) else [{"loc": (), "msg": str(exc)}]
        for e in errors:
            report.add(Problem(field=".".join(str(p) for p in e["loc"]) or None, message=f"manifest: {e['msg']}"))
        return report
    if manifest.schema_version != SCHEMA_VERSION:
        report.add(Problem(field="schema_version",
                           message=f"manifest schema_version {manifest.schema_version} is not {SCHEMA_VERSION}"))
    validator = _Validator(root, report)
    total = sum(t.count for t in manifest.tables.values())
    # Products first, so query positives can be checked against every split's products.
    ordered = sorted(manifest.tables.items(), key=lambda kv: (kv[0].split("/")[1] != "products", kv[0]))
    with tqdm(total=total, desc="validate", unit="sample", disable=not show_progress) as bar:
        for table_key, table in ordered:
            split, _, table_name = table_key.partition("/")
            if table_name not in ("products", "queries"):
                report.add(Problem(field=f"tables.{table_key}", message="unknown table (expected products/queries)"))
                continue
            listed = sum(s.count for s in table.shards)
            if listed != table.count:
                report.add(Problem(field=f"tables.{table_key}.count",
                                   message=f"count {table.count} differs from the sum of its shards ({listed})"))
            report.samples[table_key] = sum(validator.shard(split, table_name, s, bar) for s in table.shards)
    validator.positives_exist()
    validator.stray_shards(manifest)
    return report

