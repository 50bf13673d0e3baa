"""3-D M-RoPE position ids of the Qwen2-VL family, computed for a whole batch at once.

The HF model derives them in a Python loop over samples and token groups on every forward;
computing them once in the processor with a handful of tensor ops is faster, lets the model
run the language model directly (bidirectional masks, no cached `rope_deltas`), and is
checked against `get_rope_index` in the tests. Rule: text tokens advance the position by 1;
an image of h x w merged tokens starts at the current position p, its token (r, c) gets
(t, h, w) = (p, p + r, p + c), and the text after it continues at p + max(h, w).
"""

from __future__ import annotations

import torch


def mrope_position_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int,
                       image_grid_hw: torch.Tensor) -> torch.Tensor:
    """[B, T] ids + mask, [num_images, 2] merged grid (h, w) in token order -> [B, 3, T] long.

    Padding positions are 0, as in the HF implementation.
    """
    valid = attention_mask.bool()
    is_image = (input_ids == image_token_id) & valid
    advance = (valid & ~is_image).long()
    positions = None
    if image_grid_hw.numel():
        h, w = image_grid_hw[:, 0].long(), image_grid_hw[:, 1].long()
        sizes = h * w
        total = int(sizes.sum())
        coords = is_image.nonzero()
        if coords.shape[0] != total:
            raise ValueError(f"{coords.shape[0]} image tokens in the text but the grids describe {total}")
        ends = torch.cumsum(sizes, 0) - 1
        advance[coords[ends, 0], coords[ends, 1]] = torch.maximum(h, w)
        local = torch.arange(total, device=input_ids.device) - torch.repeat_interleave(ends + 1 - sizes, sizes)
        width = torch.repeat_interleave(w, sizes)
        positions = (coords, local // width, local % width)
    start = torch.cumsum(advance, dim=1) - advance
    ids = start.unsqueeze(1).repeat(1, 3, 1)
    if positions is not None:
        coords, rows, cols = positions
        ids[coords[:, 0], 1, coords[:, 1]] += rows
        ids[coords[:, 0], 2, coords[:, 1]] += cols
    return ids.masked_fill(~valid.unsqueeze(1), 0)
