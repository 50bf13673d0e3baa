"""Qwen2.5-VL: ViT with RMSNorm, SwiGLU MLPs and window attention (full attention in a few
blocks), merged into a Qwen2 LLM."""

from __future__ import annotations

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLModel
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl

from moon.model.backbones.base import BackboneAdapter
from moon.model.config import BackboneConfig


class Qwen2_5_VLAdapter(BackboneAdapter):
    family = "qwen2_5_vl"
    hf_model_types = ("qwen2_5_vl",)
    config_class = Qwen2_5_VLConfig
    model_class = Qwen2_5_VLModel
    generation_class = Qwen2_5_VLForConditionalGeneration
    vision_attention_class = modeling_qwen2_5_vl.Qwen2_5_VLVisionAttention
    patch_embed_class = modeling_qwen2_5_vl.Qwen2_5_VisionPatchEmbed
    rotary_fn = staticmethod(modeling_qwen2_5_vl.apply_rotary_pos_emb_vision)
    vision_mlp_output = "down_proj"

    def vision_config(self, backbone: BackboneConfig, text_hidden: int) -> dict:
        v = backbone.vision
        full = v.fullatt_block_indexes if v.fullatt_block_indexes is not None else [v.depth - 1]
        return dict(depth=v.depth, hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                    num_heads=v.num_heads, out_hidden_size=text_hidden, hidden_act="silu",
                    patch_size=v.patch_size, spatial_merge_size=v.spatial_merge_size,
                    temporal_patch_size=v.temporal_patch_size, window_size=v.window_size or 112,
                    fullatt_block_indexes=list(full))
