"""Reading user images for import: verify they decode, keep the original bytes when possible.

JPEG and PNG bytes are stored unchanged (lossless, and no re-encoding cost); any other
format PIL can read is re-encoded once as JPEG. A file that does not decode raises
DataError, which importers turn into a reported bad row.
"""

from __future__ import annotations

from moon.data.records import DataError, ProductImage, decode_image

_KEEP = {"JPEG": "jpg", "PNG": "png"}


def product_image(data: bytes) -> ProductImage:
    """A ProductImage from raw file bytes, re-encoding only formats the shards do not store."""
    try:
        img = decode_image(data)
    except DataError as exc:
        raise DataError(f"corrupt image: {exc}") from exc
    fmt = _KEEP.get(img.format or "")
    if fmt is not None:
        return ProductImage(data=data, format=fmt)
    return ProductImage.from_pil(img.convert("RGB"), "jpg", quality=95)
