"""Label alignment: fields from the data, per-step label candidates, the per-field loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from moon.data.records import DataError
from moon.train.labels import LabelAlignmentLoss, LabelBatch, LabelSampler, PseudoWords, label_fields
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
        distractors = 0

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
        distractors = 0

    loss_fn = LabelAlignmentLoss(Temperature(0.5, learnable=False))
    adjusted = loss_fn(product, texts, Batch())
    Batch.offsets = None
    plain = loss_fn(product, texts, Batch())
    assert plain.item() == pytest.approx(math.log(2), rel=1e-5)
    assert adjusted.item() == pytest.approx(-math.log(0.1), rel=1e-5)


def test_distractors_are_made_up_words_after_every_field_and_never_targets(products):
    fields = label_fields(products, LEVELS, ATTRIBUTES)
    known = {v.casefold() for f in fields for v in f.values}
    plain = LabelSampler(fields, per_field=64, seed=0).batch(products[:4], step=0)
    sampler = LabelSampler(fields, per_field=64, seed=0, distractors=6)
    batch = sampler.batch(products[:4], step=0)
    assert plain.distractors == 0 and batch.distractors == 6
    assert batch.texts[:len(plain.texts)] == plain.texts and torch.equal(batch.targets, plain.targets)
    words = batch.texts[len(plain.texts):]
    assert len(words) == len(set(words)) == 6
    assert not {w.casefold() for w in words} & known
    assert sampler.batch(products[:4], step=0).texts == batch.texts  # a pure function of the step (resume)
    assert sampler.batch(products[:4], step=1).texts[len(plain.texts):] != words


def test_pseudo_words_look_like_the_values_but_never_equal_one():
    values = ["Red", "Bed", "Reed", "Navy Blue"]
    words = PseudoWords(values, min_len=3, max_len=6).sample(np.random.default_rng(0), 40)
    assert len(set(words)) == 40
    for text in words:
        assert text.casefold() not in {v.casefold() for v in values}
        for word in text.split():
            assert 3 <= len(word) <= 6 and word.isalpha() and word[0].isupper()
            assert set(word.lower()) <= set("rednavyblu")  # letters the values use, nothing else
    with pytest.raises(ValueError, match="alphabetic"):
        PseudoWords(["42", "7"])
    with pytest.raises(ValueError, match="only 1 distinct made-up words"):  # "red" is known: "red red" only
        PseudoWords(["Red"]).sample(np.random.default_rng(0), 3)


def test_distractors_compete_in_every_fields_softmax():
    texts = F.normalize(torch.randn(7, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    products = F.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    batch = LabelBatch(texts=["a", "b", "c", "d", "e", "x", "y"], targets=torch.tensor([[0, 1], [3, 4]]),
                       per_field=[2, 3], distractors=2)
    loss = LabelAlignmentLoss(Temperature(0.5, learnable=False))(products, texts, batch)
    logits = products @ texts.T / 0.5
    first = F.cross_entropy(torch.cat([logits[:, :2], logits[:, 5:]], 1), torch.tensor([0, 1]))
    second = F.cross_entropy(logits[:, 2:], torch.tensor([1, 2]))
    assert loss.item() == pytest.approx(((first + second) / 2).item(), rel=1e-6)
    without = LabelAlignmentLoss(Temperature(0.5, learnable=False))(products, texts[:5], LabelBatch(
        texts=batch.texts[:5], targets=batch.targets, per_field=[2, 3]))
    assert loss.item() > without.item()  # the made-up words took probability from the right labels
