"""The config hash that ties exports, indexes and benchmark results to one model config.

Every artefact derived from a model (export shards, FAISS index, RESULTS.json) records this
hash so that vectors of different models are never mixed and a score can be traced back to
the exact configuration that produced it. Defined once here so all stages agree on it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping

from moon.model.api import Embedder


def canonical_json(obj: Mapping[str, object]) -> str:
    """Key-sorted, whitespace-free JSON: equal configs give byte-equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(embedder: Embedder) -> str:
    """sha256 hex digest of the canonical JSON of `embedder.config_dict()`."""
    return hashlib.sha256(canonical_json(dict(embedder.config_dict())).encode("utf-8")).hexdigest()
