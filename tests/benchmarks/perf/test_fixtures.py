"""The perf dataset's CORE boxes are the true boxes, so the processor's crop path runs."""

from __future__ import annotations

from benchmarks.perf.fixtures import with_core_boxes
from moon.data.records import BoxRole, QueryKind, QueryRecord
from moon.model.images import core_box


def test_core_box_copies_the_truth_box(make_products) -> None:
    product = make_products(1, seed=3)[0]
    boxed = with_core_boxes(product)
    for before, after in zip(product.images, boxed.images):
        truth, core = before.box(BoxRole.TRUTH), core_box(after)
        assert core is not None and (core.x0, core.y0, core.x1, core.y1) == (truth.x0, truth.y0, truth.x1, truth.y1)
        assert core.source == "truth" and after.data == before.data


def test_text_query_passes_unchanged() -> None:
    query = QueryRecord(query_id="q", kind=QueryKind.TEXT, text="red mug", positive_id="p")
    assert with_core_boxes(query) == query
