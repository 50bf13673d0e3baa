"""The open_clip dual-encoder baseline, trainable with exactly the same loop as MOON.

A CLIP (ViT image tower + transformer text tower) built from an open_clip model config
given as data, never downloaded. It exists to answer "does MOON's single multimodal
encoder beat a classic dual encoder of the same size, trained the same way?", so it
speaks the toolkit's `TrainableEmbedder` contract:

- products: each product is one vector, the normalised sum of its image embedding and
  its text embedding (title / category / attributes, whichever the view includes). A
  product with several images uses the mean of its first `max_images` image embeddings
  (MOON's many-to-one problem, solved the simplest way). Views without images or without
  text use the single remaining tower. Core-region crops are a MOON feature: the baseline
  always embeds the whole image, whatever `view.crops` says.
- queries: text queries go through the text tower, image queries through the image tower,
  product queries (image + text) are fused like products.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moon.data.records import FULL_VIEW, DataError, ProductRecord, ProductView, format_validation_error
from moon.data.shards import atomic_write_bytes
from moon.model.api import EmbeddingOutput, QueryInput
from moon.model.attention_kernel import short_sequence_attention
from moon.model.base import TrainableEmbedder, as_query
from moon.model.baselines.clip_tokenizer import (ClipTokenizer, LocalBpeTokenizer, OpenAIBpeTokenizer,
                                                 TokenizerKind)
from moon.model.registry import write_embedder_file

ARCHITECTURE = "open_clip"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

OPENCLIP_CONFIGS: dict[str, dict[str, Any]] = {
    "openclip-tiny": {
        "clip": {
            "embed_dim": 256,
            "vision_cfg": {"image_size": 112, "patch_size": 16, "layers": 6, "width": 256, "head_width": 64,
                           "block_type": "custom"},
            "text_cfg": {"context_length": 64, "vocab_size": 8192, "width": 256, "heads": 4, "layers": 4,
                         "block_type": "custom"},
        },
        "tokenizer": "local-bpe",
    },
    "openclip-tiny-openai-bpe": {
        "clip": {
            "embed_dim": 256,
            "vision_cfg": {"image_size": 112, "patch_size": 16, "layers": 6, "width": 256, "head_width": 64,
                           "block_type": "custom"},
            "text_cfg": {"context_length": 64, "width": 256, "heads": 4, "layers": 4, "block_type": "custom"},
        },
        "tokenizer": "openai-bpe",
    },
}
"""Named configs. 'openclip-tiny' is the reference small dual encoder (ViT 6x256 at 112 px +
4-layer text) with a locally trained 8k BPE (9.4M parameters; moon-tiny has 5.3M), the size
class of a tiny MOON model; the '-openai-bpe' variant needs no corpus but carries a 49k-token embedding.
Both use open_clip's "custom" attention block (an explicit out_proj Linear + SDPA) rather than
torch's nn.MultiheadAttention, which ZeRO-3 cannot partition."""

_CLIP_KEYS = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"}


class OpenClipConfig(BaseModel):
    """Everything needed to rebuild the model and its processor (saved as config.json)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    clip: dict[str, Any] = Field(description="open_clip model config: embed_dim, vision_cfg, text_cfg")
    tokenizer: TokenizerKind = "openai-bpe"
    max_images: int = Field(default=1, ge=1, description="images per product averaged into its embedding")
    matryoshka_dims: list[int] = Field(default_factory=list)
    compute_dtype: str = Field(default="float32", pattern="^(float32|bfloat16)$")

    @field_validator("clip")
    @classmethod
    def _clip_shape(cls, v: dict[str, Any]) -> dict[str, Any]:
        from open_clip.model import CLIPTextCfg, CLIPVisionCfg

        unknown = set(v) - _CLIP_KEYS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(_CLIP_KEYS)}")
        for key in ("embed_dim", "vision_cfg", "text_cfg"):
            if key not in v:
                raise ValueError(f"missing key '{key}'")
        for key, dc in (("vision_cfg", CLIPVisionCfg), ("text_cfg", CLIPTextCfg)):
            if not isinstance(v[key], dict):
                raise ValueError(f"{key} must be a mapping")
            allowed = {f.name for f in dataclasses.fields(dc)}
            bad = set(v[key]) - allowed
            if bad:
                raise ValueError(f"{key}: unknown open_clip keys {sorted(bad)}")
        if not isinstance(v["vision_cfg"].get("image_size", 224), int):
            raise ValueError("vision_cfg.image_size must be one integer (square images)")
        return v

    @model_validator(mode="after")
    def _matryoshka_fits(self) -> "OpenClipConfig":
        dim = self.clip["embed_dim"]
        bad = [d for d in self.matryoshka_dims if not 0 < d < dim]
        if bad:
            raise ValueError(f"matryoshka_dims {bad} must be between 1 and embed_dim-1 ({dim - 1})")
        return self

    @property
    def image_size(self) -> int:
        return int(self.clip["vision_cfg"].get("image_size", 224))

    @property
    def vision_tokens(self) -> int:
        """Length of the vision transformer's sequence: one token per patch plus the class token."""
        return (self.image_size // int(self.clip["vision_cfg"].get("patch_size", 16))) ** 2 + 1

    @property
    def context_length(self) -> int:
        return int(self.clip["text_cfg"].get("context_length", 77))


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"override '{dotted}': '{'.'.join(parts[:i + 1])}' is not a section")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def resolve_config(name_or_config: Union[str, Mapping[str, Any], OpenClipConfig],
                   overrides: Optional[Mapping[str, Any]] = None) -> OpenClipConfig:
    """A named config or an explicit one, with dotted-key overrides such as
    {"clip.vision_cfg.layers": 4} (the same convention as MOON's configs), validated."""
    if isinstance(name_or_config, OpenClipConfig):
        data = name_or_config.model_dump()
    elif isinstance(name_or_config, str):
        if name_or_config not in OPENCLIP_CONFIGS:
            raise ValueError(f"unknown open_clip config '{name_or_config}'; "
                             f"known: {', '.join(sorted(OPENCLIP_CONFIGS))}")
        data = {"name": name_or_config, **copy.deepcopy(OPENCLIP_CONFIGS[name_or_config])}
    else:
        data = dict(name_or_config)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        return OpenClipConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, "open_clip config")) from None


def _text_of(record: ProductRecord, view: ProductView) -> Optional[str]:
    parts = []
    if view.title:
        parts.append(record.title)
    if view.category:
        parts.append(" > ".join(record.category))
    if view.attributes and record.attributes:
        parts.append(", ".join(f"{k}: {v}" for k, v in record.attributes.items()))
    return " | ".join(parts) if parts else None


class OpenClipProcessor:
    """Records -> tensors. Images and texts are listed flat with the batch row they belong to
    (`image_owner`, `text_owner`), so one batch can mix text-only, image-only and
    image+text items, and products with several images."""

    def __init__(self, config: OpenClipConfig, tokenizer: ClipTokenizer) -> None:
        from open_clip.transform import image_transform

        self.config = config
        self.tokenizer = tokenizer
        self.transform = image_transform(config.image_size, is_train=False)

    def _pack(self, images: list[tuple[int, Any]], texts: list[tuple[int, str]], n: int) -> dict[str, torch.Tensor]:
        size = self.config.image_size
        if images:
            pixels = torch.stack([self.transform(im.to_pil()) for _, im in images])
        else:
            pixels = torch.zeros(0, 3, size, size)
        return {
            "pixel_values": pixels,
            "image_owner": torch.tensor([i for i, _ in images], dtype=torch.long),
            "input_ids": _trim_padding(self.tokenizer([t for _, t in texts], self.config.context_length),
                                       self.tokenizer.pad_id),
            "text_owner": torch.tensor([i for i, _ in texts], dtype=torch.long),
            "n_items": torch.tensor(n, dtype=torch.long),
        }

    def products(self, products: Sequence[ProductRecord], view: ProductView = FULL_VIEW) -> dict[str, torch.Tensor]:
        images, texts = [], []
        for row, record in enumerate(products):
            if view.images:
                images.extend((row, im) for im in record.images[:self.config.max_images])
            text = _text_of(record, view)
            if text is not None:
                texts.append((row, text))
            if not view.images and text is None:
                raise DataError(f"product {record.product_id}: the view selects only fields it does not have")
        return self._pack(images, texts, len(products))

    def queries(self, queries: Sequence[QueryInput]) -> dict[str, torch.Tensor]:
        images, texts = [], []
        for row, q in enumerate(as_query(q) for q in queries):
            if q.image is not None:
                images.append((row, q.image))
            if q.text is not None and q.text.strip():
                texts.append((row, q.text))
        return self._pack(images, texts, len(queries))


def _trim_padding(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Cut a [N, context_length] batch of ids to its longest text (pads only trail).

    Titles use ~15 of the 64 positions and label texts 2-4, and the text tower's cost grows with
    the padded length: on 2 CPU cores, forward + backward of 200 texts took 1.42 s at 64 tokens
    and 0.35 s at 12. The tower is causal and pools the end token, so the embeddings are the
    same (`_trimmable_text_tower` lets it accept the shorter batch)."""
    if ids.shape[0] == 0:
        return ids
    return ids[:, :max(int((ids != pad_id).sum(1).max()), 1)]


@functools.lru_cache(maxsize=None)
def _trimmable_text_tower() -> type:
    """open_clip's TextTransformer, except that its causal mask is cut to the batch's length
    (open_clip cuts it only for bidirectional towers and fails on shorter causal batches)."""
    from open_clip.transformer import TextTransformer

    class TrimmableTextTransformer(TextTransformer):
        def _embeds(self, text: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
            x, mask = super()._embeds(text)
            length = x.shape[1]
            if mask is not None and mask.shape[-1] > length:
                mask = mask[..., :length, :length]
            return x, mask

    return TrimmableTextTransformer


def _build_clip(config: OpenClipConfig) -> torch.nn.Module:
    """open_clip's CustomTextCLIP: the same towers as CLIP, but the text tower is one module
    owning its parameters (positional embedding, projection), so DeepSpeed ZeRO-3, which
    gathers parameters per module forward, can partition it."""
    from open_clip.model import CustomTextCLIP

    clip = CustomTextCLIP(**copy.deepcopy(config.clip))
    trimmable = _trimmable_text_tower()
    if type(clip.text) is not trimmable.__base__:
        raise ValueError(f"open_clip config '{config.name}': text_cfg must build open_clip's own TextTransformer "
                         f"(got {type(clip.text).__name__}; Hugging Face text towers are not supported)")
    clip.text.__class__ = trimmable
    # The toolkit's losses own the temperature, so CLIP's logit scale would be dead weight;
    # it is also a 0-d parameter, which DeepSpeed cannot broadcast. Only the two towers
    # (encode_image / encode_text) are used.
    del clip.logit_scale
    return clip


class OpenClipEmbedder(TrainableEmbedder):
    """open_clip CLIP as a product embedder (see module docstring for the fusion rule)."""

    def __init__(self, config: OpenClipConfig, tokenizer: ClipTokenizer) -> None:
        super().__init__()
        self.config = config
        self.clip = _build_clip(config)
        self.processor = OpenClipProcessor(config, tokenizer)
        self.model_id = f"{ARCHITECTURE}:{config.name}"
        self.compute_dtype = torch.bfloat16 if config.compute_dtype == "bfloat16" else None

    @classmethod
    def from_config(cls, name_or_config: Union[str, Mapping[str, Any], OpenClipConfig],
                    tokenizer_corpus: Optional[Iterable[str]] = None,
                    overrides: Optional[Mapping[str, Any]] = None,
                    seed: Optional[int] = None) -> "OpenClipEmbedder":
        """A freshly initialised model; a 'local-bpe' config trains its tokenizer on the corpus.
        `seed` makes the initial weights reproducible without touching the global RNG."""
        config = resolve_config(name_or_config, overrides)
        if config.tokenizer == "local-bpe":
            if tokenizer_corpus is None:
                raise ValueError(f"open_clip config '{config.name}' uses a local-bpe tokenizer: "
                                 "pass tokenizer_corpus (e.g. the training titles)")
            tokenizer: ClipTokenizer = LocalBpeTokenizer.train(
                tokenizer_corpus, int(config.clip["text_cfg"].get("vocab_size", 8192)))
            text_extra = {"pool_type": "eos", "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id}
        else:
            tokenizer = OpenAIBpeTokenizer()
            text_extra = {"pool_type": "argmax"}
        text_cfg = {**config.clip["text_cfg"], "vocab_size": tokenizer.vocab_size, **text_extra}
        config = config.model_copy(update={"clip": {**config.clip, "text_cfg": text_cfg}})
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return cls(config, tokenizer)

    @classmethod
    def from_pretrained(cls, path: Union[str, Path],
                        overrides: Optional[Mapping[str, Any]] = None) -> "OpenClipEmbedder":
        """Load a directory written by `save_pretrained`; `overrides` may change settings that
        do not touch the weights (compute_dtype, max_images, matryoshka_dims)."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg_path = path / CONFIG_FILE
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{path}: missing {CONFIG_FILE} of an open_clip model")
        try:
            config = OpenClipConfig.model_validate_json(cfg_path.read_text())
        except ValidationError as exc:
            raise ValueError(format_validation_error(exc, str(cfg_path))) from None
        if overrides:
            config = resolve_config(config, overrides)
        tokenizer: ClipTokenizer = (LocalBpeTokenizer.load(path) if config.tokenizer == "local-bpe"
                                    else OpenAIBpeTokenizer())
        model = cls(config, tokenizer)
        model.clip.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=True)
        return model

    def save_pretrained(self, path: Union[str, Path]) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.clip.state_dict().items()}
        tmp = path / (WEIGHTS_FILE + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, path / WEIGHTS_FILE)
        atomic_write_bytes(path / CONFIG_FILE, self.config.model_dump_json(indent=2).encode())
        self.processor.tokenizer.save(path)
        write_embedder_file(path, ARCHITECTURE)

    @property
    def embedding_dim(self) -> int:
        return int(self.config.clip["embed_dim"])

    def config_dict(self) -> Mapping[str, object]:
        return {"architecture": ARCHITECTURE, **json.loads(self.config.model_dump_json()),
                "parameters": sum(p.numel() for p in self.parameters())}

    def forward(self, pixel_values: torch.Tensor, image_owner: torch.Tensor, input_ids: torch.Tensor,
                text_owner: torch.Tensor, n_items: torch.Tensor) -> EmbeddingOutput:
        n = int(n_items)
        fused = torch.zeros(n, self.embedding_dim, device=input_ids.device, dtype=torch.float32)
        if pixel_values.shape[0]:
            weight = self.clip.visual.conv1.weight
            with short_sequence_attention(weight, self.config.vision_tokens):
                img = F.normalize(self.clip.encode_image(pixel_values.to(weight.dtype)).float(), dim=-1)
            per_item = torch.zeros_like(fused).index_add(0, image_owner, img)
            fused = fused + F.normalize(per_item, dim=-1)
        if input_ids.shape[0]:
            with short_sequence_attention(self.clip.visual.conv1.weight, input_ids.shape[1]):
                txt = F.normalize(self.clip.encode_text(input_ids).float(), dim=-1)
            fused = fused.index_add(0, text_owner, txt)
        emb = F.normalize(fused, dim=-1)
        return EmbeddingOutput(embeddings=emb,
                               matryoshka={d: F.normalize(emb[:, :d], dim=-1) for d in self.config.matryoshka_dims})
