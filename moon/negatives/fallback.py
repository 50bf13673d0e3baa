"""A training-free embedder for mining before any encoder is trained.

Hard-negative mining needs *some* notion of "looks similar / reads similar" on day one,
before MOON has been trained. This embedder gives one from the data alone: a colour
histogram of the pixels (image side) concatenated with a signed hashed bag of words and
character trigrams of the text (text side), each half L2-normalised, then the whole
vector. A text query only has the text half, an image query only the image half, so
they still score against the matching half of each product. Deterministic, no weights.
"""

from __future__ import annotations

import hashlib
import re
from typing import Mapping, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from moon.data.records import FULL_VIEW, BoxRole, ProductImage, ProductRecord, ProductView
from moon.model.api import OutputKind, QueryInput
from moon.model.base import as_query

MODEL_ID = "fallback-hist-bow-v1"
_TOKEN = re.compile(r"\w+", re.UNICODE)


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    """Stable (process-independent) hash of a feature to a bucket and a sign."""
    h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return h % dim, 1.0 if (h >> 63) & 1 else -1.0


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


class FallbackEmbedder:
    """Colour histogram + hashed bag of words; implements the Embedder protocol."""

    def __init__(self, bins: int = 4, text_dim: int = 192, use_crops: bool = True):
        if bins < 2 or text_dim < 8:
            raise ValueError(f"bins must be >= 2 and text_dim >= 8, got {bins}, {text_dim}")
        self.bins, self.text_dim, self.use_crops = bins, text_dim, use_crops
        self.model_id = MODEL_ID

    @property
    def embedding_dim(self) -> int:
        return self.bins ** 3 + self.text_dim

    def config_dict(self) -> Mapping[str, object]:
        return {"architecture": "fallback", "model_id": self.model_id, "bins": self.bins,
                "text_dim": self.text_dim, "use_crops": self.use_crops,
                "text_features": "words + char trigrams, signed blake2b hashing"}

    def _image_vector(self, images: Sequence[ProductImage]) -> np.ndarray:
        """Mean normalised RGB histogram over the images (over the CORE crop when stored)."""
        total = np.zeros(self.bins ** 3, dtype=np.float64)
        for image in images:
            pil = image.to_pil()
            core = image.box(BoxRole.CORE) if self.use_crops else None
            if core is not None and not core.fallback:
                pil = pil.crop(tuple(int(round(c)) for c in core.xyxy))
            pixels = (np.asarray(pil.resize((32, 32)), dtype=np.int64) * self.bins) // 256
            codes = (pixels[..., 0] * self.bins + pixels[..., 1]) * self.bins + pixels[..., 2]
            total += _normalise(np.bincount(codes.ravel(), minlength=self.bins ** 3).astype(np.float64))
        return _normalise(total)

    def _text_vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.text_dim, dtype=np.float64)
        for word in _TOKEN.findall(text.lower()):
            features = [f"w:{word}"] + [f"c:{word[i:i + 3]}" for i in range(max(len(word) - 2, 0))]
            for feature in features:
                bucket, sign = _bucket(feature, self.text_dim)
                v[bucket] += sign
        return _normalise(v)

    def _join(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        return _normalise(np.concatenate([image, text])).astype(np.float32)

    def _product_vector(self, p: ProductRecord, view: ProductView) -> np.ndarray:
        image = self._image_vector(p.images) if view.images else np.zeros(self.bins ** 3)
        parts = ([p.title] if view.title else []) + (list(p.category) if view.category else []) + (
            list(p.attributes.values()) if view.attributes else [])
        return self._join(image, self._text_vector(" ".join(parts)))

    def _query_vector(self, q: QueryInput) -> np.ndarray:
        q = as_query(q)
        image = self._image_vector([q.image]) if q.image is not None else np.zeros(self.bins ** 3)
        return self._join(image, self._text_vector(q.text or ""))

    def _encode(self, items: Sequence, fn, show_progress: bool, output: OutputKind,
                desc: str) -> Union[np.ndarray, torch.Tensor]:
        rows = [fn(x) for x in tqdm(items, desc=desc, unit="item", disable=not show_progress)]
        emb = np.stack(rows) if rows else np.zeros((0, self.embedding_dim), dtype=np.float32)
        return emb if output == "numpy" else torch.from_numpy(emb)

    def encode_products(self, products: Sequence[ProductRecord], batch_size: int = 32,
                        view: ProductView = FULL_VIEW, show_progress: bool = True,
                        output: OutputKind = "numpy") -> Union[np.ndarray, torch.Tensor]:
        """batch_size is accepted for the protocol; each product is embedded on its own."""
        return self._encode(products, lambda p: self._product_vector(p, view), show_progress, output,
                            "fallback products")

    def encode_queries(self, queries: Sequence[QueryInput], batch_size: int = 32,
                       show_progress: bool = True,
                       output: OutputKind = "numpy") -> Union[np.ndarray, torch.Tensor]:
        return self._encode(queries, self._query_vector, show_progress, output, "fallback queries")
