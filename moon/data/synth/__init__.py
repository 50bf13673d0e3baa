"""MBE-synth: a procedural, seeded e-commerce benchmark small enough for a laptop CPU.

What it contains: 4 industries > 12 categories > 30 leaf types (taxonomy.py), four
attributes visible in the pictures (colour, pattern, material texture, fit/shape), 2-4
cluttered photos per product with the true product box (scene.py), noisy marketplace
titles with brand tokens (titles.py), variant groups sharing a group_id, train/val/test
splits disjoint by product, group and attribute combination (plan.py), and a behaviour log of text, image
and product queries with sessions and timestamps (queries.py). generator.py renders it
in parallel, byte-identically for any worker count.

The chance-level property, and how the generator ensures it
-----------------------------------------------------------
A benchmark built on this data must not be solvable by a model that ignores the modality
a task is about:

* Image queries carry no text (the record forbids it) and the photo is a *new* user
  photo of the product rendered from its own seed (other pose, scale, clutter, lighting,
  JPEG quality), never one of the catalogue images, so neither text nor an image hash
  can match it: a model that ignores pixels sees an empty query and ranks at chance.
* Attributes alone do not identify a product: on average `groups_per_combo` groups share
  each (type, colour, pattern, material, fit) combination, and variants of a group share
  all but one attribute. So even a perfect attribute recogniser with text matching is
  capped far below a model that uses the visual fingerprint (brand emblem, exact shade,
  pattern phase/period, proportions) the query photo shares with its product.
* Text queries carry no image; they name the brand token (shared by about
  `products_per_brand` products) plus 1-3 attribute synonyms and a type synonym, so they
  are solvable from the product's title/attributes but a model that ignores text sees an
  empty query and ranks at chance.

tests/data/synth/test_chance.py checks this numerically with a bag-of-words text embedder
and a colour-histogram pixel embedder, and the cap for an attribute-only matcher.
"""

from moon.data.stats import dataset_stats
from moon.data.synth.config import SynthConfig
from moon.data.synth.generator import generate

__all__ = ["SynthConfig", "dataset_stats", "generate"]
