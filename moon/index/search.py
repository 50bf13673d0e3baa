"""Search an index directory, optionally restricted by category or attribute filters.

Filters use the metadata sidecar (row i = faiss label i). Two paths, because ANN indexes
lose recall when most candidates are filtered away (an IVF probe may hold no matching
product; an HNSW walk mostly visits excluded nodes):

- a selective filter (at most `exact_subset_limit` matches) is answered exactly: the
  matching vectors are reconstructed from the index and scored by brute force;
- a broad filter goes through FAISS with an IDSelector in the search parameters, and the
  tuned nprobe/efSearch is scaled by 1/(fraction selected) so roughly as many matching
  candidates are visited as in an unfiltered search.

Filter keys: `category` (matches any level of the category path), `category.<level>` (one
level, by name from the dataset manifest or by 0-based number), `attr.<name>` (attribute
value). Values compare case-insensitively; several keys must all match.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

import faiss
import numpy as np

from moon.index.export import normalize_rows
from moon.index.faiss_index import BuiltIndex, read_index_dir

DEFAULT_EXACT_SUBSET_LIMIT = 20_000
MAX_EF_SEARCH = 4096


@dataclass
class Hit:
    id: str
    score: float
    title: str


class IndexSearcher:
    """Query vectors in, product ids / scores / titles out."""

    def __init__(self, built: BuiltIndex, exact_subset_limit: int = DEFAULT_EXACT_SUBSET_LIMIT):
        self.index = built.index
        self.manifest = built.manifest
        self.exact_subset_limit = exact_subset_limit
        meta = built.metadata
        self.ids: list[str] = meta.column("id").to_pylist()
        self.titles: list[str] = meta.column("title").to_pylist()
        self._categories: list[list[str]] = meta.column("category").to_pylist()
        self._attributes_json: list[str] = meta.column("attributes").to_pylist()
        self._label_of = {pid: i for i, pid in enumerate(self.ids)}
        self._columns: dict[str, np.ndarray] = {}
        self._any_level: Optional[list[frozenset[str]]] = None
        self._direct_map = False

    @classmethod
    def load(cls, index_dir: Union[str, Path], exact_subset_limit: int = DEFAULT_EXACT_SUBSET_LIMIT
             ) -> "IndexSearcher":
        return cls(read_index_dir(index_dir), exact_subset_limit)

    @property
    def dim(self) -> int:
        return self.manifest.dim

    def prepare(self, queries: np.ndarray) -> np.ndarray:
        """float32 unit rows of the index width; full-width model outputs are cut to the
        Matryoshka prefix the index was exported with."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.shape[1] != self.dim:
            source = self.manifest.source
            if source is not None and source.matryoshka_dim == self.dim and q.shape[1] == source.full_dim:
                q = q[:, :self.dim]
            else:
                raise ValueError(f"query vectors have dimension {q.shape[1]}, the index expects {self.dim}")
        return normalize_rows(q)

    def _column(self, key: str) -> np.ndarray:
        """Casefolded values of one filter key per product (cached: one pass per key)."""
        if key not in self._columns:
            if key.startswith("attr."):
                name = key[len("attr."):]
                values = [json.loads(a).get(name) for a in self._attributes_json]
                if all(v is None for v in values):
                    known = sorted({k for a in self._attributes_json for k in json.loads(a)})
                    raise ValueError(f"filter '{key}': no product has attribute '{name}' "
                                     f"(attributes: {', '.join(known) or 'none'})")
            else:
                level = self._level(key[len("category."):])
                values = [c[level] if level < len(c) else None for c in self._categories]
            self._columns[key] = np.array([None if v is None else str(v).casefold() for v in values],
                                          dtype=object)
        return self._columns[key]

    def _category_sets(self) -> list[frozenset[str]]:
        if self._any_level is None:
            self._any_level = [frozenset(level.casefold() for level in c) for c in self._categories]
        return self._any_level

    def _level(self, name: str) -> int:
        levels = self.manifest.category_levels
        if name in levels:
            return levels.index(name)
        if name.isdigit():
            return int(name)
        raise ValueError(f"filter 'category.{name}': unknown level (levels: "
                         f"{', '.join(levels) or 'unnamed'}; or a 0-based number)")

    def select(self, filters: Optional[Mapping[str, str]]) -> Optional[np.ndarray]:
        """Boolean mask over labels of products matching every filter (None = no filter)."""
        if not filters:
            return None
        mask = np.ones(len(self.ids), dtype=bool)
        for key, value in filters.items():
            want = str(value).casefold()
            if key == "category":
                mask &= np.array([want in levels for levels in self._category_sets()])
            elif key.startswith("category.") or key.startswith("attr."):
                mask &= self._column(key) == want
            else:
                raise ValueError(f"unknown filter key '{key}': use category, category.<level> or attr.<name>")
        return mask

    def search_labels(self, queries: np.ndarray, k: int = 10,
                      filters: Optional[Mapping[str, str]] = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q,k], labels [Q,k]); label -1 pads when fewer than k products match."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = self.prepare(queries)
        mask = self.select(filters)
        if mask is None:
            return self.index.search(q, k)
        selected = np.flatnonzero(mask)
        if len(selected) == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if len(selected) <= self.exact_subset_limit:
            return self._exact_subset(q, k, selected)
        params, keep_alive = self._filtered_params(mask, len(selected) / len(mask))
        scores, labels = self.index.search(q, k, params=params)
        del keep_alive  # the selector reads this bitmap until the search returns
        return scores, labels

    def _reconstruct(self, labels: np.ndarray) -> np.ndarray:
        if not self._direct_map:
            ivf = faiss.try_extract_index_ivf(self.index)
            if ivf is not None:
                ivf.make_direct_map()
            self._direct_map = True
        return self.index.reconstruct_batch(np.asarray(labels, dtype=np.int64))

    def _exact_subset(self, q: np.ndarray, k: int, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vectors = self._reconstruct(selected)
        scores, local = faiss.knn(q, vectors, min(k, len(selected)), metric=faiss.METRIC_INNER_PRODUCT)
        labels = selected[local]
        if labels.shape[1] < k:
            pad = k - labels.shape[1]
            labels = np.pad(labels, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return scores, labels

    def _filtered_params(self, mask: np.ndarray, fraction: float) -> tuple[faiss.SearchParameters, tuple]:
        """Search parameters carrying an IDSelector, plus the objects it points into."""
        bitmap = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
        params = self.manifest.search_params
        if "nprobe" in params:
            nlist = faiss.extract_index_ivf(self.index).nlist
            inner = faiss.SearchParametersIVF(sel=selector, nprobe=min(nlist, math.ceil(params["nprobe"] / fraction)))
        elif "efSearch" in params:
            inner = faiss.SearchParametersHNSW(sel=selector,
                                               efSearch=min(MAX_EF_SEARCH, math.ceil(params["efSearch"] / fraction)))
        else:
            inner = faiss.SearchParameters(sel=selector)
        keep_alive = (bitmap, selector, inner)
        if isinstance(self.index, faiss.IndexPreTransform):
            return faiss.SearchParametersPreTransform(index_params=inner), keep_alive
        return inner, keep_alive

    def search(self, queries: np.ndarray, k: int = 10,
               filters: Optional[Mapping[str, str]] = None) -> list[list[Hit]]:
        """Per query, up to k hits (id, score, title), best first."""
        scores, labels = self.search_labels(queries, k, filters)
        return [[Hit(self.ids[label], float(score), self.titles[label])
                 for score, label in zip(row_s, row_l) if label >= 0]
                for row_s, row_l in zip(scores, labels)]

    def vector(self, product_id: str) -> np.ndarray:
        """The indexed vector of a product (decoded from the codes for PQ indexes)."""
        if product_id not in self._label_of:
            raise ValueError(f"product id '{product_id}' is not in this index")
        return self._reconstruct(np.array([self._label_of[product_id]]))[0]
