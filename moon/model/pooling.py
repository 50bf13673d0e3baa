"""From last hidden states to one vector per item.

`mean` (MOON): average over every non-pad token (image, crop and text tokens alike);
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


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: Pooling) -> torch.Tensor:
    """[B, T, H] hidden states, [B, T] mask (1 = token) -> [B, H] in float32.

    Right padding is assumed for `last` (the processor always pads on the right).
    """
    mask = attention_mask.to(hidden.device)
    if mode == "last":
        last = mask.long().sum(dim=1) - 1
        if bool((last < 0).any()):
            raise ValueError("an item has no tokens")
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
    weights = mask.to(torch.float32).unsqueeze(-1)
    total = (hidden.float() * weights).sum(dim=1)
    return total / weights.sum(dim=1).clamp_min(1.0)


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
