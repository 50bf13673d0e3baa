"""Backbone families: one adapter module per Hugging Face MLLM family.

Adding a family (e.g. Qwen3-VL) = one module with a `BackboneAdapter` subclass and one entry
in `FAMILIES` (plus the name in `config.Family`).
"""

from __future__ import annotations

from moon.model.backbones.base import BackboneAdapter, SpecialTokenIds, VisionFeatures, read_hf_config
from moon.model.backbones.qwen2_5_vl import Qwen2_5_VLAdapter
from moon.model.backbones.qwen2_vl import Qwen2VLAdapter

FAMILIES: dict[str, type[BackboneAdapter]] = {
    Qwen2VLAdapter.family: Qwen2VLAdapter,
    Qwen2_5_VLAdapter.family: Qwen2_5_VLAdapter,
}


def adapter_for(family: str) -> BackboneAdapter:
    try:
        return FAMILIES[family]()
    except KeyError:
        raise ValueError(f"unknown backbone family '{family}'; known: {', '.join(sorted(FAMILIES))}") from None


def family_of_checkpoint(model_type: str) -> str:
    """The family whose HF model_type a checkpoint's config.json declares."""
    for name, cls in FAMILIES.items():
        if model_type in cls.hf_model_types:
            return name
    known = sorted(t for cls in FAMILIES.values() for t in cls.hf_model_types)
    raise ValueError(f"checkpoint model_type '{model_type}' is not supported; known: {', '.join(known)}")


__all__ = ["BackboneAdapter", "SpecialTokenIds", "VisionFeatures", "FAMILIES", "adapter_for",
           "family_of_checkpoint", "read_hf_config"]
