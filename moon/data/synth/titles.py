"""Product titles, brand names and query texts, written the way marketplaces write them.

Titles are noisy on purpose: the brand is a made-up token, attribute words come from a
synonym list in shuffled order, some attributes are left out, and marketing filler
("free shipping", "2024 new") is sprinkled around. Queries use their *own* synonym draw,
so matching a query to a title needs more than copying words, while the brand token,
shared by a handful of products only, is what lets text resolve a text query.
"""

from __future__ import annotations

import numpy as np

from moon.data.synth.taxonomy import ATTRIBUTE_NAMES, ATTRIBUTE_SYNONYMS, LEAF_BY_NAME

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "tr", "st", "vel", "qu")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "y")
_CODAS = ("", "", "n", "r", "x", "s", "k", "m", "sh", "lt")
NOISE_WORDS = ("new", "2024", "hot sale", "official", "genuine", "premium", "limited edition",
               "free shipping", "best seller", "trendy", "gift", "original", "for men", "for women", "unisex")
# How likely a title mentions each attribute: colour almost always, fit least often.
_TITLE_MENTION = {"colour": 0.95, "pattern": 0.8, "material": 0.7, "fit": 0.55}


def _choice(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def make_brands(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct pronounceable brand tokens ("Velora", "Kruxim"); never a vocabulary word."""
    brands: list[str] = []
    seen: set[str] = set()
    while len(brands) < n:
        syllables = int(rng.integers(2, 4))
        word = "".join(_choice(rng, _ONSETS) + _choice(rng, _VOWELS) for _ in range(syllables))
        word = (word + _choice(rng, _CODAS)).capitalize()
        if word.lower() not in seen and len(word) >= 4:
            seen.add(word.lower())
            brands.append(word)
    return brands


def attribute_word(rng: np.random.Generator, name: str, value: str) -> str:
    return _choice(rng, ATTRIBUTE_SYNONYMS[name][value])


def type_word(rng: np.random.Generator, leaf: str) -> str:
    return _choice(rng, LEAF_BY_NAME[leaf].synonyms)


def make_title(rng: np.random.Generator, brand: str, leaf: str, attributes: dict[str, str]) -> str:
    """Brand + shuffled attribute synonyms + type synonym + 0-3 noise words, in varying order."""
    words = [attribute_word(rng, name, attributes[name]) for name in ATTRIBUTE_NAMES
             if rng.random() < _TITLE_MENTION[name]]
    words = [words[i] for i in rng.permutation(len(words))]
    core = words + [type_word(rng, leaf)]
    noise = [_choice(rng, NOISE_WORDS) for _ in range(int(rng.integers(0, 4)))]
    split = int(rng.integers(0, len(noise) + 1))
    parts = [brand, *noise[:split], *core, *noise[split:]] if rng.random() < 0.75 else \
        [*noise[:split], *core, "by", brand, *noise[split:]]
    return " ".join(parts)


def text_query(rng: np.random.Generator, brand: str, leaf: str, attributes: dict[str, str]) -> str:
    """What a shopper types: the brand, 1-3 attributes (own synonyms), the type; lower case."""
    names = [ATTRIBUTE_NAMES[i] for i in rng.permutation(len(ATTRIBUTE_NAMES))[: int(rng.integers(1, 4))]]
    words = [attribute_word(rng, name, attributes[name]) for name in names] + [type_word(rng, leaf)]
    parts = [brand.lower(), *words] if rng.random() < 0.6 else [*words, brand.lower()]
    return " ".join(parts)


def product_query_text(rng: np.random.Generator, leaf: str, attributes: dict[str, str]) -> str:
    """The text half of a product query: a short description without the brand."""
    names = [ATTRIBUTE_NAMES[i] for i in rng.permutation(len(ATTRIBUTE_NAMES))[: int(rng.integers(1, 3))]]
    lead = _choice(rng, ("", "looking for", "similar", "same style", "want"))
    words = [attribute_word(rng, name, attributes[name]) for name in names] + [type_word(rng, leaf)]
    return " ".join(w for w in (lead, *words) if w)
