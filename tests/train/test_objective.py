"""False-negative masking in every negative source, checked against a by-hand InfoNCE; which
embeddings the label term scores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from moon.data.answers import SharedAnswers
from moon.data.records import FULL_VIEW, QueryKind
from moon.train.labels import LabelAlignmentLoss, LabelBatch
from moon.train.loss import IntraProductLoss, id_tensor
from moon.train.objective import BatchMeta, ContrastiveObjective, build_groups
from moon.train.queue import EmbeddingQueue
from moon.train.recipe import LossSection, NegativesSection
from moon.train.sampler import KINDS, TrainBatch, TrainSampler
from tests.conftest import build_products, build_queries
from tests.train.conftest import tiny_clip

TEMP = 0.1


def reference(q: torch.Tensor, cand: torch.Tensor, allowed: list[list[int]]) -> float:
    """Mean over queries of -log softmax of column i (the label) among the allowed columns."""
    logits = (q @ cand.T) / TEMP
    losses = [-(logits[i, i] - torch.logsumexp(logits[i, cols], 0)) for i, cols in enumerate(allowed)]
    return float(torch.stack(losses).mean())


@pytest.fixture(scope="module")
def model():
    return tiny_clip(build_products(6, seed=9, images_per_product=(1, 1), size=16))


def _meta(positives, hard, groups) -> BatchMeta:
    products = positives + hard
    return BatchMeta(positive_ids=id_tensor(positives), positive_groups=id_tensor([groups[p] for p in positives]),
                     product_ids=id_tensor(products), product_groups=id_tensor([groups[p] for p in products]),
                     hard_owner=torch.arange(len(positives)).repeat_interleave(len(hard) // len(positives)),
                     kinds=torch.zeros(len(positives), dtype=torch.long), weights=torch.ones(len(positives)))


GROUPS = {"A": "gA", "A2": "gA", "B": "gB", "C": "gC", "D": "gB", "E": "gE"}


def _objective(model, in_batch=True, queue=None, hard_query_kinds=KINDS) -> ContrastiveObjective:
    negatives = NegativesSection(in_batch=in_batch, hard_k=1, spatial=True, queue_size=3,
                                 hard_query_kinds=list(hard_query_kinds))
    obj = ContrastiveObjective(model, LossSection(temperature=TEMP, learn_temperature=False), negatives, queue)
    obj.queue_active = True
    return obj


def _unit(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, 32, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _queued(model, seed: int, in_batch: bool = True, hard_query_kinds=KINDS) -> tuple[ContrastiveObjective,
                                                                                       torch.Tensor]:
    """An objective whose queue holds [A (q0's positive again), D (variant of q1's positive B), E]."""
    queue = EmbeddingQueue(3, 32)
    queue_emb = _unit(3, seed)
    queue.enqueue(queue_emb, id_tensor(["A", "D", "E"]), id_tensor([GROUPS[p] for p in "ADE"]))
    return _objective(model, in_batch=in_batch, queue=queue, hard_query_kinds=hard_query_kinds), queue_emb


def test_masking_covers_in_batch_hard_and_queue(model):
    # Local columns: [A, B | A2 (hard neg of q0, but A's variant), C (hard neg of q1)]; queue: [A, D, E].
    obj, queue_emb = _queued(model, 1)
    q, products = _unit(2, 2), _unit(4, 3)
    loss, stats = obj.loss({"queries": q, "products": products}, _meta(["A", "B"], ["A2", "C"], GROUPS))
    cand = torch.cat([products, queue_emb])
    expected = reference(q, cand, allowed=[[0, 1, 3, 5, 6], [0, 1, 2, 3, 4, 6]])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["masked"].item() == pytest.approx((2 + 1) / 2)
    assert stats["candidates"].item() == 7
    assert obj.queue.contents()[1].tolist() == id_tensor(["B", "A2", "C"]).tolist()  # newest local products


def test_other_answers_of_a_query_text_are_masked_in_every_source(model):
    # q1 (positive B) shares its text with C (its hard negative) and E (in the queue).
    obj, queue_emb = _queued(model, 1)
    q, products = _unit(2, 2), _unit(4, 3)
    meta = _meta(["A", "B"], ["A2", "C"], GROUPS)
    meta.answer_ids = id_tensor(["A", "A", "C", "E"]).view(2, 2)
    loss, _ = obj.loss({"queries": q, "products": products}, meta)
    expected = reference(q, torch.cat([products, queue_emb]), allowed=[[0, 1, 3, 5, 6], [0, 1, 2, 4]])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_kinds_outside_hard_query_kinds_lose_every_hard_negative_column(model):
    # q0 is a text query, q1 an image query; only image queries are scored against hard negatives.
    obj, queue_emb = _queued(model, 1, hard_query_kinds=[QueryKind.IMAGE])
    q, products = _unit(2, 2), _unit(4, 3)
    meta = _meta(["A", "B"], ["A2", "C"], GROUPS)
    meta.kinds = torch.tensor([KINDS.index(QueryKind.TEXT), KINDS.index(QueryKind.IMAGE)])
    loss, _ = obj.loss({"queries": q, "products": products}, meta)
    expected = reference(q, torch.cat([products, queue_emb]), allowed=[[0, 1, 5, 6], [0, 1, 2, 3, 4, 6]])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    everyone, _ = _queued(model, 1)[0].loss({"queries": q, "products": products}, meta)
    assert everyone.item() != pytest.approx(loss.item(), rel=1e-3)


def test_batch_meta_pads_each_querys_answers_with_its_positive():
    products = build_products(24, seed=5, images_per_product=(1, 1), size=16)
    queries = build_queries(products, seed=5)
    answers = SharedAnswers(queries)
    batch = TrainSampler(queries, products, {k: 1.0 for k in KINDS}, batch_size=6, hard_k=1, seed=0,
                         answers=answers).batch(0)
    meta = BatchMeta.from_batch(batch, {k: 1.0 for k in KINDS})
    width = max(len(a) for a in batch.answers)
    assert meta.answer_ids.shape == (6, width) and width > 0
    for row, q in zip(meta.answer_ids.tolist(), batch.queries):
        padding = [q.positive_id] if len(answers.of(q)) < width else []
        assert set(row) == set(id_tensor(list(answers.of(q)) + padding).tolist())
    batch.answers = [()] * 6
    assert BatchMeta.from_batch(batch, {k: 1.0 for k in KINDS}).answer_ids is None


def test_batch_meta_moves_every_tensor_to_the_training_device():
    meta = _meta(["A", "B"], ["A2", "C"], GROUPS)
    meta.answer_ids = id_tensor(["A", "C"]).view(2, 1)
    meta.labels = LabelBatch(texts=["x", "y"], targets=torch.tensor([[0], [1]]), per_field=[2],
                             offsets=torch.zeros(2))
    moved = meta.to(torch.device("meta"))
    tensors = [getattr(moved, f) for f in ("positive_ids", "positive_groups", "product_ids", "product_groups",
                                           "hard_owner", "kinds", "weights", "answer_ids")]
    tensors += [moved.labels.targets, moved.labels.offsets]
    assert all(t.device.type == "meta" for t in tensors)
    assert meta.positive_ids.device.type == "cpu" and moved.labels.texts == ["x", "y"]


def test_queue_is_refilled_with_this_steps_products(model):
    queue = EmbeddingQueue(8, 32)
    obj = _objective(model, queue=queue)
    obj.loss({"queries": _unit(2, 4), "products": _unit(4, 5)}, _meta(["A", "B"], ["A2", "C"], GROUPS))
    assert queue.contents()[1].tolist() == id_tensor(["A", "B", "A2", "C"]).tolist()


def test_without_in_batch_a_query_sees_only_its_own_hard_negatives_and_the_queue(model):
    obj, queue_emb = _queued(model, 6, in_batch=False)
    q, products = _unit(2, 7), _unit(4, 8)
    loss, _ = obj.loss({"queries": q, "products": products}, _meta(["A", "B"], ["A2", "C"], GROUPS))
    expected = reference(q, torch.cat([products, queue_emb]), allowed=[[0, 5, 6], [1, 3, 4, 6]])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_inactive_queue_adds_no_columns(model):
    queue = EmbeddingQueue(3, 32)
    queue.enqueue(_unit(3, 9), id_tensor(["X", "Y", "Z"]), id_tensor(["gX", "gY", "gZ"]))
    obj = _objective(model, queue=queue)
    obj.queue_active = False
    _, stats = obj.loss({"queries": _unit(2, 10), "products": _unit(4, 11)}, _meta(["A", "B"], ["A2", "C"], GROUPS))
    assert stats["candidates"].item() == 4


def test_label_term_scores_the_inputs_the_recipe_names(model):
    labels = LabelBatch(texts=["red", "blue", "green"], targets=torch.tensor([[0, 2]]), per_field=[3])
    meta = _meta(["A", "B"], ["A2", "C"], GROUPS)
    meta.labels = labels
    emb = {"queries": _unit(2, 12), "products": _unit(4, 13), "images": _unit(2, 14), "titles": _unit(2, 15),
           "image_titles": _unit(2, 16), "labels": _unit(3, 17)}
    plain = LabelAlignmentLoss(lambda: torch.tensor(1 / TEMP))

    def label_stat(inputs: list[str]) -> float:
        loss = LossSection(temperature=TEMP, learn_temperature=False, label_weight=1.0, label_inputs=inputs)
        obj = ContrastiveObjective(model, loss, NegativesSection(hard_k=1, spatial=True))
        return obj.loss(emb, meta)[1]["label"].item()

    per_input = {name: plain(emb[name], emb["labels"], labels).item() for name in ("images", "titles", "image_titles")}
    assert label_stat(["image", "title"]) == pytest.approx((per_input["images"] + per_input["titles"]) / 2, rel=1e-5)
    assert label_stat(["image_title"]) == pytest.approx(per_input["image_titles"], rel=1e-5)
    assert label_stat(["image", "title", "image_title"]) == pytest.approx(sum(per_input.values()) / 3, rel=1e-5)

    products = build_products(2, seed=9, images_per_product=(1, 1), size=16)

    batch = TrainBatch(step=0, queries=[], positives=products, negatives=[], hard_k=0)
    assert "image_titles" not in build_groups(batch, model.processor, FULL_VIEW, intra=True, labels=labels)
    groups = build_groups(batch, model.processor, FULL_VIEW, intra=True, labels=labels,
                          label_inputs=["title", "image_title"])
    records, make = groups["image_titles"]
    assert records == products
    image_title, title = make(records), groups["titles"][1](records)
    assert image_title["pixel_values"].shape[0] == 2 and title["pixel_values"].shape[0] == 0  # the photos
    assert torch.equal(image_title["input_ids"], title["input_ids"])  # and the titles


def test_hard_negatives_titles_are_embedded_only_for_the_intra_term_that_asks(model):
    products = build_products(4, seed=9, images_per_product=(1, 1), size=16)

    batch = TrainBatch(step=0, queries=[], positives=products[:2], negatives=products[2:], hard_k=1)
    assert "negative_titles" not in build_groups(batch, model.processor, FULL_VIEW, intra=True)
    assert "negative_titles" not in build_groups(batch, model.processor, FULL_VIEW, intra=False, intra_hard=True)
    records, make = build_groups(batch, model.processor, FULL_VIEW, intra=True, intra_hard=True)["negative_titles"]
    assert records == products[2:] and make(records)["pixel_values"].shape[0] == 0


def test_hard_negatives_images_are_embedded_alone_only_for_the_intra_term_that_asks(model):
    products = build_products(4, seed=9, images_per_product=(1, 1), size=16)

    batch = TrainBatch(step=0, queries=[], positives=products[:2], negatives=products[2:], hard_k=1)
    assert "negative_images" not in build_groups(batch, model.processor, FULL_VIEW, intra=True, intra_hard=True)
    assert "negative_images" not in build_groups(batch, model.processor, FULL_VIEW, intra=False,
                                                 intra_hard_images=True)
    groups = build_groups(batch, model.processor, FULL_VIEW, intra=True, intra_hard_images=True)
    records, make = groups["negative_images"]
    assert records == products[2:] and "negative_titles" not in groups
    alone, positives_alone = make(records), groups["images"][1](records)  # the positives' image-only view
    assert alone["pixel_values"].shape[0] > 0
    assert all(torch.equal(alone[key], positives_alone[key]) for key in alone)


def test_parts_are_embedded_from_the_stored_photos_when_only_products_are_augmented(model):
    products = build_products(4, seed=9, images_per_product=(1, 1), size=16)
    views = build_products(4, seed=10, images_per_product=(1, 1), size=16)  # stand-ins for augmented photos
    batch = TrainBatch(step=0, queries=[], positives=views[:2], negatives=views[2:], hard_k=1,
                       stored_positives=products[:2], stored_negatives=products[2:])
    labels = LabelBatch(texts=["a", "b"], targets=torch.tensor([[0], [1]]), per_field=[2])
    groups = build_groups(batch, model.processor, FULL_VIEW, intra=True, labels=labels, intra_hard=True,
                          intra_hard_images=True, label_inputs=["image", "image_title"], query_images=True)
    assert groups["products"][0] == views
    for name in ("images", "titles", "image_titles"):
        assert groups[name][0] == products[:2], name
    for name in ("negative_titles", "negative_images"):
        assert groups[name][0] == products[2:], name


def test_intra_term_scores_the_hard_negatives_titles_with_their_groups(model):
    meta = _meta(["A", "B"], ["A2", "C"], GROUPS)  # A2 is A's variant: never A's image's negative
    emb = {"queries": _unit(2, 20), "products": _unit(4, 21), "images": _unit(2, 22), "titles": _unit(2, 23),
           "negative_titles": _unit(2, 24)}
    loss = LossSection(temperature=TEMP, learn_temperature=False, intra_product_weight=1.0, intra_hard_negatives=True)
    obj = ContrastiveObjective(model, loss, NegativesSection(hard_k=1, spatial=True))
    intra = IntraProductLoss(lambda: torch.tensor(1 / TEMP))
    expected = intra(emb["images"], emb["titles"], id_tensor(["gA", "gB"]), emb["negative_titles"],
                     id_tensor(["gA", "gC"]))
    assert obj.loss(emb, meta)[1]["intra"].item() == pytest.approx(expected.item(), rel=1e-5)
    without = intra(emb["images"], emb["titles"], id_tensor(["gA", "gB"]))
    assert expected.item() != pytest.approx(without.item(), rel=1e-3)


def test_intra_term_scores_the_hard_negatives_images_with_their_groups(model):
    meta = _meta(["A", "B"], ["A2", "C"], GROUPS)
    emb = {"queries": _unit(2, 20), "products": _unit(4, 21), "images": _unit(2, 22), "titles": _unit(2, 23),
           "negative_images": _unit(2, 25)}
    loss = LossSection(temperature=TEMP, learn_temperature=False, intra_product_weight=1.0, intra_hard_images=True)
    obj = ContrastiveObjective(model, loss, NegativesSection(hard_k=1, spatial=True))
    intra = IntraProductLoss(lambda: torch.tensor(1 / TEMP))
    expected = intra(emb["images"], emb["titles"], id_tensor(["gA", "gB"]), extra_groups=id_tensor(["gA", "gC"]),
                     extra_images=emb["negative_images"])
    assert obj.loss(emb, meta)[1]["intra"].item() == pytest.approx(expected.item(), rel=1e-5)
    without = intra(emb["images"], emb["titles"], id_tensor(["gA", "gB"]))
    assert expected.item() != pytest.approx(without.item(), rel=1e-3)



def test_query_image_term_scores_text_queries_against_the_positives_images_alone(model):
    meta = _meta(["A", "B", "D"], ["C", "E", "A2"], GROUPS)  # D is B's variant: never B's query's negative
    meta.kinds = torch.tensor([KINDS.index(QueryKind.TEXT), KINDS.index(QueryKind.IMAGE),
                               KINDS.index(QueryKind.TEXT)])
    emb = {"queries": _unit(3, 30), "products": _unit(6, 31), "images": _unit(3, 32)}
    loss = LossSection(temperature=TEMP, learn_temperature=False, query_image_weight=0.5)
    obj = ContrastiveObjective(model, loss, NegativesSection(hard_k=1, spatial=True))
    total, stats = obj.loss(emb, meta)
    q, images = emb["queries"], emb["images"]
    # Rows: the text queries 0 and 2 only; query 2 (D) may not see B's image (same group).
    expected = (reference(q[[0]], images, [[0, 1, 2]]) + _reference_row(q[2], images, 2, [0, 2])) / 2
    assert stats["query_image"].item() == pytest.approx(expected, rel=1e-5)
    base = ContrastiveObjective(model, LossSection(temperature=TEMP, learn_temperature=False),
                                NegativesSection(hard_k=1, spatial=True)).loss(emb, meta)[0]
    assert total.item() == pytest.approx(base.item() + 0.5 * expected, rel=1e-5)


@pytest.mark.parametrize("kinds, rows", [([QueryKind.IMAGE], [1]), ([QueryKind.TEXT, QueryKind.IMAGE], [0, 1, 2])])
def test_query_image_term_scores_the_kinds_it_is_given(model, kinds, rows):
    meta = _meta(["A", "B", "D"], ["C", "E", "A2"], GROUPS)
    meta.kinds = torch.tensor([KINDS.index(QueryKind.TEXT), KINDS.index(QueryKind.IMAGE),
                               KINDS.index(QueryKind.TEXT)])
    emb = {"queries": _unit(3, 30), "products": _unit(6, 31), "images": _unit(3, 32)}
    loss = LossSection(temperature=TEMP, learn_temperature=False, query_image_weight=0.5, query_image_kinds=kinds)
    stats = ContrastiveObjective(model, loss, NegativesSection(hard_k=1, spatial=True)).loss(emb, meta)[1]
    q, images = emb["queries"], emb["images"]
    # B (row 1) and D (row 2) share a group: neither may see the other's image.
    allowed = {0: [0, 1, 2], 1: [0, 1], 2: [0, 2]}
    expected = sum(_reference_row(q[r], images, r, allowed[r]) for r in rows) / len(rows)
    assert stats["query_image"].item() == pytest.approx(expected, rel=1e-5)


def _reference_row(query: torch.Tensor, cand: torch.Tensor, label: int, allowed: list[int]) -> float:
    logits = (cand @ query) / TEMP
    return float(-(logits[label] - torch.logsumexp(logits[allowed], 0)))


def test_query_image_term_is_skipped_without_text_queries(model):
    meta = _meta(["A", "B"], ["C", "E"], GROUPS)
    meta.kinds = torch.full((2,), KINDS.index(QueryKind.IMAGE))
    emb = {"queries": _unit(2, 30), "products": _unit(4, 31), "images": _unit(2, 32)}
    loss = LossSection(temperature=TEMP, learn_temperature=False, query_image_weight=1.0)
    assert "query_image" not in ContrastiveObjective(model, loss, NegativesSection(hard_k=1)).loss(emb, meta)[1]


def test_query_image_term_embeds_the_positives_images_without_their_titles(model):
    products = build_products(4, seed=9, images_per_product=(1, 1), size=16)

    batch = TrainBatch(step=0, queries=[], positives=products[:2], negatives=products[2:], hard_k=1)
    assert "images" not in build_groups(batch, model.processor, FULL_VIEW, intra=False)
    groups = build_groups(batch, model.processor, FULL_VIEW, intra=False, query_images=True)
    records, make = groups["images"]
    assert records == products[:2] and "titles" not in groups
    inputs = make(records)
    intra_images = build_groups(batch, model.processor, FULL_VIEW, intra=True)["images"][1](records)
    with_title = build_groups(batch, model.processor, FULL_VIEW, intra=False)["products"][1](records)
    assert inputs["pixel_values"].shape[0] > 0
    assert all(torch.equal(inputs[key], intra_images[key]) for key in inputs)
    assert not torch.equal(inputs["input_ids"], with_title["input_ids"])
