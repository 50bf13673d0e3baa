"""Embedding head: optional linear projection, L2 normalisation, Matryoshka prefixes.

Matryoshka training (MOON Embedding) makes the first d coordinates a usable embedding on
their own; the head returns each configured prefix re-normalised so a loss can be applied
per size and an index can store short vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moon.model.config import ProjectionConfig


class EmbeddingHead(nn.Module):
    def __init__(self, hidden_size: int, config: ProjectionConfig):
        super().__init__()
        self.proj = nn.Linear(hidden_size, config.dim, bias=False) if config.dim else None
        self.dim = config.dim or hidden_size
        dims = list(config.matryoshka_dims)
        if dims != sorted(set(dims)) or any(d <= 0 or d > self.dim for d in dims):
            raise ValueError(f"projection.matryoshka_dims {dims} must be increasing sizes in 1..{self.dim}")
        self.matryoshka_dims = dims

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """[B, H] float32 -> ([B, D] unit vectors, {d: [B, d] unit vectors})."""
        x = pooled if self.proj is None else self.proj(pooled.to(self.proj.weight.dtype)).float()
        prefixes = {d: F.normalize(x[:, :d], dim=-1) for d in self.matryoshka_dims if d < self.dim}
        full = F.normalize(x, dim=-1)
        if self.dim in self.matryoshka_dims:
            prefixes[self.dim] = full
        return full, prefixes
