"""Build the embedder a recipe names: MOON or the open_clip baseline, new or from weights.

Both architectures share one construction contract (`from_config(name, tokenizer_corpus,
overrides, seed)` / `from_pretrained(dir, overrides)`), so the trainer never branches on
the architecture after this point.
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence

from moon.data.records import ProductRecord, QueryRecord
from moon.model.base import TrainableEmbedder
from moon.model.tokenizer import corpus_from_products, corpus_from_queries
from moon.train.recipe import ModelSection


def _model_class(architecture: str):
    if architecture == "moon":
        from moon.model.encoder import MoonModel

        return MoonModel
    from moon.model.baselines.openclip import OpenClipEmbedder

    return OpenClipEmbedder


def build_model(section: ModelSection, seed: int, products: Sequence[ProductRecord],
                queries: Sequence[QueryRecord]) -> TrainableEmbedder:
    """A fresh model (tokenizer trained on the training texts) or one loaded from model.dir."""
    cls = _model_class(section.architecture)
    overrides = section.overrides or None
    if section.dir is not None:
        model = cls.from_pretrained(section.dir, overrides=overrides)
    else:
        corpus = list(chain(corpus_from_products(products), corpus_from_queries(queries)))
        model = cls.from_config(section.name, tokenizer_corpus=corpus, overrides=overrides, seed=seed)
    if not isinstance(model, TrainableEmbedder):
        raise ValueError(f"model {section.dir or section.name} is not trainable")
    if section.gradient_checkpointing:
        enable = getattr(model, "gradient_checkpointing_enable", None)
        if enable is None:
            raise ValueError(f"model.gradient_checkpointing: {type(model).__name__} does not support it")
        enable()
    return model
