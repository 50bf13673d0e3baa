"""The gradient cache gives the plain path's gradients, inside real DeepSpeed engines."""

from __future__ import annotations

import pytest
import torch

from moon.data.records import FULL_VIEW
from moon.train.distributed import init_distributed
from moon.train.gradcache import gradcache_step
from moon.train.labels import LabelSampler, label_fields
from moon.train.loss import id_tensor
from moon.train.objective import BatchMeta, ContrastiveObjective, build_groups
from moon.train.queue import EmbeddingQueue
from moon.train.recipe import LossSection, NegativesSection
from moon.train.sampler import KINDS, TrainSampler
from moon.train.trainer import plain_step
from tests.conftest import build_products, build_queries
from tests.train.conftest import tiny_clip

LOSS = LossSection(temperature=0.1, learn_temperature=True, matryoshka_dims=[8], intra_product_weight=0.5,
                   query_image_weight=0.5, label_weight=0.5, aux_weight=0.0)
"""aux_weight 0: a MoE balance loss is taken per chunk under the gradient cache (documented), so only
the embedding losses can match exactly."""
NEGATIVES = NegativesSection(hard_k=1, spatial=True, queue_size=5)


@pytest.fixture(scope="module")
def batch():
    products = build_products(10, seed=4, images_per_product=(1, 2), size=24)
    sampler = TrainSampler(build_queries(products, seed=4), products, {k: 1.0 for k in KINDS}, batch_size=6,
                           hard_k=1, seed=0)
    b = sampler.batch(0)
    fields = label_fields(products, ["industry", "category", "type"], ["colour", "shape"])
    return products, b, LabelSampler(fields, per_field=4, seed=0).batch(b.positives, 0)


def _model(kind: str, products):
    if kind == "open_clip":
        return tiny_clip(products, seed=0)
    from moon.model.encoder import MoonModel
    from moon.model.tokenizer import corpus_from_products

    return MoonModel.from_config("moon-tiny", tokenizer_corpus=list(corpus_from_products(products)), seed=0,
                                 overrides={"backbone.text.num_layers": 2, "backbone.vision.depth": 2,
                                            "backbone.init": "standard"})


def _objective(products, kind: str = "open_clip") -> ContrastiveObjective:
    model = _model(kind, products)
    dim = model.embedding_dim
    queue = EmbeddingQueue(5, dim)
    queue.enqueue(torch.nn.functional.normalize(torch.randn(5, dim, generator=torch.Generator().manual_seed(1)), dim=-1),
                  id_tensor([f"q{i}" for i in range(5)]), id_tensor([f"g{i}" for i in range(5)]))
    obj = ContrastiveObjective(model, LOSS, NEGATIVES, queue)
    obj.queue_active = True
    return obj


def _engine(objective, stage: int):
    import deepspeed

    init_distributed()
    config = {"train_micro_batch_size_per_gpu": 6, "gradient_accumulation_steps": 1, "train_batch_size": 6,
              "managed_gradient_accumulation": False, "zero_optimization": {"stage": stage},
              "zero_allow_untested_optimizer": True, "steps_per_print": 2 ** 31 - 1}
    engine, _, _, _ = deepspeed.initialize(model=objective, config=config,
                                           optimizer=torch.optim.SGD(objective.parameters(), lr=1.0))
    return engine


def _run(engine, objective, batch, labels, chunk):
    groups = build_groups(batch, objective.model.processor, FULL_VIEW, intra=True, labels=labels, query_images=True)
    meta = BatchMeta.from_batch(batch, {k: 1.0 for k in KINDS}, labels)
    if chunk is None:
        return plain_step(engine, groups, meta, torch.device("cpu"), 0.5, lambda loss: None)
    return gradcache_step(engine, groups, meta, chunk, torch.device("cpu"), 0.5, LOSS.aux_weight)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Equal up to fp32 sums taken in another order, so the absolute tolerance follows the tensor's
    scale (a token-embedding gradient of magnitude ~7 differed by 4e-6 in one element, one thread,
    AVX2 CPU); a missing or doubled chunk's contribution is orders of magnitude larger."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * max(0.1, scale),
                               msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("kind", ["open_clip", pytest.param("moon", marks=pytest.mark.slow)])
def test_gradcache_gradients_equal_plain_gradients(batch, kind):
    products, b, labels = batch
    plain_obj, cached_obj = _objective(products, kind), _objective(products, kind)
    plain, cached = _engine(plain_obj, 0), _engine(cached_obj, 0)
    stats_plain = _run(plain, plain_obj, b, labels, None)
    stats_cached = _run(cached, cached_obj, b, labels, 4)  # uneven chunks: 6 queries -> 4+2, 12 products -> 4+4+4
    assert stats_cached["contrastive"].item() == pytest.approx(stats_plain["contrastive"].item(), rel=1e-5)
    assert stats_plain["label"].item() > 0
    assert stats_cached["label"].item() == pytest.approx(stats_plain["label"].item(), rel=1e-5)
    assert stats_plain["query_image"].item() > 0
    assert stats_cached["query_image"].item() == pytest.approx(stats_plain["query_image"].item(), rel=1e-5)
    grads = 0
    for (name, p), (_, c) in zip(plain_obj.named_parameters(), cached_obj.named_parameters()):
        if p.grad is None:
            assert c.grad is None, name
            continue
        grads += 1
        _assert_close(c.grad, p.grad, name)
    assert grads > 10 and plain_obj.temperature.log_scale.grad is not None
    assert torch.equal(plain_obj.queue.contents()[1], cached_obj.queue.contents()[1])


def test_gradcache_under_zero2_takes_the_same_optimizer_step(batch):
    products, b, labels = batch
    plain_obj, cached_obj = _objective(products), _objective(products)
    before = {n: p.detach().clone() for n, p in plain_obj.named_parameters()}
    plain, cached = _engine(plain_obj, 2), _engine(cached_obj, 2)
    _run(plain, plain_obj, b, labels, None)
    plain.step()
    _run(cached, cached_obj, b, labels, 5)
    cached.step()
    moved = 0
    for (name, p), (_, c) in zip(plain_obj.named_parameters(), cached_obj.named_parameters()):
        _assert_close(c.detach(), p.detach(), name)
        moved += int(not torch.equal(p.detach(), before[name]))
    assert moved > 10
