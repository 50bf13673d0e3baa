"""From last hidden states to one vector per item.

`mean` (MOON): average over every non-pad token (image, crop and text tokens alike);
`modality-mean`: average the image/crop tokens and the text tokens separately, then mix the
two means with a fixed weight (`pooling_image_share`, default half each), so the image's
weight no longer grows with its token count (a real Qwen2-VL sees hundreds of patches per
photo next to a 20-token title). On moon-tiny's fashion recipe (issue #9 table 8) share 0.5
raised i2p and lowered zero-shot cls; share 0.25 raised cls but lost usage / season accuracy,
so that recipe keeps `mean` with fewer image tokens;
`last`: the hidden state of the last non-pad token (the closing `<|im_end|>`), the usual
choice for causal LLM embedders; `bidirectional-mean` (MOON Embedding): the LLM attends in
both directions, then mean pooling. The attention switch lives here too so that everything
that depends on the pooling mode is in one module.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.masking_utils import create_bidirectional_mask

from moon.model.config import Pooling
from moon.model.segments import Segment


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, segment_ids: torch.Tensor,
         mode: Pooling, image_share: float = 0.5) -> torch.Tensor:
    """[B, T, H] hidden states, [B, T] mask (1 = token), [B, T] segment ids -> [B, H] in float32.

    `image_share` is the image side's weight under `modality-mean` (the text side gets the
    rest; an item with one side only is that side's mean). Right padding is assumed for
    `last` (the processor always pads on the right).
    """
    mask = attention_mask.to(hidden.device)
    if mode == "last":
        last = mask.long().sum(dim=1) - 1
        if bool((last < 0).any()):
            raise ValueError("an item has no tokens")
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
    if mode != "modality-mean":
        return _masked_mean(hidden, mask.bool())
    segments = segment_ids.to(hidden.device)
    visual = mask.bool() & ((segments == Segment.IMAGE) | (segments == Segment.CROP))
    text = mask.bool() & ~visual
    means = torch.stack([_masked_mean(hidden, visual), _masked_mean(hidden, text)])
    shares = torch.tensor([image_share, 1.0 - image_share], device=hidden.device).view(2, 1, 1)
    present = torch.stack([visual.any(dim=1), text.any(dim=1)]).to(torch.float32).unsqueeze(-1) * shares
    return (means * present).sum(dim=0) / present.sum(dim=0).clamp_min(1e-12)


def _masked_mean(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    weights = keep.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def set_bidirectional(attention_modules: list[nn.Module], bidirectional: bool) -> None:
    """Attention kernels that read `module.is_causal` (sdpa, eager) stop masking the future."""
    for module in attention_modules:
        module.is_causal = not bidirectional


def language_mask(mode: Pooling, text_config: PretrainedConfig, inputs_embeds: torch.Tensor,
                  attention_mask: torch.Tensor) -> Union[torch.Tensor, dict]:
    """The mask argument for the language model: the 2-D padding mask (the model adds the
    causal part), or for bidirectional pooling a prepared padding-only mask per layer type."""
    if mode != "bidirectional-mean":
        return attention_mask
    mask = create_bidirectional_mask(config=text_config, inputs_embeds=inputs_embeds,
                                     attention_mask=attention_mask)
    return {layer_type: mask for layer_type in set(text_config.layer_types)}
