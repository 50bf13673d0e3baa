"""The training recipe: one validated YAML file that says everything a run does.

This is the single place the recipe schema lives. `load_recipe` parses the YAML, applies
`a.b=c` overrides, validates every field (unknown keys and wrong types are errors naming
the key path, e.g. "recipe.yaml: optim.lr: Input should be a valid number") and checks
that the data and model paths exist, all before any model is built or process group
started, so a typo costs seconds rather than a queued multi-GPU job. The recipe also
generates the DeepSpeed config, so batch sizes, precision, ZeRO stage, clipping,
optimizer and LR schedule cannot disagree between the two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moon.data.importers.augment import SCALE as AUGMENT_SCALE
from moon.data.records import ProductView, QueryKind
from moon.train.precision import RequestedPrecision, resolve_precision

RESERVED_DEEPSPEED_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                           "gradient_clipping", "optimizer", "scheduler", "bf16", "fp16", "torch_autocast",
                           "managed_gradient_accumulation")
"""DeepSpeed keys the recipe owns; an extra DeepSpeed file may not set them."""


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the file and the key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelSection(_Strict):
    """Which encoder to train: a named/JSON config built from scratch, or a saved directory."""

    architecture: Literal["moon", "open_clip"] = "moon"
    name: Optional[str] = Field(default=None, description="named config ('moon-tiny', 'openclip-tiny') or JSON")
    dir: Optional[Path] = Field(default=None, description="a saved model (or, for moon, a local HF checkpoint)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="model config keys to set, dotted "
                                      "(moe.mode: 'off') or nested ({moe: {mode: 'off'}})")
    gradient_checkpointing: bool = False

    @field_validator("overrides")
    @classmethod
    def _flatten(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Nested mappings become dotted leaf keys, so YAML nesting and CLI `a.b=c` agree."""
        flat: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            if isinstance(node, dict) and node:
                for key, child in node.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), child)
            else:
                flat[prefix] = node

        for key, child in value.items():
            walk(str(key), child)
        return flat

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSection":
        if (self.name is None) == (self.dir is None):
            raise ValueError("set exactly one of model.name (build from a config) or model.dir (start from weights)")
        return self


class KindMix(_Strict):
    """A non-negative number per query kind (a ratio or a weight)."""

    text: float = Field(ge=0)
    image: float = Field(ge=0)
    product: float = Field(ge=0)

    @model_validator(mode="after")
    def _positive(self) -> "KindMix":
        if self.text + self.image + self.product <= 0:
            raise ValueError("at least one query kind needs a positive value")
        return self

    def of(self, kind: QueryKind) -> float:
        return float(getattr(self, kind.value))


class ViewSection(_Strict):
    """Which product fields the encoder sees during training (see moon.data.records.ProductView)."""

    images: bool = True
    crops: bool = True
    title: bool = True
    category: bool = True
    attributes: bool = True

    def to_view(self) -> ProductView:
        return ProductView(**self.model_dump())


class PhotoAugmentSection(_Strict):
    """How `data.product_photos: augmented` draws its views (moon.train.sampler.PhotoAugment)."""

    share: float = Field(default=1.0, gt=0, le=1, description="fraction of the shown products augmented at a step")
    min_area: float = Field(default=AUGMENT_SCALE[0], gt=0, le=1, description="smallest fraction of the photo a crop keeps")
    scope: Literal["all", "products"] = Field(
        default="all", description="which embeddings see the views: all, or products (only the products the "
                                   "queries are scored against; the image-alone, title-alone and image + title "
                                   "passes of the intra, label and query -> image terms keep the stored photos)")


class DataSection(_Strict):
    dataset: Path
    train_split: str = "train"
    val_split: Optional[str] = "val"
    negatives: Optional[Path] = Field(default=None, description="hard-negative sidecar parquet from the miner")
    query_mix: KindMix = Field(default_factory=lambda: KindMix(text=3, image=12, product=2),
                               description="per-batch ratio of query kinds; MOON uses image:text:product 12:3:2")
    product_view: ViewSection = Field(default_factory=ViewSection)
    image_queries: Literal["stored", "fresh"] = Field(
        default="stored", description="stored: the image queries as written in the dataset; fresh: every draw "
                                      "re-augments the positive's first photo (random resized crop + flip, the "
                                      "fashion import's augmentation), a new view each epoch")
    product_photos: Literal["stored", "augmented"] = Field(
        default="stored", description="stored: products' photos as written; augmented: every positive and hard "
                                      "negative shows a fresh random resized crop + flip of its first photo at each "
                                      "step (CLIP-style training augmentation; core boxes follow the view)")
    product_photo_augment: PhotoAugmentSection = Field(
        default_factory=PhotoAugmentSection, description="share of products augmented and crop size, used "
                                                         "with product_photos: augmented")

    @model_validator(mode="after")
    def _augment_needs_augmented_photos(self) -> "DataSection":
        if self.product_photos == "stored" and self.product_photo_augment != PhotoAugmentSection():
            raise ValueError("data.product_photo_augment is set but data.product_photos is 'stored'; "
                             "set data.product_photos: augmented to use it")
        return self


class LossSection(_Strict):
    temperature: float = Field(default=0.05, gt=0, le=1)
    learn_temperature: bool = True
    max_logit_scale: float = Field(default=100.0, gt=1)
    matryoshka_dims: list[int] = Field(default_factory=list, description="extra InfoNCE terms on prefixes")
    matryoshka_weights: Optional[list[float]] = None
    aux_weight: float = Field(default=1.0, ge=0, description="multiplier of the model's MoE auxiliary loss")
    intra_product_weight: float = Field(default=0.0, ge=0, description="MOON2.0 image <-> own title InfoNCE")
    intra_hard_negatives: bool = Field(default=False, description="the intra term's image -> title direction also "
                                       "scores the hard negatives' titles")
    intra_hard_images: bool = Field(default=False, description="the intra term's title -> image direction also "
                                    "scores the hard negatives' images alone (one more forward pass of them)")
    query_image_weight: float = Field(default=0.0, ge=0, description="queries of `query_image_kinds` <-> the "
                                      "positives' images alone (text -> image search's pairing; no extra forward "
                                      "pass when the intra or label term already embeds the images)")
    query_image_kinds: list[QueryKind] = Field(
        default_factory=lambda: [QueryKind.TEXT], min_length=1,
        description="query kinds the query -> image-alone term scores: text (t2i's pairing) and/or image (an "
                    "augmented view against its own photo alone: the image tower's invariance to the crops "
                    "and flips of image queries)")
    label_weight: float = Field(default=0.0, ge=0, description="label alignment: image + title <-> own label texts "
                                "(moon.train.labels)")
    label_fields: Optional[list[str]] = Field(default=None, description="category levels / attributes to align; "
                                              "default every one of the dataset")
    label_candidates: int = Field(default=64, ge=2, description="label texts per field and step")
    label_inputs: list[Literal["image", "title", "image_title"]] = Field(
        default_factory=lambda: ["image", "title"], min_length=1,
        description="embeddings the label term scores: image alone, title alone, and/or image + title (the "
                    "zero-shot benchmarks' input; one more forward pass of the positives)")
    label_distractors: int = Field(default=0, ge=0, description="made-up words added to every field's label "
                                   "candidates each step, so unfamiliar label texts do not become hubs "
                                   "(moon.train.labels)")
    label_logit_adjust: dict[str, float] = Field(default_factory=dict, description="field -> tau: add tau * log(prior) "
                                                 "to the field's label logits in training (long-tail macro-F1)")
    kind_weights: KindMix = Field(default_factory=lambda: KindMix(text=1, image=1, product=1))

    @model_validator(mode="after")
    def _consistent(self) -> "LossSection":
        if any(d <= 0 for d in self.matryoshka_dims):
            raise ValueError("matryoshka_dims must be positive")
        if self.matryoshka_weights is not None and len(self.matryoshka_weights) != len(self.matryoshka_dims):
            raise ValueError("matryoshka_weights needs one weight per matryoshka_dims entry")
        if any(tau < 0 for tau in self.label_logit_adjust.values()):
            raise ValueError(f"label_logit_adjust: tau must be >= 0, got {self.label_logit_adjust}")
        if len(set(self.query_image_kinds)) != len(self.query_image_kinds):
            raise ValueError(f"query_image_kinds repeats a kind: {[k.value for k in self.query_image_kinds]}")
        if len(set(self.label_inputs)) != len(self.label_inputs):
            raise ValueError(f"label_inputs repeats an input: {self.label_inputs}")
        if self.intra_hard_negatives and self.intra_product_weight == 0:
            raise ValueError("intra_hard_negatives is set but intra_product_weight is 0: there is no intra term")
        if self.intra_hard_images and self.intra_product_weight == 0:
            raise ValueError("intra_hard_images is set but intra_product_weight is 0: there is no intra term")
        if self.label_distractors and self.label_weight == 0:
            raise ValueError("label_distractors is set but label_weight is 0: there is no label term to add them to")
        if self.label_logit_adjust and self.label_weight == 0:
            raise ValueError("label_logit_adjust is set but label_weight is 0: there is no label term to adjust")
        return self


class NegativesSection(_Strict):
    in_batch: bool = Field(default=True, description="other queries' positives and hard negatives")
    hard_k: int = Field(default=0, ge=0, description="same-category hard negatives per positive")
    hard_query_kinds: list[QueryKind] = Field(
        default_factory=lambda: list(QueryKind),
        description="query kinds scored against the hard negatives (every rank's); the other kinds see "
                    "only positives, other ranks' positives and the queue")
    spatial: bool = Field(default=True, description="all-gather products from every data-parallel rank")
    queue_size: int = Field(default=0, ge=0, description="temporal FIFO of product embeddings (0 = off)")
    queue_start_step: int = Field(default=0, ge=0, description="steps before the queue is used")
    mask_shared_answers: bool = Field(
        default=True, description="never score as a negative a product that another training query with the "
                                  "same text points at (moon.data.answers)")

    @model_validator(mode="after")
    def _hard_kinds(self) -> "NegativesSection":
        if self.hard_k and not self.hard_query_kinds:
            raise ValueError("negatives.hard_query_kinds is empty while hard_k > 0: the mined negatives would be "
                             "embedded every step and scored by no query; list a kind or set hard_k: 0")
        return self


class OptimSection(_Strict):
    lr: float = Field(gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(default=1e-6, gt=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(default=10, ge=1)
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1)
    steps: int = Field(gt=0)
    batch_size: int = Field(gt=0, description="queries per rank per micro-batch")
    grad_accum: int = Field(default=1, ge=1)
    grad_clip: float = Field(default=1.0, ge=0, description="0 disables clipping")
    gradcache_chunk: Optional[int] = Field(default=None, gt=0, description="gradient-cache chunk size (None = off)")
    torch_adam: Optional[bool] = Field(default=None, description="torch AdamW instead of DeepSpeed's fused kernel; "
                                                                 "default: torch on CPU")


class DeepSpeedSection(_Strict):
    zero_stage: int = Field(default=0, ge=0, le=3)
    precision: RequestedPrecision = Field(
        default="auto", description="bf16: bf16 weights + fp32 master (GPU); autocast-bf16: fp32 weights, "
                                    "bf16 matmuls (CPU with AMX/AVX512-BF16); auto: bf16 on CUDA devices that "
                                    "support it, autocast-bf16 on CPUs with native bf16, else fp32 "
                                    "(moon.train.precision)")
    offload_optimizer: bool = False
    config_file: Optional[Path] = Field(default=None, description="extra DeepSpeed JSON (ZeRO tuning) merged in")


class RunSection(_Strict):
    seed: int = 0
    output_dir: Optional[Path] = Field(default=None, description="default: runs/<recipe name>")
    log_every: int = Field(default=10, gt=0)
    checkpoint_every: int = Field(default=0, ge=0, description="0: only at the end")
    keep_checkpoints: int = Field(default=2, ge=1)
    validate_every: int = Field(default=0, ge=0, description="0: only before and after training")
    threads: Optional[int] = Field(default=None, gt=0, description="torch intra-op threads per rank")


class ValidationSection(_Strict):
    enabled: bool = True
    kinds: list[QueryKind] = Field(default_factory=lambda: [QueryKind.TEXT, QueryKind.IMAGE])
    k: int = Field(default=10, gt=0)
    max_queries: int = Field(default=500, gt=0, description="per kind")
    batch_size: int = Field(default=64, gt=0)
    at_start: bool = Field(default=True, description="score the untrained model too")


class Recipe(_Strict):
    name: str = Field(min_length=1)
    model: ModelSection
    data: DataSection
    loss: LossSection = Field(default_factory=LossSection)
    negatives: NegativesSection = Field(default_factory=NegativesSection)
    optim: OptimSection
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection)
    run: RunSection = Field(default_factory=RunSection)
    validation: ValidationSection = Field(default_factory=ValidationSection)

    @model_validator(mode="after")
    def _intra_hard_needs_negatives(self) -> "Recipe":
        """The intra term's hard-negative columns come from the mined negatives: with none the
        option would silently do nothing (e.g. an in-batch-only ablation inheriting it)."""
        if self.negatives.hard_k == 0:
            for key in ("intra_hard_negatives", "intra_hard_images"):
                if getattr(self.loss, key):
                    raise ValueError(f"loss.{key} is set but negatives.hard_k is 0: there are no hard "
                                     f"negatives to score; set loss.{key}: false or hard_k > 0")
        return self

    @model_validator(mode="after")
    def _query_image_needs_its_queries(self) -> "Recipe":
        """Only the kinds in `loss.query_image_kinds` are scored against the images alone: a mix
        without any of them would make the term a silent no-op."""
        kinds = self.loss.query_image_kinds
        if self.loss.query_image_weight > 0 and all(self.data.query_mix.of(k) == 0 for k in kinds):
            names = ", ".join(k.value for k in kinds)
            raise ValueError(f"loss.query_image_weight is set but data.query_mix gives no share to the kinds it "
                             f"scores (loss.query_image_kinds: {names}); set loss.query_image_weight: 0 or give "
                             f"one of them a share")
        return self

    def output_dir(self) -> Path:
        return self.run.output_dir or Path("runs") / self.name

    def deepspeed_config(self, world_size: int, use_cuda: bool = False) -> dict[str, Any]:
        """The DeepSpeed config this recipe implies for `world_size` data-parallel ranks.

        Gradient accumulation is driven by the trainer (`managed_gradient_accumulation:
        false`): micro-batches and gradient-cache chunks each call backward, and every
        engine.step() is an optimizer step, so both features share one code path.
        """
        o, ds = self.optim, self.deepspeed
        precision = resolve_precision(ds.precision, use_cuda)
        torch_adam = (not use_cuda) if o.torch_adam is None else o.torch_adam
        schedule: dict[str, Any]
        common = {"warmup_num_steps": o.warmup_steps, "warmup_type": "linear"}
        if o.schedule == "cosine":
            schedule = {"type": "WarmupCosineLR", "params": {
                **common, "total_num_steps": o.steps, "warmup_min_ratio": 0.0, "cos_min_ratio": o.min_lr_ratio}}
        elif o.schedule == "linear":
            schedule = {"type": "WarmupDecayLR", "params": {
                **common, "total_num_steps": o.steps, "warmup_min_lr": 0.0, "warmup_max_lr": o.lr}}
        else:
            schedule = {"type": "WarmupLR", "params": {**common, "warmup_min_lr": 0.0, "warmup_max_lr": o.lr}}
        zero: dict[str, Any] = {"stage": ds.zero_stage}
        if ds.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu"}
        config: dict[str, Any] = {
            "train_micro_batch_size_per_gpu": o.batch_size,
            "gradient_accumulation_steps": o.grad_accum,
            "train_batch_size": o.batch_size * o.grad_accum * world_size,
            "managed_gradient_accumulation": False,
            "gradient_clipping": o.grad_clip,
            "optimizer": {"type": "AdamW", "params": {
                "lr": o.lr, "betas": list(o.betas), "eps": o.eps, "weight_decay": o.weight_decay,
                # torch's fused CPU AdamW: one kernel for all tensors, ~2x the per-tensor loop.
                **({"torch_adam": True, "fused": not use_cuda} if torch_adam else {})}},
            "scheduler": schedule,
            "zero_optimization": zero,
            "bf16": {"enabled": precision == "bf16"},
            "torch_autocast": {"enabled": precision == "autocast-bf16", "dtype": "bfloat16"},
            "steps_per_print": 2 ** 31 - 1,
            "wall_clock_breakdown": False,
        }
        if ds.config_file is not None:
            extra = json.loads(Path(ds.config_file).read_text())
            for key, value in extra.items():
                if isinstance(value, dict) and isinstance(config.get(key), dict):
                    config[key] = {**config[key], **value}
                else:
                    config[key] = value
        return config


# ---- loading ---------------------------------------------------------------------------------


_YAML11_BOOLEAN_WORDS = {"yes", "no", "on", "off", "y", "n"}


def _parse_scalar(text: str) -> Any:
    """Override values are YAML scalars/flow collections: 1e-3, true, null, [32, 64], {a: 1}.

    Only true/false are booleans (YAML 1.2): `moe.mode=off` must stay the string 'off'.
    """
    if text.strip().lower() in _YAML11_BOOLEAN_WORDS:
        return text.strip()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(tree: dict[str, Any], override: str, where: str) -> None:
    if "=" not in override:
        raise RecipeError(f"{where}: override '{override}' must look like key.path=value")
    key, _, raw = override.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError(f"{where}: override '{override}' has an empty key")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(f"{where}: override '{override}': '{'.'.join(parts[:i + 1])}' is not a section")
        node = child
    node[parts[-1]] = _parse_scalar(raw)


def _format_errors(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<recipe>"
        lines.append(f"{where}: {loc}: {err.get('msg')}")
    return "\n".join(lines)


def _check_paths(recipe: Recipe, where: str) -> None:
    problems = []
    ds = recipe.data.dataset
    if not ds.is_dir():
        problems.append(f"{where}: data.dataset: directory does not exist: {ds}")
    elif not (ds / "manifest.json").is_file():
        problems.append(f"{where}: data.dataset: {ds} is not a dataset (no manifest.json; "
                        "make one with `moon data synth` or `moon data import`)")
    if recipe.data.negatives is not None and not recipe.data.negatives.is_file():
        problems.append(f"{where}: data.negatives: file does not exist: {recipe.data.negatives}")
    if recipe.model.dir is not None and not recipe.model.dir.is_dir():
        problems.append(f"{where}: model.dir: directory does not exist: {recipe.model.dir}")
    cfg = recipe.deepspeed.config_file
    if cfg is not None:
        if not cfg.is_file():
            problems.append(f"{where}: deepspeed.config_file: file does not exist: {cfg}")
        else:
            try:
                extra = json.loads(cfg.read_text())
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: deepspeed.config_file: {cfg} is not JSON ({exc})")
            else:
                if not isinstance(extra, dict):
                    problems.append(f"{where}: deepspeed.config_file: {cfg} must hold a JSON object")
                else:
                    owned = sorted(set(extra) & set(RESERVED_DEEPSPEED_KEYS))
                    if "stage" in (extra.get("zero_optimization") or {}):
                        owned.append("zero_optimization.stage")
                    if owned:
                        problems.append(f"{where}: deepspeed.config_file: {cfg} sets {owned}; "
                                        "set these in the recipe (optim / deepspeed sections)")
    if recipe.optim.warmup_steps > recipe.optim.steps:
        problems.append(f"{where}: optim.warmup_steps: {recipe.optim.warmup_steps} is more than "
                        f"optim.steps ({recipe.optim.steps})")
    problems += check_model(recipe, where)
    if problems:
        raise RecipeError("\n".join(problems))


def check_model(recipe: Recipe, where: str) -> list[str]:
    """Resolve the model config now, so a bad override or a missing checkpoint fails early."""
    model = recipe.model
    if model.name is None:
        return []
    try:
        if model.architecture == "moon":
            from moon.model.config import resolve_config

            checkpoint = resolve_config(model.name, model.overrides or None).backbone.checkpoint
            if checkpoint is not None and not Path(checkpoint).is_dir():
                return [f"{where}: model: backbone.checkpoint of '{model.name}' is not a directory: {checkpoint} "
                        "(put the Hugging Face checkpoint there or set model.overrides.backbone.checkpoint)"]
        else:
            from moon.model.baselines.openclip import resolve_config as resolve_openclip

            resolve_openclip(model.name, model.overrides or None)
    except ValueError as exc:
        return [f"{where}: model: {exc}"]
    return []


def parse_recipe(data: Any, where: str = "recipe", overrides: Sequence[str] = (),
                 check_paths: bool = True) -> Recipe:
    """Validate an already-loaded mapping (+ overrides); `where` prefixes every error line."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    for override in overrides:
        apply_override(data, override, where)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_format_errors(exc, where)) from None
    if check_paths:
        _check_paths(recipe, where)
    return recipe


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> Any:
    """A recipe's mapping; `base: other.yaml` (relative to this file) is read first and this
    file's sections are merged over it, so an ablation states only what it changes."""
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file does not exist"
                          + (f" (base of {chain[-1].name})" if chain else ""))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path.name}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or "base" not in data:
        return data
    base = data.pop("base")
    if not isinstance(base, str):
        raise RecipeError(f"{path.name}: base: expected the path of another recipe, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        raise RecipeError(f"{path.name}: base: '{base}' makes a cycle")
    parent = _read_yaml(base_path, chain + (path.resolve(),))
    if not isinstance(parent, dict):
        raise RecipeError(f"{base_path.name}: expected a mapping at the top level")
    return _merge(parent, data)


def load_recipe(path: Union[str, Path], overrides: Sequence[str] = (), check_paths: bool = True) -> Recipe:
    """Read, override and validate a recipe file; every problem names the file and key path."""
    path = Path(path)
    return parse_recipe(_read_yaml(path), path.name, overrides, check_paths)


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (saved beside a run so it can be reproduced)."""
    return yaml.safe_dump(json.loads(recipe.model_dump_json()), sort_keys=False)
