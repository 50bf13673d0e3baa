from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from moon.train.checkpoint import LATEST, CheckpointManager, rng_state, set_rng_state, tag_for
from moon.train.distributed import init_distributed
from moon.train.loss import id_tensor
from moon.train.objective import ContrastiveObjective
from moon.train.queue import EmbeddingQueue
from moon.train.recipe import LossSection, NegativesSection
from tests.conftest import build_products
from tests.train.conftest import tiny_clip


def _engine(seed: int):
    import deepspeed

    init_distributed()
    products = build_products(4, seed=2, images_per_product=(1, 1), size=16)
    obj = ContrastiveObjective(tiny_clip(products, seed=seed), LossSection(), NegativesSection())
    config = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "train_batch_size": 2,
              "managed_gradient_accumulation": False, "steps_per_print": 2 ** 31 - 1,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}}
    engine, _, _, _ = deepspeed.initialize(model=obj, model_parameters=obj.parameters(), config=config)
    return engine, obj


def test_rng_state_round_trip_is_json():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = json.loads(json.dumps(rng_state()))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_save_load_round_trip_latest_and_pruning(tmp_path):
    engine, obj = _engine(seed=0)
    queue = EmbeddingQueue(4, 32)
    queue.enqueue(torch.randn(3, 32), id_tensor(["a", "b", "c"]), id_tensor(["g", "g", "h"]))
    manager = CheckpointManager(tmp_path / "ckpt", keep=2, rank=0, world_size=1)
    assert manager.latest() is None
    for step in (1, 2, 3):
        manager.save(engine, step, {"sampler": {"seed": 0}}, queue)
    assert manager.complete_tags() == [tag_for(2), tag_for(3)]
    assert (tmp_path / "ckpt" / LATEST).read_text() == tag_for(3)
    assert not list((tmp_path / "ckpt").glob("*.tmp"))

    other, other_obj = _engine(seed=1)
    restored = EmbeddingQueue(4, 32)
    torch.manual_seed(123)
    state = manager.load(other, manager.latest(), restored)
    assert state["step"] == 3 and state["sampler"] == {"seed": 0}
    for (name, a), (_, b) in zip(obj.named_parameters(), other_obj.named_parameters()):
        assert torch.equal(a, b), name
    assert torch.equal(restored.contents()[0], queue.contents()[0])


def test_stale_pointer_and_partial_writes_fall_back_to_newest_complete(tmp_path):
    engine, _ = _engine(seed=0)
    manager = CheckpointManager(tmp_path, keep=3, rank=0, world_size=1)
    manager.save(engine, 5, {}, None)
    (tmp_path / "step-00000009.tmp").mkdir()  # a run killed while writing step 9
    (tmp_path / LATEST).write_text("step-00000009")
    assert manager.latest() == tag_for(5)
    manager.cleanup_partial()
    assert not (tmp_path / "step-00000009.tmp").exists()


def test_queue_required_when_the_recipe_has_one(tmp_path):
    engine, _ = _engine(seed=0)
    manager = CheckpointManager(tmp_path, keep=1, rank=0, world_size=1)
    manager.save(engine, 1, {}, None)
    with pytest.raises(ValueError, match="negative queue"):
        manager.load(engine, tag_for(1), EmbeddingQueue(2, 32))
