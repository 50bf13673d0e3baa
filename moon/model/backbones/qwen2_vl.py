"""Qwen2-VL: ViT with 2-D RoPE, LayerNorm blocks and `mlp_ratio`, merged into a Qwen2 LLM."""

from __future__ import annotations

from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLModel
from transformers.models.qwen2_vl import modeling_qwen2_vl

from moon.model.backbones.base import BackboneAdapter
from moon.model.config import BackboneConfig


class Qwen2VLAdapter(BackboneAdapter):
    family = "qwen2_vl"
    hf_model_types = ("qwen2_vl",)
    config_class = Qwen2VLConfig
    model_class = Qwen2VLModel
    generation_class = Qwen2VLForConditionalGeneration
    vision_attention_class = modeling_qwen2_vl.VisionAttention
    patch_embed_class = modeling_qwen2_vl.PatchEmbed
    rotary_fn = staticmethod(modeling_qwen2_vl.apply_rotary_pos_emb_vision)
    vision_mlp_output = "fc2"

    def vision_config(self, backbone: BackboneConfig, text_hidden: int) -> dict:
        v = backbone.vision
        return dict(depth=v.depth, embed_dim=v.hidden_size, hidden_size=text_hidden,
                    mlp_ratio=v.intermediate_size // v.hidden_size, num_heads=v.num_heads,
                    patch_size=v.patch_size, spatial_merge_size=v.spatial_merge_size,
                    temporal_patch_size=v.temporal_patch_size)
