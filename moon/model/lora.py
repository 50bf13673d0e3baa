"""LoRA adapters (peft) on the LLM and vision tower, and merging them into plain weights.

Adapters are injected in place (`peft.inject_adapter_in_model`) rather than by wrapping the
model in a PeftModel, so the module tree, the forward path and the non-LoRA state-dict keys
stay those of the plain model. A merged state dict (W + scale * B @ A for every adapted
layer, under the plain keys) is computed without touching the live model, so training can
continue after a merged save.
"""

from __future__ import annotations

import re

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from torch import nn

from moon.model.config import LoraSettings

ADAPTER = "default"


def _target_regex(settings: LoraSettings) -> str:
    """Full-match pattern over module names of the bare HF model (language_model.*, visual.*)."""
    parts = []
    if settings.llm_targets:
        names = "|".join(re.escape(n) for n in settings.llm_targets)
        parts.append(rf"(?:.*\.)?language_model\.layers\.\d+\.(?:.*\.)?(?:{names})")
    if settings.vision_targets:
        names = "|".join(re.escape(n) for n in settings.vision_targets)
        parts.append(rf"(?:.*\.)?visual\.blocks\.\d+\.(?:.*\.)?(?:{names})")
    if not parts:
        raise ValueError("lora.enabled with empty lora.llm_targets and lora.vision_targets")
    return "|".join(parts)


def inject_lora(backbone: nn.Module, settings: LoraSettings) -> int:
    """Add LoRA adapters to the matching Linear layers; returns how many layers got one."""
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=_target_regex(settings), bias="none")
    inject_adapter_in_model(config, backbone, adapter_name=ADAPTER)
    count = sum(1 for m in backbone.modules() if isinstance(m, LoraLayer))
    if count == 0:
        raise ValueError(f"lora targets {settings.llm_targets + settings.vision_targets} matched no layer")
    return count


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoraLayer) for m in model.modules())


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with every LoRA layer folded into its base weight."""
    state = dict(model.state_dict())
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        prefix = f"{name}." if name else ""
        base = state.pop(f"{prefix}base_layer.weight")
        state[f"{prefix}weight"] = (base.float() + module.get_delta_weight(ADAPTER).float()).to(base.dtype)
        if f"{prefix}base_layer.bias" in state:
            state[f"{prefix}bias"] = state.pop(f"{prefix}base_layer.bias")
        for key in [k for k in state if k.startswith(f"{prefix}lora_")]:
            del state[key]
    return state
