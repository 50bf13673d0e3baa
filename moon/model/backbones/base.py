"""What MoonModel needs from an MLLM family, behind one small adapter class.

MoonModel never calls the HF model's `forward` (which would recompute M-RoPE positions in a
Python loop, cache `rope_deltas` and force a causal mask): it asks the adapter for the
vision features and runs the language model on the merged embeddings. A family is then
a handful of facts (config class, model class, how to build a config from MOON sizes, where
the decoder layers are); Qwen3-VL, whose language model also takes deepstack visual
features, only needs to override `encode_images`/`run_language_model`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Union

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.initialization import no_init_weights

from moon.model.config import BackboneConfig
from moon.model.images import PatchGeometry
from moon.model.vision_fast import speed_up_vision, vision_position_ids


@dataclass(frozen=True)
class SpecialTokenIds:
    """Token ids the backbone config must agree with the tokenizer on."""

    pad: int
    im_end: int
    vision_start: int
    vision_end: int
    image: int
    video: int


@dataclass
class VisionFeatures:
    """Merged vision tokens in text order, plus family-specific extras (e.g. deepstack)."""

    embeds: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


class BackboneAdapter:
    """One MLLM family: build/load the HF model and run it as MoonModel needs."""

    family: ClassVar[str]
    hf_model_types: ClassVar[tuple[str, ...]]
    config_class: ClassVar[type[PretrainedConfig]]
    model_class: ClassVar[type[PreTrainedModel]]
    generation_class: ClassVar[type[PreTrainedModel]]
    vision_attention_class: ClassVar[type[nn.Module]]
    patch_embed_class: ClassVar[type[nn.Module]]
    rotary_fn: ClassVar[Callable]
    vision_mlp_output: ClassVar[str]

    # ---- configs ---------------------------------------------------------------------------

    def vision_config(self, backbone: BackboneConfig, text_hidden: int) -> dict:
        raise NotImplementedError

    def build_hf_config(self, backbone: BackboneConfig, tokens: SpecialTokenIds, vocab_size: int) -> PretrainedConfig:
        """An HF config for a from-scratch backbone with MOON's sizes and the tokenizer's ids."""
        t = backbone.text
        text = dict(vocab_size=vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                    num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads,
                    num_key_value_heads=t.num_kv_heads, rms_norm_eps=t.rms_norm_eps,
                    max_position_embeddings=t.max_position_embeddings, use_cache=False,
                    bos_token_id=None, eos_token_id=tokens.im_end, pad_token_id=tokens.pad,
                    rope_parameters={"rope_type": "default", "rope_theta": t.rope_theta,
                                     "mrope_section": t.rope_sections()})
        return self.config_class(text_config=text, vision_config=self.vision_config(backbone, t.hidden_size),
                                 image_token_id=tokens.image, video_token_id=tokens.video,
                                 vision_start_token_id=tokens.vision_start, vision_end_token_id=tokens.vision_end)

    def config_from_dict(self, data: dict) -> PretrainedConfig:
        return self.config_class.from_dict(data)

    def check_tokens(self, hf_config: PretrainedConfig, tokens: SpecialTokenIds, where: str) -> None:
        expected = {"image_token_id": tokens.image, "vision_start_token_id": tokens.vision_start,
                    "vision_end_token_id": tokens.vision_end}
        for key, value in expected.items():
            if getattr(hf_config, key) != value:
                raise ValueError(f"{where}: config {key}={getattr(hf_config, key)} but the tokenizer says {value}")

    def geometry(self, hf_config: PretrainedConfig) -> PatchGeometry:
        v = hf_config.vision_config
        return PatchGeometry(patch_size=v.patch_size, merge_size=v.spatial_merge_size,
                             temporal_patch_size=v.temporal_patch_size)

    # ---- building and loading --------------------------------------------------------------

    def build(self, hf_config: PretrainedConfig, attn_implementation: str, init_weights: bool) -> PreTrainedModel:
        """The bare HF model (vision tower + language model, no LM head)."""
        if init_weights:
            model = self.model_class._from_config(hf_config, attn_implementation=attn_implementation)
        else:
            with no_init_weights():
                model = self.model_class._from_config(hf_config, attn_implementation=attn_implementation)
        return self.prepare(model)

    def load_checkpoint(self, path: Union[str, Path], attn_implementation: str,
                        dtype: torch.dtype) -> PreTrainedModel:
        """Weights of a local HF checkpoint (any head), returned as the bare model."""
        full = self.generation_class.from_pretrained(str(path), local_files_only=True, dtype=dtype,
                                                     attn_implementation=attn_implementation)
        model = full.model
        model.config.text_config.use_cache = False
        return self.prepare(model)

    def prepare(self, model: PreTrainedModel) -> PreTrainedModel:
        """Swap in the faster vision modules (same parameters, same state-dict keys)."""
        speed_up_vision(model, self.vision_attention_class, self.patch_embed_class, type(self).rotary_fn)
        return model

    # ---- structure -------------------------------------------------------------------------

    def text_model(self, model: PreTrainedModel) -> nn.Module:
        return model.language_model

    def decoder_layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.language_model.layers

    def residual_branch_outputs(self, model: PreTrainedModel) -> list[nn.Linear]:
        """The last linear layer of every residual branch: attention and MLP outputs of the
        vision blocks and of the decoder layers (every expert's, once MoE is installed)."""
        outputs: list[nn.Linear] = []
        for block in model.visual.blocks:
            outputs += [block.attn.proj, getattr(block.mlp, self.vision_mlp_output)]
        for layer in self.decoder_layers(model):
            experts = getattr(layer.mlp, "experts", [layer.mlp])
            outputs += [layer.self_attn.o_proj, *(expert.down_proj for expert in experts)]
        return outputs

    def zero_residual_branches(self, model: PreTrainedModel) -> None:
        """Start every residual branch at zero (see BackboneConfig.init)."""
        with torch.no_grad():
            for linear in self.residual_branch_outputs(model):
                linear.weight.zero_()
                if linear.bias is not None:
                    linear.bias.zero_()

    def text_attention_modules(self, model: PreTrainedModel) -> list[nn.Module]:
        return [layer.self_attn for layer in self.decoder_layers(model)]

    def text_hidden_size(self, model: PreTrainedModel) -> int:
        return model.config.text_config.hidden_size

    def initializer_range(self, model: PreTrainedModel) -> float:
        return model.config.text_config.initializer_range

    # ---- forward ---------------------------------------------------------------------------

    def encode_images(self, model: PreTrainedModel, pixel_values: torch.Tensor,
                      image_grid_thw: torch.Tensor) -> VisionFeatures:
        visual = model.visual
        positions = vision_position_ids(image_grid_thw, visual.spatial_merge_size)
        out = visual(pixel_values.to(visual.dtype), grid_thw=image_grid_thw, position_ids=positions)
        return VisionFeatures(embeds=out.pooler_output)

    def run_language_model(self, model: PreTrainedModel, inputs_embeds: torch.Tensor,
                           attention_mask: Union[torch.Tensor, dict], position_ids: torch.Tensor,
                           image_mask: Optional[torch.Tensor], features: Optional[VisionFeatures]) -> torch.Tensor:
        """Last hidden states [B, T, H]; `position_ids` is [3, B, T]."""
        out = model.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   position_ids=position_ids, use_cache=False)
        return out.last_hidden_state


def read_hf_config(path: Union[str, Path]) -> dict:
    """config.json of a local checkpoint directory, with a clear error when absent."""
    spec = Path(path) / "config.json"
    if not spec.is_file():
        raise ValueError(f"{path}: not a Hugging Face checkpoint directory (no config.json)")
    try:
        return json.loads(spec.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{spec}: not valid JSON ({exc})") from exc
