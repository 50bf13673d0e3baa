"""The MBE-synth vocabulary: category tree, visible attributes, their words and colours.

Everything the generator can say about a product (in a title, a query, an attribute or a
picture) comes from here, so the text side and the pixel side can never disagree about
what "crimson" or "denim" means. Canonical values are what records store in
`attributes`; synonyms are what titles and queries say, so a model has to learn that
"scarlet tee" and "red t-shirt" name the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORY_LEVELS = ["industry", "category", "type"]
ATTRIBUTE_NAMES = ["colour", "pattern", "material", "fit"]


@dataclass(frozen=True)
class LeafType:
    """A leaf of the category tree: the object kind that decides the drawn silhouette."""

    name: str
    industry: str
    category: str
    synonyms: tuple[str, ...]

    @property
    def path(self) -> list[str]:
        return [self.industry, self.category, self.name]


_TREE: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "apparel": {
        "tops": {"t-shirt": ("t-shirt", "tee", "tshirt"), "shirt": ("shirt", "button-down", "oxford shirt"),
                 "tank top": ("tank top", "vest top", "sleeveless top")},
        "bottoms": {"trousers": ("trousers", "pants", "slacks"), "shorts": ("shorts", "short pants"),
                    "skirt": ("skirt", "midi skirt")},
        "outerwear": {"hoodie": ("hoodie", "hooded sweatshirt"), "coat": ("coat", "overcoat", "trench")},
    },
    "accessories": {
        "bags": {"handbag": ("handbag", "purse"), "backpack": ("backpack", "rucksack", "daypack"),
                 "tote": ("tote", "tote bag", "shopper bag")},
        "footwear": {"sneaker": ("sneaker", "trainer", "running shoe"), "boot": ("boot", "ankle boot")},
        "headwear": {"cap": ("cap", "baseball cap"), "sun hat": ("sun hat", "wide-brim hat")},
    },
    "home": {
        "kitchen": {"mug": ("mug", "coffee cup"), "teapot": ("teapot", "tea kettle"),
                    "bottle": ("bottle", "flask", "water bottle")},
        "furniture": {"chair": ("chair", "dining chair"), "table": ("table", "side table"),
                      "lamp": ("lamp", "table lamp", "desk lamp")},
        "decor": {"vase": ("vase", "flower vase"), "clock": ("clock", "wall clock")},
    },
    "electronics": {
        "phones": {"phone": ("phone", "smartphone", "mobile"), "smartwatch": ("smartwatch", "fitness watch")},
        "audio": {"headphones": ("headphones", "headset", "over-ear headphones"),
                  "speaker": ("speaker", "bluetooth speaker")},
        "computers": {"laptop": ("laptop", "notebook"), "monitor": ("monitor", "display", "screen"),
                      "keyboard": ("keyboard", "mechanical keyboard")},
    },
}

LEAF_TYPES: tuple[LeafType, ...] = tuple(
    LeafType(name=leaf, industry=industry, category=category, synonyms=syn)
    for industry, categories in _TREE.items()
    for category, leaves in categories.items()
    for leaf, syn in leaves.items()
)
LEAF_BY_NAME = {leaf.name: leaf for leaf in LEAF_TYPES}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 35, 40), "orange": (235, 125, 30), "yellow": (235, 205, 50), "green": (50, 150, 60),
    "teal": (30, 150, 150), "blue": (45, 95, 215), "navy": (25, 35, 100), "purple": (120, 55, 160),
    "pink": (235, 130, 170), "brown": (120, 75, 40), "black": (30, 30, 32), "white": (238, 238, 232),
    "grey": (130, 130, 135),
}
COLOUR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"), "orange": ("orange", "tangerine"), "yellow": ("yellow", "mustard"),
    "green": ("green", "emerald", "forest green"), "teal": ("teal", "turquoise"),
    "blue": ("blue", "royal blue", "cobalt"), "navy": ("navy", "dark blue"), "purple": ("purple", "violet"),
    "pink": ("pink", "rose"), "brown": ("brown", "chocolate"), "black": ("black", "jet black"),
    "white": ("white", "ivory", "snow white"), "grey": ("grey", "gray", "charcoal"),
}

PATTERNS = ("solid", "striped", "checked", "dotted", "zigzag", "gradient")
PATTERN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "plain", "solid colour"), "striped": ("striped", "stripe", "pinstripe"),
    "checked": ("checked", "plaid", "check"), "dotted": ("dotted", "polka dot", "spotted"),
    "zigzag": ("zigzag", "chevron"), "gradient": ("gradient", "ombre", "colour fade"),
}

MATERIALS = ("matte", "glossy", "knit", "denim", "leather", "metallic")
MATERIAL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "matte": ("matte", "smooth"), "glossy": ("glossy", "shiny", "lacquered"), "knit": ("knit", "knitted", "wool"),
    "denim": ("denim", "twill", "canvas"), "leather": ("leather", "faux leather"),
    "metallic": ("metallic", "brushed metal", "aluminium"),
}
# Industries only use materials that make sense for them, so titles stay plausible.
MATERIALS_BY_INDUSTRY: dict[str, tuple[str, ...]] = {
    "apparel": ("matte", "knit", "denim", "leather"),
    "accessories": ("matte", "knit", "denim", "leather", "glossy"),
    "home": ("matte", "glossy", "metallic", "leather"),
    "electronics": ("matte", "glossy", "metallic"),
}

FITS = ("slim", "regular", "wide")
FIT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "slim": ("slim", "narrow", "slim-fit"), "regular": ("regular", "classic", "standard"),
    "wide": ("wide", "oversized", "broad"),
}
# How much a fit stretches the silhouette horizontally: visible at any scale and pose.
FIT_ASPECT: dict[str, float] = {"slim": 0.72, "regular": 1.0, "wide": 1.32}

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS), "pattern": PATTERNS, "material": MATERIALS, "fit": FITS,
}
ATTRIBUTE_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "colour": COLOUR_SYNONYMS, "pattern": PATTERN_SYNONYMS, "material": MATERIAL_SYNONYMS, "fit": FIT_SYNONYMS,
}


def allowed_values(attribute: str, leaf: LeafType) -> tuple[str, ...]:
    """Values an attribute may take for a leaf type (materials depend on the industry)."""
    if attribute == "material":
        return MATERIALS_BY_INDUSTRY[leaf.industry]
    return ATTRIBUTE_VALUES[attribute]
