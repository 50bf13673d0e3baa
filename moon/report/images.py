"""Product thumbnails for the gallery, looked up by product id from where the bench read them.

The result file names its data (`data_path`): a fashion-catalogue folder (images/<id>.jpg)
or a moon dataset directory (shards). Thumbnails are inlined as base64 JPEG so the page
needs no files beside it; an id that cannot be found is shown as a labelled blank, and
counted, rather than breaking the page.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Optional

from PIL import Image, UnidentifiedImageError

from moon.data.records import DataError, ProductImage
from moon.data.shards import open_dataset

THUMBNAIL_PX = 112


def thumbnail_b64(img: Image.Image, size: int = THUMBNAIL_PX) -> str:
    img = img.convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class ProductImages:
    """id -> base64 thumbnail of the product's first image, from a catalogue folder or dataset."""

    def __init__(self, data_path: Optional[str], split: Optional[str]) -> None:
        self.root = Path(data_path) if data_path else None
        self.split = split
        self.missing: set[str] = set()
        self._dataset_images: Optional[dict[str, ProductImage]] = None

    def _from_folder(self, product_id: str) -> Optional[Image.Image]:
        path = self.root / "images" / f"{product_id}.jpg"
        if not path.is_file():
            return None
        try:
            with Image.open(path) as img:
                img.load()
                return img.copy()
        except (UnidentifiedImageError, OSError):
            return None

    def _from_dataset(self, product_id: str) -> Optional[Image.Image]:
        if self._dataset_images is None:
            self._dataset_images = {}
            try:
                ds = open_dataset(self.root)
                splits = ds.splits if self.split not in ds.splits else [self.split]
                for split in splits:
                    for p in ds.products(split, on_error="skip"):
                        if p.images:
                            self._dataset_images[p.product_id] = p.images[0]
            except DataError:
                pass
        image = self._dataset_images.get(product_id)
        try:
            return image.to_pil() if image is not None else None
        except DataError:
            return None

    def get(self, product_id: str) -> Optional[str]:
        img = None
        if self.root is not None and self.root.is_dir():
            img = (self._from_folder(product_id) if (self.root / "images").is_dir()
                   else self._from_dataset(product_id))
        if img is None:
            self.missing.add(product_id)
            return None
        return thumbnail_b64(img)
