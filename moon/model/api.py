"""The contract every embedder in the toolkit honours (MOON encoder and baselines).

Training, export, mining and the benchmark only talk to this interface, so a baseline
(open_clip dual encoder, MiniLM text encoder) runs through exactly the same code as MOON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Optional, Protocol, Sequence, Union, runtime_checkable

import numpy as np
import torch

from moon.data.records import FULL_VIEW, ProductRecord, ProductView, QueryRecord

QueryInput = Union[QueryRecord, str]
"""A query to embed: a full record, or a bare string (treated as a text query)."""

OutputKind = Literal["numpy", "torch"]


class UnsupportedInputError(ValueError):
    """The embedder cannot embed this kind of input (e.g. an image for a text-only model).

    Raised instead of silently embedding nothing, so the benchmark can report the task as
    not applicable ("n/a") for that model rather than scoring garbage.
    """


@dataclass
class EmbeddingOutput:
    """What a trainable embedder's forward returns.

    `embeddings` are L2-normalised float32 vectors of the full dimension; `matryoshka`
    holds the re-normalised prefixes for each configured Matryoshka dimension;
    `aux_loss` carries MoE balance/z losses already weighted by the model config
    (None when the model has none); `stats` holds detached tensors worth logging
    (e.g. per-expert token counts).
    """

    embeddings: torch.Tensor
    aux_loss: Optional[torch.Tensor] = None
    matryoshka: dict[int, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


@runtime_checkable
class Embedder(Protocol):
    """Anything the benchmark, exporter and miner can score or index."""

    model_id: str

    def encode_products(self, products: Sequence[ProductRecord], batch_size: int = 32,
                        view: ProductView = FULL_VIEW, show_progress: bool = True,
                        output: OutputKind = "numpy") -> Union[np.ndarray, torch.Tensor]:
        """Return float32 L2-normalised embeddings, one row per product, in input order."""
        ...

    def encode_queries(self, queries: Sequence[QueryInput], batch_size: int = 32,
                       show_progress: bool = True,
                       output: OutputKind = "numpy") -> Union[np.ndarray, torch.Tensor]:
        """Return float32 L2-normalised embeddings, one row per query, in input order."""
        ...

    def config_dict(self) -> Mapping[str, object]:
        """A JSON-ready description of the model, hashed into result and export manifests."""
        ...
