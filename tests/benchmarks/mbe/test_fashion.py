import io

import numpy as np
from PIL import Image

from moon.crop.detector import train_detector
from moon.data.importers.fashion import attribute_query, fashion_split
from moon.data.records import FULL_VIEW, IMAGE_TITLE_VIEW, IMAGE_VIEW, BoxRole, QueryKind

from benchmarks.mbe.fashion import crop_catalogue, fashion_tasks, image_query, load_catalogue
from tests.crop.conftest import write_scene_dataset

TASK_ORDER = ["t2i", "i2p", "t2p", "cls.articleType", "cls.subCategory", "cls.masterCategory",
              "attr.baseColour", "attr.gender", "attr.usage", "attr.season"]


def test_split_all_reads_every_good_row_and_counts_bad_ones(mini_catalogue):
    catalogue = load_catalogue(mini_catalogue, "all")
    assert len(catalogue.products) == 36
    assert [b.id for b in catalogue.report.bad_rows] == ["9999"]
    assert "missing image" in catalogue.report.bad_rows[0].reason
    assert catalogue.data_id.startswith("fashion:catalogue@")


def test_tasks_follow_the_readme_protocol(mini_catalogue):
    catalogue = load_catalogue(mini_catalogue, "all")
    products = catalogue.products
    tasks = {t.name: t for t in fashion_tasks(catalogue)}
    assert list(tasks) == TASK_ORDER
    t2i, i2p, t2p = tasks["t2i"], tasks["i2p"], tasks["t2p"]
    assert t2i.queries == [p.title for p in products] and t2i.corpus_view == IMAGE_VIEW
    assert t2i.metrics == ("R@1", "R@10", "MRR@10") and i2p.metrics == ("R@1", "R@10")
    assert i2p.corpus_view == FULL_VIEW and t2p.corpus_view == FULL_VIEW
    assert all(q.kind == QueryKind.IMAGE and q.positive_id == p.product_id for q, p in zip(i2p.queries, products))
    strings = {f"{p.attributes['gender']} {p.attributes['baseColour']} {p.category[2]}".lower() for p in products}
    assert sorted(t2p.queries) == sorted(strings) and len(t2p.queries) == 18
    for q, query in enumerate(t2p.queries):
        members = t2p.relevance.items[t2p.relevance.indptr[q]:t2p.relevance.indptr[q + 1]]
        expected = [i for i, p in enumerate(products) if attribute_query(p.attributes, p.category[-1]) == query]
        assert sorted(members.tolist()) == expected
    assert t2p.metrics == ("nDCG@10", "hit@10")
    cls = tasks["cls.articleType"]
    assert cls.view == IMAGE_TITLE_VIEW and cls.labels == ["Casual Shoes", "Handbags", "Tshirts"]
    assert cls.metrics == ("acc", "macro_f1") and tasks["attr.season"].metrics == ("acc",)
    usage = tasks["attr.usage"]
    assert usage.truth[4] == -1 and (usage.truth[np.arange(36) != 4] >= 0).all()


def test_image_query_is_the_seeded_augmentation(mini_catalogue):
    product = load_catalogue(mini_catalogue, "all").products[0]
    first, second = image_query(product), image_query(product)
    assert first.image.data == second.image.data
    original = np.asarray(product.images[0].to_pil(), dtype=np.float32)
    query = np.asarray(Image.open(io.BytesIO(first.image.data)).convert("RGB"), dtype=np.float32)
    assert query.shape == original.shape and np.abs(query - original).mean() > 2


def test_crop_catalogue_boxes_every_product_and_image_query_like_training_data(mini_catalogue, tmp_path):
    # One epoch: this checks the plumbing (every image gets one CORE box with provenance),
    # not detection quality, which tests/crop covers.
    detector = train_detector(write_scene_dataset(tmp_path / "scenes"), tmp_path / "det", epochs=1, imgsz=64)
    plain = load_catalogue(mini_catalogue, "all")
    cropped = crop_catalogue(plain, tmp_path / "det")
    assert cropped.data_id == f"{plain.data_id}+crops:{detector.detector_id}"
    assert [p.product_id for p in cropped.products] == [p.product_id for p in plain.products]
    for before, after in zip(plain.products, cropped.products):
        assert [i.data for i in after.images] == [i.data for i in before.images]
        assert all(len(i.boxes) == 1 and i.boxes[0].role == BoxRole.CORE and i.boxes[0].source == detector.source
                   for i in after.images)
    i2p = {t.name: t for t in fashion_tasks(cropped)}["i2p"]
    assert all([b.role for b in q.image.boxes] == [BoxRole.CORE] for q in i2p.queries)
    assert all(not q.image.boxes for q in {t.name: t for t in fashion_tasks(plain)}["i2p"].queries)


def test_real_catalogue_test_split(fashion_dir):
    catalogue = load_catalogue(fashion_dir, "test")
    assert len(catalogue.products) == 962
    assert all(fashion_split(p.product_id) == "test" for p in catalogue.products)
    t2p = next(t for t in fashion_tasks(catalogue) if t.name == "t2p")
    assert len(t2p.queries) == 373 and t2p.relevance.counts.sum() == 962
