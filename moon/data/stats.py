"""Summary statistics of a dataset: what `moon data stats` prints and writes as JSON.

One streaming pass per table, so it works on datasets larger than memory. Bad samples are
skipped *and counted* (the reader's on_error="skip" policy), never silently ignored:
`moon data validate` is the tool that says what exactly is wrong with them.
"""

from __future__ import annotations

from collections import Counter
from statistics import mean

from moon.data.shards import Dataset


def _product_stats(dataset: Dataset, split: str) -> dict:
    groups: set[str] = set()
    images: list[int] = []
    boxed = 0
    title_words: list[int] = []
    levels: list[Counter] = [Counter() for _ in dataset.manifest.category_levels]
    leaves: Counter = Counter()
    attributes: dict[str, Counter] = {}
    combos: Counter = Counter()
    for record in dataset.products(split, on_error="skip"):
        groups.add(record.group_id)
        images.append(len(record.images))
        boxed += sum(1 for im in record.images if im.boxes)
        title_words.append(len(record.title.split()))
        for depth, name in enumerate(record.category[: len(levels)]):
            levels[depth][name] += 1
        leaves[" > ".join(record.category)] += 1
        for name, value in record.attributes.items():
            attributes.setdefault(name, Counter())[value] += 1
        combos[(tuple(record.category), tuple(sorted(record.attributes.items())))] += 1
    n = len(images)
    return {
        "products": n,
        "groups": len(groups),
        "images": sum(images),
        "images_per_product": {"mean": round(mean(images), 3) if n else 0.0,
                               "min": min(images, default=0), "max": max(images, default=0)},
        "images_with_boxes": boxed,
        "title_words_mean": round(mean(title_words), 3) if n else 0.0,
        "category_levels": {lvl: dict(sorted(c.items())) for lvl, c in zip(dataset.manifest.category_levels, levels)},
        "leaf_categories": len(leaves),
        "attribute_values": {name: dict(sorted(c.items())) for name, c in sorted(attributes.items())},
        "products_per_attribute_combination": round(n / len(combos), 3) if combos else 0.0,
    }


def _query_stats(dataset: Dataset, split: str) -> dict:
    kinds: Counter = Counter()
    sessions: set[str] = set()
    positives: set[str] = set()
    for query in dataset.queries(split, on_error="skip"):
        kinds[query.kind.value] += 1
        positives.add(query.positive_id)
        if query.session_id is not None:
            sessions.add(query.session_id)
    return {"queries": sum(kinds.values()), "kinds": dict(sorted(kinds.items())), "sessions": len(sessions),
            "distinct_positives": len(positives)}


def dataset_stats(dataset: Dataset) -> dict:
    """Counts per split/table, category and attribute distributions, images per product."""
    splits: dict[str, dict] = {}
    for split in dataset.splits:
        entry: dict = {}
        if dataset.has(split, "products"):
            entry["products"] = _product_stats(dataset, split)
        if dataset.has(split, "queries"):
            entry["queries"] = _query_stats(dataset, split)
        splits[split] = entry
    return {
        "name": dataset.name,
        "schema_version": dataset.manifest.schema_version,
        "category_levels": list(dataset.manifest.category_levels),
        "attribute_names": list(dataset.manifest.attribute_names),
        "tables": {key: t.count for key, t in sorted(dataset.manifest.tables.items())},
        "splits": splits,
        "skipped_bad_samples": dict(dataset.skipped),
    }
