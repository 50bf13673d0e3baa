"""The FAISS search behind the nearest-neighbour negatives: exact when small, IVF when large.

Inner product on L2-normalised vectors is cosine similarity. Up to `exact_max` catalogue
vectors an exact `IndexFlatIP` is both fast enough and free of recall loss. Beyond that an
IVF index with 8-bit scalar-quantised lists keeps memory at a quarter of the raw vectors
and searches only `nprobe` lists per query; its approximate scores are never used as
they are: the miner re-scores every candidate exactly from the stored embeddings, so
quantisation only changes *which* candidates are found, never the margin test. When the
installed faiss sees GPUs the index is moved to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import faiss
import numpy as np


@dataclass(frozen=True)
class IndexSpec:
    """How to index a catalogue of `n` vectors; see `choose_index`."""

    kind: str
    """'flat' or 'ivf'"""
    nlist: int = 0
    nprobe: int = 0
    train_size: int = 0
    gpu: bool = False

    def to_json(self) -> dict:
        return {"kind": self.kind, "nlist": self.nlist, "nprobe": self.nprobe,
                "train_size": self.train_size, "gpu": self.gpu}


def gpu_count() -> int:
    """GPUs visible to faiss (0 for faiss-cpu builds)."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def choose_index(n: int, exact_max: int, nlist: Optional[int], nprobe: int, use_gpu: bool) -> IndexSpec:
    """Flat up to `exact_max` vectors, else IVF with ~sqrt(n) lists trained on 40 points per list.

    faiss wants at least 39 training points per list, which caps the lists at n // 39.
    """
    gpu = use_gpu and gpu_count() > 0 and hasattr(faiss, "index_cpu_to_all_gpus")
    if n <= exact_max:
        return IndexSpec("flat", gpu=gpu)
    lists = max(1, min(nlist or int(round(math.sqrt(n))), n // 39))
    return IndexSpec("ivf", nlist=lists, nprobe=min(nprobe, lists), train_size=min(n, 40 * lists), gpu=gpu)


class VectorIndex:
    """A built FAISS index over catalogue vectors (row number = catalogue index)."""

    def __init__(self, spec: IndexSpec, index: faiss.Index):
        self.spec, self.index = spec, index

    @classmethod
    def build(cls, vectors: np.ndarray, spec: IndexSpec, seed: int = 0,
              add_batch: int = 65536) -> "VectorIndex":
        """Index `vectors` (float32 [n, d], L2-normalised); IVF training uses a seeded sample."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        if spec.kind == "flat":
            index: faiss.Index = faiss.IndexFlatIP(d)
        elif spec.kind == "ivf":
            index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, spec.nlist,
                                                  faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            sample = np.random.default_rng(seed).choice(n, size=spec.train_size, replace=False)
            index.train(vectors[np.sort(sample)])
            index.nprobe = spec.nprobe
        else:
            raise ValueError(f"unknown index kind {spec.kind!r} (expected 'flat' or 'ivf')")
        if spec.gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        for start in range(0, n, add_batch):
            index.add(vectors[start:start + add_batch])
        return cls(spec, index)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the `depth` best catalogue rows per query; ids -1 where fewer exist."""
        depth = max(1, min(depth, self.size))
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
        return scores, ids
