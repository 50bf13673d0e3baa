"""MoonModel: a Qwen2-VL-family MLLM turned into a product/query embedder (the MOON encoder).

Pipeline of one forward: vision tower on all images and crops of the batch -> merged vision
tokens scattered into the token embeddings -> language model (guided MoE in the configured
layers, causal or bidirectional attention) -> pooling over non-pad tokens -> optional
projection -> L2-normalised embedding (+ Matryoshka prefixes), with the MoE auxiliary loss
and per-expert token counts in the output.

Construction: `from_config` (a shipped name such as "moon-tiny", a JSON file, a dict or a
MoonConfig; a from-scratch backbone needs `tokenizer_corpus`, a config with
`backbone.checkpoint` loads that local HF directory) and `from_pretrained` (a directory saved
by `save_pretrained`, or a raw local Qwen2-VL / Qwen2.5-VL checkpoint directory).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from moon.model.api import EmbeddingOutput
from moon.model.attention_kernel import short_sequence_attention
from moon.model.backbones import BackboneAdapter, SpecialTokenIds, adapter_for, family_of_checkpoint, read_hf_config
from moon.model.base import TrainableEmbedder
from moon.model.config import (
    CONFIG_FILE,
    BackboneConfig,
    ConfigError,
    InputConfig,
    MoEConfig,
    MoonConfig,
    apply_overrides,
    load_config_file,
    resolve_config,
)
from moon.model.head import EmbeddingHead
from moon.model.inputs import MoonProcessor
from moon.model.lora import inject_lora, merged_state_dict
from moon.model.moe import checkpoint_context, install_moe, routing_scope
from moon.model.pooling import language_mask, pool, set_bidirectional
from moon.model.registry import write_embedder_file
from moon.model.tokenizer import (
    IM_END,
    IMAGE_PAD,
    PAD_TOKEN,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    load_tokenizer,
    train_tokenizer,
)
from moon.model.weights import WEIGHTS_FILE, load_weights, save_weights, weights_digest

BACKBONE_CONFIG_FILE = "backbone_config.json"

PathLike = Union[str, Path]


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> SpecialTokenIds:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (PAD_TOKEN, IM_END, VISION_START, VISION_END,
                                                           IMAGE_PAD, VIDEO_PAD)}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids[PAD_TOKEN]
    return SpecialTokenIds(pad=pad, im_end=ids[IM_END], vision_start=ids[VISION_START],
                           vision_end=ids[VISION_END], image=ids[IMAGE_PAD], video=ids[VIDEO_PAD])


def _atomic_dir_files(src: Path, dest: Path) -> None:
    """Move every file of `src` into `dest` with os.replace (each file appears complete)."""
    for item in src.iterdir():
        os.replace(item, dest / item.name)


def wrap_config(path: Path) -> MoonConfig:
    """Default MOON config around a raw HF checkpoint: the named real configs' choices
    (448 px images, 256 text tokens, guided MoE in every 4th LLM layer and the last one)."""
    hf = read_hf_config(path)
    family = family_of_checkpoint(hf.get("model_type", ""))
    layers = (hf.get("text_config") or {}).get("num_hidden_layers", hf.get("num_hidden_layers"))
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"{path}/config.json: no num_hidden_layers for the language model")
    return MoonConfig(name=path.name, backbone=BackboneConfig(family=family, checkpoint=str(path)),
                      inputs=InputConfig(image_size=448, max_text_tokens=256),
                      moe=MoEConfig(layers=sorted(set(range(3, layers, 4)) | {layers - 1})))


def _with_checkpoint_normalisation(config: MoonConfig, path: Path) -> MoonConfig:
    """Use the pixel mean/std the checkpoint was trained with (its preprocessor_config.json)."""
    spec = path / "preprocessor_config.json"
    if not spec.is_file():
        return config
    try:
        data = json.loads(spec.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{spec}: not valid JSON ({exc})") from exc
    updates = {f"inputs.{key}": data[key] for key in ("image_mean", "image_std") if key in data}
    return apply_overrides(config, updates)


class MoonModel(TrainableEmbedder):
    """The MOON encoder; see the module docstring."""

    def __init__(self, config: MoonConfig, backbone: PreTrainedModel, adapter: BackboneAdapter,
                 tokenizer: PreTrainedTokenizerBase, model_id: Optional[str] = None):
        super().__init__()
        self.config = config
        self.adapter = adapter
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.model_id = model_id or f"moon:{config.name}"
        self.processor = MoonProcessor(tokenizer, config.inputs, adapter.geometry(backbone.config))
        self.image_token_id = self.processor.image_token_id
        hidden = adapter.text_hidden_size(backbone)
        self.moe_layers = install_moe(adapter.decoder_layers(backbone), config.moe, hidden,
                                      adapter.initializer_range(backbone))
        set_bidirectional(adapter.text_attention_modules(backbone), config.pooling == "bidirectional-mean")
        self.head = EmbeddingHead(hidden, config.projection)
        if config.lora.enabled:
            self._inject_lora()

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def from_config(cls, name_or_config: Union[str, Path, MoonConfig, Mapping[str, Any]],
                    tokenizer_corpus: Optional[Iterable[str]] = None,
                    overrides: Optional[Mapping[str, Any]] = None, seed: Optional[int] = None,
                    device: Optional[Union[str, torch.device]] = None) -> "MoonModel":
        """A new model: random backbone with a tokenizer trained on `tokenizer_corpus`, or the
        weights and tokenizer of `backbone.checkpoint`; MoE layers upcycled/fresh per config."""
        config = resolve_config(name_or_config, overrides)
        adapter = adapter_for(config.backbone.family)
        rng = torch.random.fork_rng(devices=[]) if seed is not None else nullcontext()
        with rng:
            if seed is not None:
                torch.manual_seed(seed)
            if config.backbone.checkpoint is not None:
                model = cls._from_checkpoint(config, adapter)
            else:
                if tokenizer_corpus is None:
                    raise ValueError(f"config '{config.name}' builds its tokenizer from text: pass tokenizer_corpus "
                                     "(e.g. moon.model.tokenizer.corpus_from_products(products))")
                tokenizer = train_tokenizer(tokenizer_corpus, config.backbone.vocab_size,
                                            lowercase=config.backbone.lowercase)
                hf_config = adapter.build_hf_config(config.backbone, special_token_ids(tokenizer), len(tokenizer))
                backbone = adapter.build(hf_config, config.backbone.attn_implementation, init_weights=True)
                model = cls(config, backbone, adapter, tokenizer)
                if config.backbone.init == "zero-residual":
                    adapter.zero_residual_branches(backbone)
        return model.to(device) if device is not None else model

    @classmethod
    def _from_checkpoint(cls, config: MoonConfig, adapter: BackboneAdapter) -> "MoonModel":
        path = Path(config.backbone.checkpoint)
        if not path.is_dir():
            raise ConfigError(f"backbone.checkpoint '{path}' is not a directory: put the Hugging Face checkpoint "
                              "there or override backbone.checkpoint")
        declared = read_hf_config(path).get("model_type", "")
        if family_of_checkpoint(declared) != config.backbone.family:
            raise ConfigError(f"backbone.family is '{config.backbone.family}' but {path} holds a '{declared}' model")
        config = _with_checkpoint_normalisation(config, path)
        tokenizer = load_tokenizer(path)
        backbone = adapter.load_checkpoint(path, config.backbone.attn_implementation, torch.float32)
        adapter.check_tokens(backbone.config, special_token_ids(tokenizer), str(path))
        return cls(config, backbone, adapter, tokenizer, model_id=f"moon:{config.name}")

    @classmethod
    def from_pretrained(cls, path: PathLike, overrides: Optional[Mapping[str, Any]] = None,
                        device: Optional[Union[str, torch.device]] = None) -> "MoonModel":
        """A directory written by `save_pretrained` (bit-exact), or a raw local HF Qwen2-VL /
        Qwen2.5-VL checkpoint (wrapped with the default MOON config + `overrides`)."""
        path = Path(path)
        if (path / CONFIG_FILE).is_file():
            model = cls._load_saved(path, overrides)
        elif (path / "config.json").is_file():
            model = cls.from_config(wrap_config(path), overrides=overrides)
        else:
            raise ValueError(f"{path}: neither a saved MOON model ({CONFIG_FILE}) nor a Hugging Face "
                             "checkpoint (config.json)")
        return model.to(device) if device is not None else model

    @classmethod
    def _load_saved(cls, path: Path, overrides: Optional[Mapping[str, Any]]) -> "MoonModel":
        config = load_config_file(path / CONFIG_FILE)
        saved_lora = config.lora.enabled
        if overrides:
            config = apply_overrides(config, overrides)
        adapter = adapter_for(config.backbone.family)
        spec = path / BACKBONE_CONFIG_FILE
        try:
            hf_config = adapter.config_from_dict(json.loads(spec.read_text()))
        except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
            raise ValueError(f"{spec}: cannot read the backbone config ({exc})") from exc
        tokenizer = load_tokenizer(path)
        adapter.check_tokens(hf_config, special_token_ids(tokenizer), str(path))
        backbone = adapter.build(hf_config, config.backbone.attn_implementation, init_weights=False)
        # LoRA switched on by an override goes on top of the saved (plain) weights
        adding_lora = config.lora.enabled and not saved_lora
        build_config = apply_overrides(config, {"lora.enabled": False}) if adding_lora else config
        model = cls(build_config, backbone, adapter, tokenizer, model_id=f"moon:{path.name}")
        load_weights(model, path / WEIGHTS_FILE)
        if adding_lora:
            model.config = config
            model._inject_lora()
        return model

    def save_pretrained(self, path: PathLike, merge_lora: Optional[bool] = None) -> None:
        """Weights (safetensors), moon_config.json, backbone_config.json, tokenizer files and
        embedder.json. With LoRA, `merge_lora` (default: config.lora.merge_on_save) folds the
        adapters into the base weights and saves a plain model."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        merge = self.config.lora.merge_on_save if merge_lora is None else merge_lora
        config = self.config
        if self.config.lora.enabled and merge:
            state = merged_state_dict(self)
            config = apply_overrides(config, {"lora.enabled": False})
        else:
            state = self.state_dict()
        save_weights(state, path / WEIGHTS_FILE)
        with tempfile.TemporaryDirectory(dir=path, prefix=".tmp-") as tmp:
            tmp_dir = Path(tmp)
            (tmp_dir / CONFIG_FILE).write_text(json.dumps(config.to_json_dict(), indent=2))
            (tmp_dir / BACKBONE_CONFIG_FILE).write_text(self.backbone.config.to_json_string())
            self.processor.save_pretrained(tmp_dir)
            _atomic_dir_files(tmp_dir, path)
        write_embedder_file(path, "moon")

    # ---- training helpers ----------------------------------------------------------------------

    def _inject_lora(self) -> None:
        """Add adapters per config.lora and freeze the rest. LoRA trains the adapters; MoE
        routers and the projection head are new layers, so they train too."""
        inject_lora(self.backbone, self.config.lora)
        for name, param in self.named_parameters():
            param.requires_grad = "lora_" in name or name.startswith("head.") or ".router." in name

    def gradient_checkpointing_enable(self) -> None:
        """Activation checkpointing of every layer; MoE replays see the same segment ids."""
        self.backbone.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False, "context_fn": checkpoint_context})

    # ---- embedder API ----------------------------------------------------------------------------

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.config.resolved_dtype(self.device)

    @property
    def embedding_dim(self) -> int:
        return self.head.dim

    def config_dict(self) -> Mapping[str, object]:
        return {"architecture": "moon", "model_id": self.model_id, "config": self.config.to_json_dict(),
                "parameters": sum(p.numel() for p in self.parameters()), "weights": weights_digest(self)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, segment_ids: torch.Tensor,
                position_ids: torch.Tensor, pixel_values: Optional[torch.Tensor] = None,
                image_grid_thw: Optional[torch.Tensor] = None) -> EmbeddingOutput:
        """Inputs as produced by `self.processor` ([B, T] ids/mask/segments, [B, 3, T] positions,
        flattened patches + [num_images, 3] grids) -> EmbeddingOutput."""
        backbone, adapter = self.backbone, self.adapter
        embeds = backbone.get_input_embeddings()(input_ids)
        features, image_mask = None, None
        if pixel_values is not None:
            features = adapter.encode_images(backbone, pixel_values, image_grid_thw)
            image_mask = input_ids == self.image_token_id
            if int(image_mask.sum()) != features.embeds.shape[0]:
                raise ValueError(f"{int(image_mask.sum())} image tokens but {features.embeds.shape[0]} "
                                 "vision features: inputs were not built by this model's processor")
            embeds = embeds.masked_scatter(image_mask.unsqueeze(-1), features.embeds.to(embeds.dtype))
        mask = language_mask(self.config.pooling, backbone.config.text_config, embeds, attention_mask)
        with routing_scope(segment_ids if self.moe_layers else None) as routing, \
                short_sequence_attention(embeds, embeds.shape[1]):
            hidden = adapter.run_language_model(backbone, embeds, mask, position_ids.transpose(0, 1),
                                                image_mask, features)
        pooled = pool(hidden, attention_mask, segment_ids, self.config.pooling, self.config.pooling_image_share)
        embeddings, prefixes = self.head(pooled)
        moe = self.config.moe
        return EmbeddingOutput(embeddings=embeddings, aux_loss=routing.aux_loss(moe.aux_loss_weight, moe.z_loss_weight),
                               matryoshka=prefixes, stats=routing.stats())
