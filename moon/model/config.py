"""The MOON model configuration: one validated pydantic tree, named configs stored as data.

Every switch an ablation needs (guided MoE on/off, crops on/off, pooling, projection) is a
field here, so a recipe changes a model by changing data, and a saved model directory
describes itself completely in `moon_config.json`. Unknown keys are errors (a typo in a
recipe must not silently train a different model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moon.data.records import format_validation_error

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CONFIG_FILE = "moon_config.json"

Family = Literal["qwen2_vl", "qwen2_5_vl"]
MoEMode = Literal["off", "guided", "router-only"]
Pooling = Literal["mean", "modality-mean", "last", "bidirectional-mean"]
RandomInit = Literal["zero-residual", "standard"]
ComputeDtype = Literal["auto", "float32", "bfloat16", "float16"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ConfigError(ValueError):
    """A model config (file, name or override) is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextSizes(_Strict):
    """LLM sizes for a backbone built from scratch (ignored when loading a checkpoint)."""

    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    mrope_section: Optional[list[int]] = Field(
        default=None, description="temporal/height/width split of head_dim/2; None = 1/4, 3/8, 3/8")

    @model_validator(mode="after")
    def _heads(self) -> "TextSizes":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}")
        half = self.hidden_size // self.num_heads // 2
        if self.mrope_section is not None and sum(self.mrope_section) != half:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim/2 = {half}")
        if self.mrope_section is None and half % 8:
            raise ValueError(f"head_dim/2 = {half} is not divisible by 8; give mrope_section explicitly")
        return self

    def rope_sections(self) -> list[int]:
        if self.mrope_section is not None:
            return list(self.mrope_section)
        half = self.hidden_size // self.num_heads // 2
        return [half // 4, half * 3 // 8, half * 3 // 8]


class VisionSizes(_Strict):
    """Vision tower sizes for a backbone built from scratch."""

    hidden_size: int = Field(gt=0, description="ViT width (embed_dim)")
    intermediate_size: int = Field(gt=0)
    depth: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    window_size: Optional[int] = Field(default=None, description="qwen2_5_vl only: window attention side in px")
    fullatt_block_indexes: Optional[list[int]] = Field(default=None, description="qwen2_5_vl only")

    @model_validator(mode="after")
    def _heads(self) -> "VisionSizes":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        return self


class BackboneConfig(_Strict):
    """Which MLLM and where its weights come from.

    With `checkpoint` set, sizes, weights and tokenizer/processor come from that local
    Hugging Face directory; without it, `text` and `vision` give the sizes of a randomly
    initialised model whose tokenizer is trained locally.

    `init` = "zero-residual" starts the output projection of every residual branch (attention
    and MLP, vision blocks and decoder layers) at zero, so the untrained encoder is a bag of
    token and patch embeddings. With the standard random init the deep stack maps every input
    to nearly the same vector (moon-tiny: product-product cosine 0.91 at init) and the InfoNCE
    loss starts above uniform; its fastest way down is to collapse all embeddings, which it
    did within one optimizer step at every learning rate tried (issue #4).
    """

    family: Family = "qwen2_vl"
    checkpoint: Optional[str] = None
    text: Optional[TextSizes] = None
    vision: Optional[VisionSizes] = None
    vocab_size: int = Field(default=4096, ge=300, description="tokenizer size when trained locally")
    lowercase: bool = Field(default=False, description="fold case in a locally trained tokenizer "
                                                       "(a checkpoint keeps its own tokenizer)")
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    init: RandomInit = Field(default="zero-residual", description="how random weights start (ignored with a checkpoint)")

    @model_validator(mode="after")
    def _source(self) -> "BackboneConfig":
        if self.checkpoint is None and (self.text is None or self.vision is None):
            raise ValueError("either 'checkpoint' (a local HF directory) or both 'text' and 'vision' sizes are needed")
        if self.vision is not None and self.family == "qwen2_vl" and (
                self.vision.window_size is not None or self.vision.fullatt_block_indexes is not None):
            raise ValueError("vision.window_size / vision.fullatt_block_indexes exist only for family qwen2_5_vl")
        if self.vision is not None and self.family == "qwen2_vl" and \
                self.vision.intermediate_size % self.vision.hidden_size:
            raise ValueError("qwen2_vl vision.intermediate_size must be a multiple of vision.hidden_size (mlp_ratio)")
        return self


class InputConfig(_Strict):
    """How a product or query becomes model inputs."""

    image_size: int = Field(default=112, description="side in px every image is resized to")
    crop_size: Optional[int] = Field(default=None, description="side of core-region crops; None = image_size")
    use_crops: bool = Field(default=True, description="add the CORE-box crop of each image as an extra image")
    max_images: int = Field(default=4, ge=1, description="images kept per product (first ones)")
    max_text_tokens: int = Field(default=128, ge=8, description="text tokens kept per item (end is cut)")
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD

    @property
    def crop_side(self) -> int:
        return self.crop_size or self.image_size


class MoEConfig(_Strict):
    """Guided Mixture-of-Experts replacing the FFN of some LLM layers.

    `guided`: N-2 routed general experts + FFN_cate + FFN_attr forced by segment id;
    `router-only`: the same N experts all routed (the no-guidance ablation); `off`: dense.
    """

    mode: MoEMode = "guided"
    layers: Union[Literal["all"], list[int]] = "all"
    num_experts: int = Field(default=6, ge=3)
    top_k: int = Field(default=2, ge=1)
    init: Literal["upcycle", "fresh"] = "upcycle"
    renormalize: bool = Field(default=True, description="top-k gate weights sum to 1 (upcycled MoE == dense at init)")
    aux_loss_weight: float = Field(default=0.01, ge=0)
    z_loss_weight: float = Field(default=0.001, ge=0)

    @model_validator(mode="after")
    def _experts(self) -> "MoEConfig":
        routed = self.routed_experts
        if self.mode != "off" and self.top_k > routed:
            raise ValueError(f"top_k {self.top_k} exceeds the {routed} routed experts")
        if self.mode != "off" and self.top_k == 1 and self.renormalize:
            raise ValueError("top_k=1 with renormalize=true gives every token gate 1.0 and the router no "
                             "gradient; set renormalize=false or top_k>=2")
        return self

    @property
    def routed_experts(self) -> int:
        return self.num_experts - 2 if self.mode == "guided" else self.num_experts


class ProjectionConfig(_Strict):
    """Optional linear head after pooling and the Matryoshka prefix sizes."""

    dim: Optional[int] = Field(default=None, gt=0, description="None = no projection (hidden size)")
    matryoshka_dims: list[int] = Field(default_factory=list)


class LoraSettings(_Strict):
    """LoRA adapters via peft on the LLM and/or vision tower; base weights frozen."""

    enabled: bool = False
    r: int = Field(default=8, gt=0)
    alpha: float = 16.0
    dropout: float = Field(default=0.0, ge=0, lt=1)
    llm_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                            "gate_proj", "up_proj", "down_proj"])
    vision_targets: list[str] = Field(default_factory=lambda: ["qkv", "proj", "fc1", "fc2",
                                                               "gate_proj", "up_proj", "down_proj"])
    merge_on_save: bool = False


class MoonConfig(_Strict):
    """The whole model: backbone, inputs, MoE, pooling, head, LoRA and compute dtype."""

    name: str = "moon"
    backbone: BackboneConfig
    inputs: InputConfig = InputConfig()
    moe: MoEConfig = MoEConfig()
    pooling: Pooling = "mean"
    pooling_image_share: float = Field(default=0.5, gt=0.0, lt=1.0, description=(
        "modality-mean only: weight of the image/crop tokens' mean (the text tokens' mean gets the rest)"))
    projection: ProjectionConfig = ProjectionConfig()
    lora: LoraSettings = LoraSettings()
    compute_dtype: ComputeDtype = "auto"

    @model_validator(mode="after")
    def _image_share_needs_modality_mean(self) -> "MoonConfig":
        if self.pooling_image_share != 0.5 and self.pooling != "modality-mean":
            raise ValueError(f"pooling_image_share applies to pooling 'modality-mean', not '{self.pooling}'")
        return self

    def resolved_dtype(self, device: torch.device) -> torch.dtype:
        """`auto` = bf16 on CUDA, fp32 on CPU (bf16 autocast on CPU is opt-in)."""
        if self.compute_dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        return getattr(torch, self.compute_dtype)

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json")


def _validate(data: Mapping[str, Any], where: str) -> MoonConfig:
    try:
        return MoonConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def named_configs() -> list[str]:
    """Names of the configs shipped in moon/model/configs/."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config_file(path: Union[str, Path]) -> MoonConfig:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read model config ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return _validate(data, str(path))


def named_config(name: str) -> MoonConfig:
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown model config '{name}'; known: {', '.join(named_configs())}")
    return load_config_file(path)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{'.'.join(parts[:i + 1])}' is not a section")
        node = child
    node[parts[-1]] = value


def apply_overrides(config: MoonConfig, overrides: Optional[Mapping[str, Any]]) -> MoonConfig:
    """Return a copy with dotted-key overrides applied, e.g. {"moe.mode": "off"}; re-validated."""
    if not overrides:
        return config
    tree = config.to_json_dict()
    for key, value in overrides.items():
        _set_dotted(tree, key, value)
    return _validate(tree, "override")


def resolve_config(name_or_config: Union[str, Path, MoonConfig, Mapping[str, Any]],
                   overrides: Optional[Mapping[str, Any]] = None) -> MoonConfig:
    """A shipped name, a JSON file path, a dict or a MoonConfig -> validated MoonConfig."""
    if isinstance(name_or_config, MoonConfig):
        config = name_or_config
    elif isinstance(name_or_config, Mapping):
        config = _validate(name_or_config, "config")
    elif str(name_or_config).endswith(".json") or Path(name_or_config).is_file():
        config = load_config_file(name_or_config)
    else:
        config = named_config(str(name_or_config))
    return apply_overrides(config, overrides)
