from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from moon.data.answers import SharedAnswers
from moon.data.records import Box, DataError, ProductImage, QueryKind, QueryRecord
from moon.negatives.sidecar import write_negatives
from moon.train.sampler import KINDS, PhotoAugment, TrainSampler, kind_counts
from tests.conftest import build_products, build_queries

T, I, P = QueryKind.TEXT, QueryKind.IMAGE, QueryKind.PRODUCT
MIX = {T: 3, I: 12, P: 2}


@pytest.fixture(scope="module")
def catalogue():
    products = build_products(24, seed=5, images_per_product=(1, 1), size=16)
    return products, build_queries(products, seed=5)


def _sampler(catalogue, **kw) -> TrainSampler:
    products, queries = catalogue
    args = dict(mix={T: 1, I: 1, P: 1}, batch_size=6, hard_k=2, seed=0)
    args.update(kw)
    return TrainSampler(queries, products, **args)


def test_kind_counts_follow_moon_ratio():
    everything = {k: 100 for k in KINDS}
    assert kind_counts(MIX, 17, everything) == {T: 3, I: 12, P: 2}
    counts = kind_counts(MIX, 64, everything)
    assert sum(counts.values()) == 64 and counts[I] > counts[T] > counts[P] >= 7
    assert kind_counts(MIX, 10, {T: 5, I: 0, P: 5}) == {T: 6, I: 0, P: 4}
    with pytest.raises(DataError, match="no training queries"):
        kind_counts(MIX, 4, {k: 0 for k in KINDS})


def test_batches_are_a_pure_function_of_seed_and_step(catalogue):
    a, b = _sampler(catalogue), _sampler(catalogue)
    ids = lambda batch: [q.query_id for q in batch.queries] + [p.product_id for p in batch.negatives]  # noqa: E731
    assert ids(a.batch(7)) == ids(b.batch(7))
    assert ids(a.batch(7)) != ids(a.batch(8))
    assert ids(_sampler(catalogue, seed=1).batch(7)) != ids(a.batch(7))
    batch = a.batch(3)
    assert [q.kind for q in batch.queries] == [T, T, I, I, P, P]
    assert [p.product_id for p in batch.positives] == [q.positive_id for q in batch.queries]


def test_each_epoch_visits_every_query_once(catalogue):
    sampler = _sampler(catalogue)
    seen = [q.query_id for step in range(12) for q in sampler.batch(step).queries if q.kind == T]
    assert len(seen) == 24 and len(set(seen)) == 24
    assert sampler.epoch(12) == pytest.approx(1.0)


def test_ranks_get_disjoint_shards(catalogue):
    r0 = _sampler(catalogue, rank=0, world_size=2)
    r1 = _sampler(catalogue, rank=1, world_size=2)
    for step in range(5):
        a = {q.query_id for q in r0.batch(step).queries}
        b = {q.query_id for q in r1.batch(step).queries}
        assert len(a) == len(b) == 6 and not a & b


def test_fallback_negatives_share_the_leaf_category_never_the_group(catalogue):
    sampler = _sampler(catalogue, hard_k=3)
    for step in range(4):
        batch = sampler.batch(step)
        assert len(batch.negatives) == 3 * len(batch.queries)
        for i, pos in enumerate(batch.positives):
            negs = batch.negatives[3 * i:3 * i + 3]
            assert all(n.group_id != pos.group_id for n in negs)
            assert all(n.category == pos.category for n in negs)
            assert len({n.product_id for n in negs}) == 3
    assert sampler.report.category_fallback_negatives == 4 * 6 * 3
    assert sampler.report.mined_negatives_used == 0


def test_mined_sidecar_is_used_and_bad_rows_are_counted(catalogue, tmp_path):
    products, queries = catalogue
    q = next(q for q in queries if q.kind == T)
    pos = next(p for p in products if p.product_id == q.positive_id)
    mate = next(p for p in products if p.group_id == pos.group_id and p.product_id != pos.product_id)
    others = [p.product_id for p in products if p.group_id != pos.group_id][:2]
    negatives = others + [mate.product_id, "ghost"]
    path = write_negatives(tmp_path / "neg.parquet", {
        "query_id": [q.query_id] * 4, "positive_id": [pos.product_id] * 4, "negative_id": negatives,
        "policy": ["test"] * 4, "rank": [0, 1, 2, 3], "score": [0.9, 0.8, 0.7, 0.6]})
    sampler = TrainSampler([q], products, {T: 1, I: 0, P: 0}, batch_size=1, hard_k=2, seed=0,
                           negatives_path=path)
    batch = sampler.batch(0)
    assert sorted(n.product_id for n in batch.negatives) == sorted(others)
    assert sampler.report.sidecar_rows == 4
    assert sampler.report.sidecar_same_group == 1
    assert sampler.report.sidecar_unknown_products == 1
    assert sampler.report.mined_negatives_used == 2


def _shared_answer_negatives(sampler: TrainSampler, answers: SharedAnswers, steps: int) -> int:
    """How many hard negatives of text queries answer the query's own text."""
    found = 0
    for step in range(steps):
        batch = sampler.batch(step)
        k = batch.hard_k
        for i, q in enumerate(batch.queries):
            found += sum(n.product_id in answers.of(q) for n in batch.negatives[k * i:k * (i + 1)])
    return found


def test_products_answering_the_same_text_are_never_hard_negatives(catalogue):
    products, queries = catalogue
    answers = SharedAnswers(queries)
    assert _shared_answer_negatives(_sampler(catalogue, hard_k=4), answers, 24) > 0
    sampler = _sampler(catalogue, hard_k=4, answers=answers)
    assert _shared_answer_negatives(sampler, answers, 24) == 0
    batch = sampler.batch(0)
    assert batch.answers == [answers.of(q) for q in batch.queries]
    assert any(batch.answers) and sampler.state_dict()["shared_answers"] is True


def test_mined_negatives_that_answer_the_query_text_are_skipped_and_counted(catalogue, tmp_path):
    products, queries = catalogue
    answers = SharedAnswers(queries)
    q = next(q for q in queries if q.kind == T and answers.of(q))
    (shared,) = answers.of(q)
    other = next(p.product_id for p in products if p.product_id not in (shared, q.positive_id)
                 and p.group_id != next(x.group_id for x in products if x.product_id == q.positive_id))
    path = write_negatives(tmp_path / "neg.parquet", {
        "query_id": [q.query_id] * 2, "positive_id": [q.positive_id] * 2, "negative_id": [shared, other],
        "policy": ["test"] * 2, "rank": [0, 1], "score": [0.9, 0.8]})
    sampler = TrainSampler([q], products, {T: 1, I: 0, P: 0}, batch_size=1, hard_k=2, seed=0,
                           negatives_path=path, answers=answers)
    negatives = [n.product_id for n in sampler.batch(0).negatives]
    assert other in negatives and shared not in negatives
    assert sampler.report.mined_negatives_shared_answer == 1
    assert sampler.report.mined_negatives_used == 1 and sampler.report.category_fallback_negatives == 1


def test_queries_with_unknown_positive_are_counted_not_used(catalogue):
    products, queries = catalogue
    stray = QueryRecord(query_id="stray", kind=T, text="nothing", positive_id="missing")
    sampler = TrainSampler(queries + [stray], products, {T: 1, I: 1, P: 1}, batch_size=3, hard_k=0, seed=0)
    assert sampler.report.skipped_unknown_positive == 1
    assert sampler.report.skipped_examples == ["stray"]
    assert all(q.query_id != "stray" for s in range(30) for q in sampler.batch(s).queries)


def test_resume_check_rejects_a_different_data_order(catalogue):
    saved = _sampler(catalogue).state_dict()
    _sampler(catalogue).check_resume(saved)
    with pytest.raises(ValueError, match="batch_size"):
        _sampler(catalogue, batch_size=9).check_resume(saved)


def _gradient_photo_catalogue(n: int = 6):
    """Products whose photo is a red left-to-right ramp with green = 40 * index, so a view of a
    photo names its product (green) and differs from another view of it (red); the stored
    image queries are black."""
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    products = []
    for i, p in enumerate(build_products(n, seed=9, images_per_product=(1, 1), size=16)):
        photo = np.stack([ramp, np.full_like(ramp, 40 * i), np.zeros_like(ramp)], axis=-1)
        products.append(p.model_copy(update={"images": [ProductImage.from_pil(Image.fromarray(photo), "png")]}))
    black = ProductImage.from_pil(Image.new("RGB", (32, 32)), "png")
    queries = [q for p in products for q in (
        QueryRecord(query_id=f"{p.product_id}-i", kind=I, image=black, positive_id=p.product_id),
        QueryRecord(query_id=f"{p.product_id}-t", kind=T, text=p.title, positive_id=p.product_id))]
    return products, queries


def _fresh_sampler(catalogue, fresh: bool = True, seed: int = 0) -> TrainSampler:
    products, queries = catalogue
    return TrainSampler(queries, products, {T: 1, I: 1}, batch_size=4, hard_k=0, seed=seed,
                        fresh_image_queries=fresh)


def test_fresh_image_queries_are_new_views_of_the_positive_photo():
    catalogue = _gradient_photo_catalogue()
    green = {p.product_id: 40 * i for i, p in enumerate(catalogue[0])}
    fresh, stored = _fresh_sampler(catalogue), _fresh_sampler(catalogue, fresh=False)
    views: dict[str, list[np.ndarray]] = {}
    for step in range(6):   # two epochs of the six image queries, two a step
        batch, plain = fresh.batch(step), stored.batch(step)
        assert [q.query_id for q in batch.queries] == [q.query_id for q in plain.queries]
        for q, kept in zip(batch.queries, plain.queries):
            if q.kind == T:
                assert q == kept
                continue
            assert kept.image.to_pil().getextrema() == ((0, 0), (0, 0), (0, 0))
            view = np.asarray(q.image.to_pil(), dtype=np.float32)
            assert view.shape == (32, 32, 3)
            assert abs(view[..., 1].mean() - green[q.positive_id]) < 4
            views.setdefault(q.query_id, []).append(view)
    assert len(views) == 6 and all(len(v) == 2 for v in views.values())
    assert all(np.abs(a - b).mean() > 1 for a, b in views.values())   # a new view each epoch


def test_fresh_image_queries_are_a_pure_function_of_seed_and_step():
    catalogue = _gradient_photo_catalogue()
    images = lambda s, step: [q.image.data for q in s.batch(step).queries if q.kind == I]  # noqa: E731
    assert images(_fresh_sampler(catalogue), 4) == images(_fresh_sampler(catalogue), 4)
    assert images(_fresh_sampler(catalogue, seed=1), 4) != images(_fresh_sampler(catalogue), 4)


def test_resume_check_rejects_switching_fresh_image_queries():
    catalogue = _gradient_photo_catalogue()
    stored, fresh = _fresh_sampler(catalogue, fresh=False).state_dict(), _fresh_sampler(catalogue).state_dict()
    _fresh_sampler(catalogue).check_resume(fresh)
    with pytest.raises(ValueError, match="fresh_image_queries"):
        _fresh_sampler(catalogue).check_resume(stored)
    with pytest.raises(ValueError, match="fresh_image_queries"):
        _fresh_sampler(catalogue, fresh=False).check_resume(fresh)


def _photo_sampler(catalogue, augment: bool = True, seed: int = 0, hard_k: int = 1,
                   policy: PhotoAugment = PhotoAugment()) -> TrainSampler:
    products, queries = catalogue
    return TrainSampler(queries, products, {T: 1, I: 1}, batch_size=4, hard_k=hard_k, seed=seed,
                        augment_product_photos=policy if augment else None)


def test_augmented_product_photos_are_new_views_of_each_shown_product():
    catalogue = _gradient_photo_catalogue()
    green = {p.product_id: 40 * i for i, p in enumerate(catalogue[0])}
    stored = {p.product_id: p.images[0].data for p in catalogue[0]}
    augmented, plain = _photo_sampler(catalogue), _photo_sampler(catalogue, augment=False)
    views: dict[str, list[np.ndarray]] = {}
    for step in range(6):
        batch, kept = augmented.batch(step), plain.batch(step)
        assert batch.queries == kept.queries
        shown, shown_plain = batch.positives + batch.negatives, kept.positives + kept.negatives
        assert [p.product_id for p in shown] == [p.product_id for p in shown_plain]
        assert len(batch.negatives) == len(batch.queries)
        for product in shown:
            assert product.images[0].data != stored[product.product_id]
            view = np.asarray(product.images[0].to_pil(), dtype=np.float32)
            assert view.shape == (32, 32, 3)
            assert abs(view[..., 1].mean() - green[product.product_id]) < 4
            views.setdefault(product.product_id, []).append(view)
    assert all(np.abs(v[0] - v[1]).mean() > 1 for v in views.values() if len(v) > 1)
    assert sum(len(v) > 1 for v in views.values()) >= 4
    assert all(p.images[0].data == stored[p.product_id] for p in plain.batch(0).positives)


def test_augmented_product_photos_keep_their_core_box_on_the_object():
    """A box around the photo's bright square still surrounds it in every view that keeps it."""
    products, queries = _gradient_photo_catalogue(2)
    photo = np.zeros((40, 40, 3), dtype=np.uint8)
    photo[10:20, 24:34] = 255
    box = Box(x0=24, y0=10, x1=34, y1=20, source="test")
    boxed = ProductImage.from_pil(Image.fromarray(photo), "png", boxes=[box])
    products = [p.model_copy(update={"images": [boxed]}) for p in products]
    sampler = _photo_sampler((products, queries), hard_k=0)
    moved = 0
    for step in range(20):
        for product in sampler.batch(step).positives:
            view = np.asarray(product.images[0].to_pil().convert("L"), dtype=np.float32)
            for b in product.images[0].boxes:
                if b.x1 - b.x0 < 4 or b.y1 - b.y0 < 4:   # clipped to a sliver at the view's edge
                    continue
                inside = view[int(b.y0) + 1:int(b.y1) - 1, int(b.x0) + 1:int(b.x1) - 1]
                assert inside.mean() > 200
                moved += (b.x0, b.y0) != (box.x0, box.y0)
    assert moved > 10


def test_resume_check_rejects_switching_augmented_product_photos():
    catalogue = _gradient_photo_catalogue()
    on, off = _photo_sampler(catalogue).state_dict(), _photo_sampler(catalogue, augment=False).state_dict()
    assert _photo_sampler(catalogue).batch(3) == _photo_sampler(catalogue).batch(3)
    assert _photo_sampler(catalogue, seed=1).batch(3) != _photo_sampler(catalogue).batch(3)
    with pytest.raises(ValueError, match="augment_product_photos"):
        _photo_sampler(catalogue).check_resume(off)
    with pytest.raises(ValueError, match="augment_product_photos"):
        _photo_sampler(catalogue, augment=False).check_resume(on)
    with pytest.raises(ValueError, match="augment_product_photos"):
        _photo_sampler(catalogue, policy=PhotoAugment(share=0.5)).check_resume(on)
    with pytest.raises(ValueError, match="augment_product_photos"):
        _photo_sampler(catalogue, policy=PhotoAugment(scope="products")).check_resume(on)
    before_scope = {**on, "augment_product_photos": {"share": 1.0, "min_area": PhotoAugment().min_area}}
    _photo_sampler(catalogue).check_resume(before_scope)
    with pytest.raises(ValueError, match="augment_product_photos"):
        _photo_sampler(catalogue, policy=PhotoAugment(scope="products")).check_resume(before_scope)


def test_augment_share_leaves_the_other_products_stored():
    catalogue = _gradient_photo_catalogue()
    stored = {p.product_id: p.images[0].data for p in catalogue[0]}
    sampler = _photo_sampler(catalogue, policy=PhotoAugment(share=0.5))
    shown = [p for step in range(30) for b in [sampler.batch(step)] for p in b.positives + b.negatives]
    augmented = sum(p.images[0].data != stored[p.product_id] for p in shown)
    assert 0.3 < augmented / len(shown) < 0.7


def test_augment_scope_products_keeps_the_stored_photos_for_the_parts():
    catalogue = _gradient_photo_catalogue()
    stored = {p.product_id: p for p in catalogue[0]}
    everywhere, products_only = _photo_sampler(catalogue), _photo_sampler(catalogue, policy=PhotoAugment(scope="products"))
    for step in range(4):
        batch, same = products_only.batch(step), everywhere.batch(step)
        assert batch.positives == same.positives and batch.negatives == same.negatives  # the same views
        assert same.positives_for_parts is same.positives and same.negatives_for_parts is same.negatives
        assert batch.positives_for_parts == [stored[p.product_id] for p in batch.positives]
        assert batch.negatives_for_parts == [stored[p.product_id] for p in batch.negatives]
        assert all(a.images[0].data != b.images[0].data
                   for a, b in zip(batch.positives + batch.negatives,
                                   batch.positives_for_parts + batch.negatives_for_parts))
    with pytest.raises(ValueError, match="scope"):
        PhotoAugment(scope="queries")


def test_augment_min_area_bounds_how_much_a_crop_cuts_away():
    """The bright frame around the photo's edge survives a crop that keeps >= 90% of it far more
    often than one that may keep only half."""
    products, queries = _gradient_photo_catalogue(2)
    photo = np.zeros((40, 40, 3), dtype=np.uint8)
    photo[:2], photo[-2:], photo[:, :2], photo[:, -2:] = 255, 255, 255, 255
    framed = ProductImage.from_pil(Image.fromarray(photo), "png")
    products = [p.model_copy(update={"images": [framed]}) for p in products]

    def frame_kept(policy: PhotoAugment) -> float:
        sampler = _photo_sampler((products, queries), hard_k=0, policy=policy)
        views = [np.asarray(p.images[0].to_pil().convert("L"), dtype=np.float32)
                 for step in range(20) for p in sampler.batch(step).positives]
        return float(np.mean([v.max(axis=0).min() > 100 and v.max(axis=1).min() > 100 for v in views]))

    assert frame_kept(PhotoAugment(min_area=0.95)) > frame_kept(PhotoAugment(min_area=0.3)) + 0.3
    with pytest.raises(ValueError, match="min_area"):
        PhotoAugment(min_area=0)
