"""Train-test fixtures: a very small real open_clip model and recipes over `tiny_dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from moon.data.records import ProductRecord
from moon.model.baselines.openclip import OpenClipEmbedder
from tests.conftest import write_tiny_dataset

TINY_CLIP = {
    "clip.embed_dim": 32,
    "clip.vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 2, "width": 64, "head_width": 32,
                        "block_type": "custom"},
    "clip.text_cfg": {"context_length": 16, "vocab_size": 400, "width": 64, "heads": 2, "layers": 2,
                      "block_type": "custom"},
}
"""openclip-tiny shrunk to milliseconds per step: same code paths as the real baseline."""


def tiny_clip(products: list[ProductRecord], seed: int = 0) -> OpenClipEmbedder:
    corpus = [p.title for p in products] + [" > ".join(p.category) for p in products]
    return OpenClipEmbedder.from_config("openclip-tiny", tokenizer_corpus=corpus, overrides=TINY_CLIP, seed=seed)


def recipe_dict(dataset: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A complete small recipe for the tiny dataset; `sections` update single sections."""
    recipe: dict[str, Any] = {
        "name": "tiny",
        "model": {"architecture": "open_clip", "name": "openclip-tiny", "overrides": TINY_CLIP},
        "data": {"dataset": str(dataset), "query_mix": {"text": 1, "image": 1, "product": 1}},
        "loss": {"temperature": 0.1},
        "negatives": {"hard_k": 1, "queue_size": 16},
        "optim": {"lr": 2e-3, "steps": 8, "batch_size": 6, "warmup_steps": 2},
        "deepspeed": {"zero_stage": 0, "precision": "fp32"},
        "run": {"seed": 0, "log_every": 1, "threads": 1},
        "validation": {"max_queries": 6, "batch_size": 8},
    }
    for name, update in sections.items():
        recipe[name] = {**recipe.get(name, {}), **update}
    return recipe


@pytest.fixture(scope="session")
def train_dataset(tmp_path_factory) -> Path:
    """The same content as the shared `tiny_dataset`, written once per session: training
    tests only read it."""
    return write_tiny_dataset(tmp_path_factory.mktemp("train-data") / "tiny")


@pytest.fixture
def write_recipe(tmp_path: Path, train_dataset: Path) -> Callable[..., Path]:
    """write_recipe(**section_updates) -> path of a YAML recipe over `train_dataset`."""

    def write(name: str = "recipe.yaml", **sections: dict[str, Any]) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(recipe_dict(train_dataset, **sections), sort_keys=False))
        return path

    return write
