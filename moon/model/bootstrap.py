"""Create an untrained MOON model directory: config + tokenizer trained on a dataset's texts.

Training recipes and benchmarks start from such a directory, so the tokenizer (and therefore
the vocabulary and the embedding table) is fixed once, from the training split only: the
evaluation splits' texts never shape the vocabulary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from moon.data.shards import open_dataset
from moon.model.config import MoonConfig, resolve_config
from moon.model.encoder import MoonModel
from moon.model.tokenizer import corpus_from_products, corpus_from_queries


def dataset_corpus(data: Union[str, Path], splits: Sequence[str] = ("train",)) -> list[str]:
    """Titles, category paths, attribute strings and text queries of the given splits."""
    dataset = open_dataset(data)
    missing = [s for s in splits if not dataset.has(s, "products")]
    if missing:
        raise ValueError(f"{data}: no products in split(s) {missing} (splits: {', '.join(dataset.splits)})")
    texts: list[str] = []
    for split in splits:
        texts.extend(corpus_from_products(dataset.products(split)))
        if dataset.has(split, "queries"):
            texts.extend(corpus_from_queries(dataset.queries(split)))
    return texts


def init_model(config: Union[str, Path, MoonConfig], out: Union[str, Path], corpus: Optional[Union[str, Path]] = None,
               corpus_splits: Sequence[str] = ("train",), overrides: Optional[Mapping[str, Any]] = None,
               seed: int = 0) -> MoonModel:
    """Build (random weights, or a local checkpoint's) and save to `out`; returns the model."""
    resolved = resolve_config(config, overrides)
    texts = None
    if resolved.backbone.checkpoint is None:
        if corpus is None:
            raise ValueError(f"config '{resolved.name}' trains its tokenizer: give a dataset as corpus")
        texts = dataset_corpus(corpus, corpus_splits)
    model = MoonModel.from_config(resolved, tokenizer_corpus=texts, seed=seed)
    model.save_pretrained(out)
    return model
