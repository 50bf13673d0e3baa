"""The catalogue plan: which products exist, how they look, their titles and splits.

Planning is cheap and runs in the main process from the seed alone; rendering (the
expensive part) then runs per product in worker processes, each from its own seed
derived from (seed, product index). That split is what makes the output independent of
the number of workers.

How the plan makes attributes ambiguous (see the package docstring for why): products
are drawn as *groups* (one product, or 2-`max_variants` variants sharing a group_id and
differing in exactly one attribute); each group either reuses an existing attribute
combination (type, colour, pattern, material, fit) or creates a new one, so on average
`groups_per_combo` groups share a combination. What tells them apart is the brand
(a title token and an emblem) plus a per-group visual fingerprint (exact shade, pattern
colour/period/phase, proportions). Splits are assigned per attribute combination (all
groups sharing it), so the ambiguity holds inside every split, not just in the union.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moon.data.synth.config import SynthConfig
from moon.data.synth.draw import EMBLEM_SHAPES, Emblem, ObjectLook
from moon.data.synth.taxonomy import ATTRIBUTE_NAMES, COLOURS, FIT_ASPECT, LEAF_BY_NAME, LEAF_TYPES, allowed_values
from moon.data.synth.titles import make_brands, make_title

SPLITS = ("train", "val", "test")
_EMBLEM_COLOURS = ((250, 250, 250), (20, 20, 20), (230, 180, 20), (220, 30, 30), (30, 200, 220), (120, 220, 40))
_PATTERN_COLOURS = tuple(COLOURS.values())


def derive_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent stream per (seed, purpose, index): the basis of worker-count independence."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, *keys]))


@dataclass(frozen=True)
class ProductPlan:
    """One product before rendering: ids, split, labels, title and the look to draw."""

    index: int
    product_id: str
    group_id: str
    split: str
    leaf: str
    attributes: dict[str, str]
    brand: str
    title: str
    look: ObjectLook
    n_images: int

    @property
    def category(self) -> list[str]:
        return LEAF_BY_NAME[self.leaf].path


@dataclass(frozen=True)
class _Fingerprint:
    shade: tuple[float, float, float]
    pattern_colour: tuple[int, int, int]
    pattern_period: float
    pattern_phase: float
    aspect_jitter: float


def _distance(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


def _emblem(brand_index: int, colour: tuple[int, int, int]) -> Emblem:
    """The brand's glyph, recoloured black or white where it would vanish on the product."""
    shape = EMBLEM_SHAPES[brand_index % len(EMBLEM_SHAPES)]
    glyph = _EMBLEM_COLOURS[(brand_index // len(EMBLEM_SHAPES)) % len(_EMBLEM_COLOURS)]
    if _distance(glyph, colour) < 110:
        glyph = (20, 20, 20) if sum(colour) > 3 * 128 else (250, 250, 250)
    return Emblem(shape=shape, colour=glyph)


def _look(leaf: str, attributes: dict[str, str], brand_index: int, fp: _Fingerprint) -> ObjectLook:
    base = np.clip(np.asarray(COLOURS[attributes["colour"]], np.float32) + np.asarray(fp.shade), 0, 255)
    colour = tuple(int(c) for c in base)
    pattern_colour = fp.pattern_colour
    if _distance(pattern_colour, colour) < 100:
        pattern_colour = (245, 245, 240) if sum(colour) < 3 * 128 else (25, 25, 30)
    return ObjectLook(leaf=leaf, colour=colour, pattern=attributes["pattern"], pattern_colour=pattern_colour,
                      pattern_period=fp.pattern_period, pattern_phase=fp.pattern_phase,
                      material=attributes["material"], aspect=FIT_ASPECT[attributes["fit"]] * fp.aspect_jitter,
                      emblem=_emblem(brand_index, colour))


def _new_combo(rng: np.random.Generator, leaf_weights: np.ndarray) -> tuple[str, dict[str, str]]:
    leaf = LEAF_TYPES[int(rng.choice(len(LEAF_TYPES), p=leaf_weights))]
    attributes = {}
    for name in ATTRIBUTE_NAMES:
        values = allowed_values(name, leaf)
        attributes[name] = values[int(rng.integers(len(values)))]
    return leaf.name, attributes


def _variants(rng: np.random.Generator, leaf: str, attributes: dict[str, str], size: int) -> list[dict[str, str]]:
    """`size` attribute dicts equal to `attributes` except in one attribute (distinct values)."""
    if size == 1:
        return [dict(attributes)]
    name = ATTRIBUTE_NAMES[int(rng.integers(len(ATTRIBUTE_NAMES)))]
    others = [v for v in allowed_values(name, LEAF_BY_NAME[leaf]) if v != attributes[name]]
    picked = [others[i] for i in rng.permutation(len(others))[: size - 1]]
    return [dict(attributes)] + [{**attributes, name: value} for value in picked]


def _assign_splits(rng: np.random.Generator, cluster_sizes: list[int], config: SynthConfig) -> list[str]:
    """A split per cluster (all groups that share a base attribute combination).

    Whole clusters go to one split, so variants never straddle splits and attribute
    combinations stay as ambiguous inside a split as in the whole catalogue (a split of
    10% of the products still holds every product that looks alike attribute-wise).
    Target sizes are met up to one cluster.
    """
    total = sum(cluster_sizes)
    targets = {"test": round(total * config.test_fraction), "val": round(total * config.val_fraction)}
    filled = {"test": 0, "val": 0}
    splits = ["train"] * len(cluster_sizes)
    for c in rng.permutation(len(cluster_sizes)):
        for split in ("test", "val"):
            if filled[split] < targets[split]:
                splits[c] = split
                filled[split] += cluster_sizes[c]
                break
    return splits


def plan_catalogue(config: SynthConfig) -> list[ProductPlan]:
    """All products of the dataset, in index order, from `config.seed` alone."""
    rng = derive_rng(config.seed, 0)
    brands = make_brands(rng, max(4, round(config.products / config.products_per_brand)))
    # A mild long tail over leaf types, like real catalogues (and for rebalanced sampling to matter).
    leaf_weights = 1.0 / np.sqrt(1.0 + rng.permutation(len(LEAF_TYPES)))
    leaf_weights /= leaf_weights.sum()
    reuse = 1.0 - 1.0 / config.groups_per_combo
    combos: list[tuple[str, dict[str, str]]] = []
    groups: list[tuple[int, list[dict[str, str]], int, _Fingerprint]] = []
    planned = 0
    while planned < config.products:
        size = 1
        if rng.random() < config.variant_fraction:
            size = int(rng.integers(2, config.max_variants + 1))
        size = min(size, config.products - planned)
        if combos and rng.random() < reuse:
            combo = int(rng.integers(len(combos)))
        else:
            combo = len(combos)
            combos.append(_new_combo(rng, leaf_weights))
        leaf, attributes = combos[combo]
        fp = _Fingerprint(shade=tuple(float(x) for x in rng.normal(0.0, 14.0, 3)),
                          pattern_colour=_PATTERN_COLOURS[int(rng.integers(len(_PATTERN_COLOURS)))],
                          pattern_period=float(rng.uniform(0.1, 0.2)), pattern_phase=float(rng.random()),
                          aspect_jitter=float(rng.uniform(0.9, 1.1)))
        variants = _variants(rng, leaf, attributes, size)
        groups.append((combo, variants, int(rng.integers(len(brands))), fp))
        planned += len(variants)
    cluster_sizes = [0] * len(combos)
    for combo, variants, _, _ in groups:
        cluster_sizes[combo] += len(variants)
    cluster_split = _assign_splits(rng, cluster_sizes, config)
    plans: list[ProductPlan] = []
    lo, hi = config.images_per_product
    for g, (combo, variants, brand_index, fp) in enumerate(groups):
        leaf = combos[combo][0]
        for attributes in variants:
            index = len(plans)
            prng = derive_rng(config.seed, 1, index)
            brand = brands[brand_index]
            plans.append(ProductPlan(
                index=index, product_id=f"p{index:06d}", group_id=f"g{g:06d}", split=cluster_split[combo], leaf=leaf,
                attributes=attributes, brand=brand, title=make_title(prng, brand, leaf, attributes),
                look=_look(leaf, attributes, brand_index, fp), n_images=int(prng.integers(lo, hi + 1))))
    return plans
