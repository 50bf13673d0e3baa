"""Faster drop-in modules for the Qwen2-VL-family vision tower (same parameters, same maths).

- Attention: the stock vision attention (without flash-attention) splits the packed patch
  sequence by `cu_seqlens` and runs attention image by image in a Python loop. MOON's
  processor makes every image (and every crop) the same size, so all chunks of one length
  are viewed as one [chunks, heads, length, dim] batch: one SDPA call per distinct length.
- Patch embedding: a Conv3d whose kernel equals its stride over exactly one patch is a
  matrix product; CPU conv3d kernels are ~6x slower than the equivalent `linear`.
- Rotary positions of the patches: the stock code builds them image by image; with a few
  distinct image sizes per batch they are built once per size and repeated.

Each module adopts the original's layers (`qkv`/`proj`, the conv `proj`), so parameter
names, state dicts and LoRA target names are unchanged; `speed_up_vision` swaps them in.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from moon.model.attention_kernel import short_sequence_attention


class BatchedVisionAttention(nn.Module):
    """Drop-in replacement for the family's vision attention module (same parameters)."""

    def __init__(self, original: nn.Module, rotary_fn: Callable):
        super().__init__()
        self.qkv = original.qkv
        self.proj = original.proj
        self.num_heads = original.num_heads
        self.scaling = original.scaling
        self.config = original.config
        self.rotary_fn = rotary_fn

    def forward(self, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                position_embeddings: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                **kwargs) -> torch.Tensor:
        n = hidden_states.shape[0]
        q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        cos, sin = position_embeddings
        q, k = self.rotary_fn(q, k, cos, sin)
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        if len(set(lengths)) == 1:
            out = self._attend_equal(q, k, v, len(lengths), lengths[0])
        else:
            out = torch.empty_like(q)
            starts = cu_seqlens[:-1].tolist()
            for length in sorted(set(lengths)):
                first = torch.tensor([s for s, ln in zip(starts, lengths) if ln == length], device=q.device)
                index = first[:, None] + torch.arange(length, device=q.device)
                out[index.reshape(-1)] = self._attend(q, k, v, index)
        return self.proj(out.reshape(n, -1))

    def _attend_equal(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunks: int,
                      length: int) -> torch.Tensor:
        """All chunks have one length: a view, no gather."""
        def view(x: torch.Tensor) -> torch.Tensor:
            return x.view(chunks, length, self.num_heads, -1).transpose(1, 2)

        with short_sequence_attention(q, length):
            out = F.scaled_dot_product_attention(view(q), view(k), view(v).to(q.dtype), scale=self.scaling)
        return out.transpose(1, 2).reshape(chunks * length, self.num_heads, -1)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Attention within each row of `index` ([chunks, length] token positions)."""
        chunks, length = index.shape
        flat = index.reshape(-1)

        def gather(x: torch.Tensor) -> torch.Tensor:
            return x[flat].view(chunks, length, self.num_heads, -1).transpose(1, 2)

        with short_sequence_attention(q, length):
            out = F.scaled_dot_product_attention(gather(q), gather(k), gather(v).to(q.dtype), scale=self.scaling)
        return out.transpose(1, 2).reshape(chunks * length, self.num_heads, -1)


class LinearPatchEmbed(nn.Module):
    """Patch embedding as one matrix product over flattened patches (adopts the Conv3d)."""

    def __init__(self, original: nn.Module):
        super().__init__()
        self.proj = original.proj
        self.embed_dim = original.embed_dim

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.proj.weight
        flat = hidden_states.reshape(-1, weight[0].numel()).to(weight.dtype)
        return F.linear(flat, weight.reshape(self.embed_dim, -1), self.proj.bias)


def _grid_positions(t: int, h: int, w: int, merge: int, device: torch.device) -> torch.Tensor:
    """(row, col) of every patch of one image, in the merge-block-major order of the patches."""
    rows = torch.arange(h, device=device).view(h // merge, merge, 1, 1).expand(-1, -1, w // merge, merge)
    cols = torch.arange(w, device=device).view(1, 1, w // merge, merge).expand(h // merge, merge, -1, -1)
    grid = torch.stack([rows.transpose(1, 2).reshape(-1), cols.transpose(1, 2).reshape(-1)], dim=-1)
    return grid.repeat(t, 1)


def vision_position_ids(grid_thw: torch.Tensor, merge: int) -> torch.Tensor:
    """[num_images, 3] grids -> [patches, 2] rotary positions (the vision tower's `position_ids`)."""
    built: dict[tuple[int, int, int], torch.Tensor] = {}
    parts = []
    for t, h, w in grid_thw.tolist():
        if (t, h, w) not in built:
            built[(t, h, w)] = _grid_positions(t, h, w, merge, grid_thw.device)
        parts.append(built[(t, h, w)])
    return torch.cat(parts)


def speed_up_vision(model: nn.Module, attention_class: type[nn.Module], patch_embed_class: type[nn.Module],
                    rotary_fn: Callable) -> None:
    """Replace, in place, every stock vision attention and patch embedding of `model`."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is attention_class:
                setattr(module, name, BatchedVisionAttention(child, rotary_fn))
            elif type(child) is patch_embed_class:
                setattr(module, name, LinearPatchEmbed(child))
