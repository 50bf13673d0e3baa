"""Typed records for products and queries: the one place the data schema lives.

Every stage (generator, importers, shards, model inputs, training, benchmark) exchanges
these objects, so a field is defined, validated and documented exactly once. Images are
kept as their encoded bytes (JPEG/PNG) so that a round trip through shards is lossless
and decoding happens only where pixels are needed.
"""

from __future__ import annotations

import io
from enum import Enum
from typing import Literal, Optional

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1

ImageFormat = Literal["jpg", "png"]


class DataError(ValueError):
    """A problem with user data, named by where it is (file, sample, field)."""


# Every way a decoder can reject bytes. ImportError is here because ultralytics, once
# imported, patches PIL.Image.open to import an optional HEIF plugin on unidentified input.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError,
                  Image.DecompressionBombError)


def decode_image(data: bytes) -> Image.Image:
    """Fully decode image bytes (truncated files fail here, not later in training).

    Raises DataError with the decoder's reason; callers add which file or field it was."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except _DECODE_ERRORS as exc:
        raise DataError(f"{type(exc).__name__}: {exc}") from exc
    return img


class BoxRole(str, Enum):
    """Why a box is stored: the ground truth of a generator, or the chosen core region."""

    TRUTH = "truth"
    CORE = "core"


class Box(BaseModel):
    """An axis-aligned box in pixel coordinates of its image, with provenance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x0: float
    y0: float
    x1: float
    y1: float
    role: BoxRole = BoxRole.CORE
    source: str = Field(min_length=1, description="who made it: 'synth', 'import', 'yolo:<id>'")
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    fallback: bool = Field(default=False, description="True when the whole image was used")

    @model_validator(mode="after")
    def _ordered(self) -> "Box":
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise ValueError(f"box must have x1>x0 and y1>y0, got ({self.x0},{self.y0},{self.x1},{self.y1})")
        return self

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


class ProductImage(BaseModel):
    """One encoded image of a product plus the boxes known for it."""

    model_config = ConfigDict(extra="forbid")

    data: bytes = Field(repr=False)
    format: ImageFormat = "jpg"
    boxes: list[Box] = Field(default_factory=list)

    def to_pil(self) -> Image.Image:
        """Decode to RGB; raises DataError (not a PIL internal error) on corrupt bytes."""
        try:
            img = decode_image(self.data)
        except DataError as exc:
            raise DataError(f"image is not a readable {self.format.upper()} ({exc})") from exc
        return img.convert("RGB")

    def box(self, role: BoxRole) -> Optional[Box]:
        """The most confident box of a role, or None."""
        boxes = [b for b in self.boxes if b.role == role]
        return max(boxes, key=lambda b: b.confidence) if boxes else None

    @classmethod
    def from_pil(cls, img: Image.Image, format: ImageFormat = "jpg", quality: int = 90,
                 boxes: Optional[list[Box]] = None) -> "ProductImage":
        buf = io.BytesIO()
        if format == "jpg":
            img.convert("RGB").save(buf, format="JPEG", quality=quality)
        else:
            img.save(buf, format="PNG")
        return cls(data=buf.getvalue(), format=format, boxes=boxes or [])


class ProductRecord(BaseModel):
    """A product of the catalogue: what the encoder embeds and retrieval returns.

    `group_id` ties variants (SKUs of one SPU) together: products sharing it are never
    used as each other's negatives.
    """

    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1)
    group_id: str = Field(min_length=1)
    images: list[ProductImage] = Field(min_length=1)
    title: str
    category: list[str] = Field(min_length=1, description="hierarchy, top level first")
    attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("title")
    @classmethod
    def _title_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("title is empty")
        return v

    @field_validator("category")
    @classmethod
    def _levels_not_empty(cls, v: list[str]) -> list[str]:
        if any(not level.strip() for level in v):
            raise ValueError("category levels must be non-empty strings")
        return v

    def metadata(self) -> dict:
        """JSON-ready metadata without image bytes (images are stored as separate members)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "product_id": self.product_id,
            "group_id": self.group_id,
            "title": self.title,
            "category": list(self.category),
            "attributes": dict(self.attributes),
            "images": [
                {"format": im.format, "boxes": [b.model_dump(mode="json") for b in im.boxes]}
                for im in self.images
            ],
        }


class QueryKind(str, Enum):
    """MOON's three query kinds: text, image, and product (image + text)."""

    TEXT = "text"
    IMAGE = "image"
    PRODUCT = "product"


class QueryRecord(BaseModel):
    """A query from the behaviour log with the product that was purchased after it."""

    model_config = ConfigDict(extra="forbid")

    query_id: str = Field(min_length=1)
    kind: QueryKind
    text: Optional[str] = None
    image: Optional[ProductImage] = None
    positive_id: str = Field(min_length=1)
    session_id: Optional[str] = None
    timestamp: Optional[float] = None

    @model_validator(mode="after")
    def _inputs_match_kind(self) -> "QueryRecord":
        has_text = self.text is not None and bool(self.text.strip())
        has_image = self.image is not None
        need = {QueryKind.TEXT: (True, False), QueryKind.IMAGE: (False, True),
                QueryKind.PRODUCT: (True, True)}[self.kind]
        if need[0] and not has_text:
            raise ValueError(f"{self.kind.value} query needs non-empty text")
        if need[1] and not has_image:
            raise ValueError(f"{self.kind.value} query needs an image")
        if self.kind == QueryKind.TEXT and has_image:
            raise ValueError("text query must not carry an image")
        if self.kind == QueryKind.IMAGE and has_text:
            raise ValueError("image query must not carry text")
        return self

    def metadata(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "query_id": self.query_id,
            "kind": self.kind.value,
            "text": self.text,
            "image": None if self.image is None else {
                "format": self.image.format,
                "boxes": [b.model_dump(mode="json") for b in self.image.boxes]},
            "positive_id": self.positive_id,
            "session_id": self.session_id,
            "timestamp": self.timestamp,
        }


class ProductView(BaseModel):
    """Which parts of a product go into its embedding.

    The benchmark needs several views of one product (image only for t2i targets,
    image + title for zero-shot classification, everything for product targets).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: bool = True
    crops: bool = True
    title: bool = True
    category: bool = True
    attributes: bool = True

    @model_validator(mode="after")
    def _something(self) -> "ProductView":
        if not (self.images or self.title or self.category or self.attributes):
            raise ValueError("a product view must include at least images or some text")
        return self


FULL_VIEW = ProductView()
IMAGE_VIEW = ProductView(title=False, category=False, attributes=False)
IMAGE_TITLE_VIEW = ProductView(category=False, attributes=False)


def format_validation_error(exc: Exception, where: str) -> str:
    """Turn a pydantic ValidationError into one line per field, prefixed by `where`."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return f"{where}: {exc}"
    lines = []
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<record>"
        lines.append(f"{where}: field '{loc}': {err.get('msg')}")
    return "\n".join(lines)
