"""Label alignment: fields from the data, per-step label candidates, the per-field loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from moon.data.records import DataError
from moon.train.labels import LabelAlignmentLoss, LabelSampler, label_fields
from moon.train.loss import Temperature
from tests.conftest import build_products

LEVELS = ["industry", "category", "type"]
ATTRIBUTES = ["colour", "shape"]


@pytest.fixture(scope="module")
def products():
    return build_products(12, seed=3, images_per_product=(1, 1), size=16)


def test_fields_hold_the_sorted_values_of_the_training_products(products):
    fields = {f.name: f for f in label_fields(products, LEVELS, ATTRIBUTES)}
    assert fields["type"].level == 2 and fields["colour"].level is None
    assert fields["colour"].values == tuple(sorted({p.attributes["colour"] for p in products}))
    colours = [p.attributes["colour"] for p in products]
    assert fields["colour"].counts == tuple(colours.count(v) for v in fields["colour"].values)
    assert fields["type"].values == tuple(sorted({p.category[2] for p in products}))
    only = label_fields(products, LEVELS, ATTRIBUTES, wanted=["colour"])
    assert [f.name for f in only] == ["colour"]


def test_unknown_or_single_valued_fields_are_reported(products):
    with pytest.raises(DataError, match=r"loss.label_fields: unknown field\(s\) gender"):
        label_fields(products, LEVELS, ATTRIBUTES, wanted=["colour", "gender"])
    same = [p.model_copy(update={"attributes": {"colour": "red"}}) for p in products]
    with pytest.raises(DataError, match="two or more values"):
        label_fields(same, LEVELS, ATTRIBUTES, wanted=["colour"])


def test_every_positive_targets_its_own_label_text(products):
    fields = label_fields(products, LEVELS, ATTRIBUTES)
    batch = LabelSampler(fields, per_field=64, seed=0).batch(products[:5], step=0)
    assert batch.per_field == [len(f.values) for f in fields]
    assert len(batch.texts) == sum(batch.per_field)
    for f, field in enumerate(fields):
        for b, product in enumerate(products[:5]):
            assert batch.texts[int(batch.targets[f, b])] == field.value_of(product)
        start = sum(batch.per_field[:f])
        assert set(int(t) for t in batch.targets[f]) <= set(range(start, start + batch.per_field[f]))


def test_capped_fields_keep_the_batch_labels_and_a_fixed_size(products):
    fields = label_fields(products, LEVELS, ATTRIBUTES, wanted=["colour"])
    assert len(fields[0].values) > 3
    sampler = LabelSampler(fields, per_field=3, seed=0)
    seen = set()
    for step in range(6):
        batch = sampler.batch(products[:2], step)
        assert len(batch.texts) == 3 and len(set(batch.texts)) == 3
        for b, product in enumerate(products[:2]):
            assert batch.texts[int(batch.targets[0, b])] == product.attributes["colour"]
        seen.update(batch.texts)
        again = sampler.batch(products[:2], step)
        assert again.texts == batch.texts and torch.equal(again.targets, batch.targets)
    assert len(seen) > 3  # the other candidates change from step to step


def test_loss_is_the_mean_of_per_field_cross_entropies_over_own_field_texts():
    texts = F.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    products = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), dim=-1)

    class Batch:
        per_field = [2, 3]
        targets = torch.tensor([[0, 1, -1], [4, 2, 3]])
        offsets = None

    loss = LabelAlignmentLoss(Temperature(0.5, learnable=False))(products, texts, Batch())
    logits = products @ texts.T / 0.5
    first = F.cross_entropy(logits[:2, :2], torch.tensor([0, 1]))  # product 2 has no value of field 0
    second = F.cross_entropy(logits[:, 2:], torch.tensor([2, 0, 1]))
    assert loss.item() == pytest.approx(((first + second) / 2).item(), rel=1e-6)

    Batch.targets = torch.full((2, 3), -1)
    leaf = products.clone().requires_grad_(True)
    empty = LabelAlignmentLoss(Temperature(0.5, learnable=False))(leaf, texts, Batch())
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(leaf.grad, torch.zeros_like(leaf))


def test_logit_adjustment_offsets_are_tau_log_prior_of_each_candidate(products):
    skewed = [p.model_copy(update={"attributes": {**p.attributes, "colour": "red" if i < 9 else "blue"}})
              for i, p in enumerate(products)]
    fields = label_fields(skewed, LEVELS, ATTRIBUTES, wanted=["colour", "shape"])
    assert LabelSampler(fields, per_field=64, seed=0).batch(skewed[:3], 0).offsets is None
    batch = LabelSampler(fields, per_field=64, seed=0, logit_adjust={"colour": 0.5}).batch(skewed[:3], 0)
    prior = {"red": 9 / 12, "blue": 3 / 12}
    for text, offset in zip(batch.texts[:2], batch.offsets[:2].tolist()):
        assert offset == pytest.approx(0.5 * math.log(prior[text]), rel=1e-6)
    assert batch.offsets[2:].abs().sum() == 0  # shape is not adjusted
    with pytest.raises(DataError, match=r"label_logit_adjust: field\(s\) type are not aligned"):
        LabelSampler(fields, per_field=64, seed=0, logit_adjust={"type": 1.0})


def test_logit_adjustment_charges_the_rare_class_more_at_equal_similarity():
    """Training with the prior added makes a rare-class product pay for the frequent label's
    head start, so the plain similarities the benchmark ranks by must beat it by a margin."""
    product = F.normalize(torch.randn(1, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    texts = torch.cat([product, product])  # both labels equally similar to the product

    class Batch:
        per_field = [2]
        targets = torch.tensor([[1]])  # the product's label is the rare one (prior 0.1)
        offsets = torch.log(torch.tensor([0.9, 0.1]))

    loss_fn = LabelAlignmentLoss(Temperature(0.5, learnable=False))
    adjusted = loss_fn(product, texts, Batch())
    Batch.offsets = None
    plain = loss_fn(product, texts, Batch())
    assert plain.item() == pytest.approx(math.log(2), rel=1e-5)
    assert adjusted.item() == pytest.approx(-math.log(0.1), rel=1e-5)
