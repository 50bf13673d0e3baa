"""Photographs of a product: one object posed on a cluttered background, with its true box.

Real catalogue and user photos show the product among other things (props, packaging,
price tags, printed text), so an encoder that looks at the whole frame mixes the product
with its surroundings. Every view here therefore has a textured background, 1-4
distractor objects of *other* categories (so the core region stays unambiguous) and
text-like marks; the product is drawn last, fully inside the frame, at a random scale,
rotation and mirror, and its tight box is recorded as the ground truth core region
(Box role=TRUTH, source="synth") that detectors train on and crops are scored against.

User photos (image queries) add what phones do: exposure and colour-cast shifts, blur,
stronger clutter and lower JPEG quality.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from moon.data.records import Box, BoxRole, ProductImage
from moon.data.synth.draw import ObjectLook, render_object
from moon.data.synth.taxonomy import COLOURS, LEAF_BY_NAME, LEAF_TYPES, MATERIALS, PATTERNS

_PALETTE = np.asarray(list(COLOURS.values()), np.float32)
_POOL_SEED = 20240601
_POOL_OBJECTS = 480  # 16 looks per leaf type
_POOL_TEXTS = 256


@dataclass(frozen=True)
class ViewStyle:
    """How a photo is taken: catalogue shots are cleaner than user photos."""

    scale: tuple[float, float]  # object's longer side as a fraction of the image side
    max_rotation: float  # degrees
    distractors: tuple[int, int]
    text_marks: tuple[int, int]
    jpeg_quality: int
    photometric: bool


CATALOGUE = ViewStyle(scale=(0.5, 0.75), max_rotation=15.0, distractors=(1, 3), text_marks=(1, 2),
                      jpeg_quality=90, photometric=False)
USER_PHOTO = ViewStyle(scale=(0.4, 0.7), max_rotation=25.0, distractors=(2, 4), text_marks=(1, 3),
                       jpeg_quality=75, photometric=True)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


@lru_cache(maxsize=4)
def _noise_tile(size: int) -> np.ndarray:
    """Sensor-like noise from a fixed seed; views take random windows of it (cheap, deterministic)."""
    noise = np.random.default_rng(12345).normal(0.0, 6.0, (2 * size, 2 * size, 1))
    return np.round(noise).astype(np.int16)


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    base = _PALETTE[rng.integers(len(_PALETTE))]
    return tuple(int(c) for c in np.clip(base + rng.normal(0, 25, 3), 0, 255))


def background(size: int, rng: np.random.Generator) -> Image.Image:
    """A textured backdrop: gradient, tiles, wood-like planks or blotchy fabric.

    Drawn at half resolution and upsampled (a slightly out-of-focus backdrop, as in
    photos, at a quarter of the cost), then sensor noise is added at full resolution.
    """
    half = max(8, size // 2)
    c0 = np.asarray(_random_colour(rng), np.float32)
    c1 = np.asarray(_random_colour(rng), np.float32)
    yy, xx = _grid(half)
    kind = int(rng.integers(4))
    if kind == 0:
        angle = rng.uniform(0, 2 * np.pi)
        t = np.clip(0.5 + (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle), 0, 1)[..., None]
        img = c0 * (1 - t) + c1 * t
    elif kind == 1:
        cell = rng.uniform(0.08, 0.25)
        lines = (np.mod(xx, cell) < 0.025) | (np.mod(yy, cell) < 0.025)
        img = np.where(lines[..., None], c1, c0)
    elif kind == 2:
        bands = np.sin(2 * np.pi * (yy * rng.uniform(3, 8) + 0.15 * np.sin(2 * np.pi * xx * rng.uniform(1, 3))))
        img = c0 * (0.85 + 0.15 * bands[..., None])
    else:
        coarse = rng.random((6, 6)).astype(np.float32)
        t = np.asarray(Image.fromarray(coarse, "F").resize((half, half), Image.Resampling.BILINEAR))[..., None]
        img = c0 * (1 - t) + c1 * t
    small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    full = np.asarray(small.resize((size, size), Image.Resampling.BILINEAR), np.int16)
    oy, ox = rng.integers(0, size, 2)
    noisy = full + _noise_tile(size)[oy:oy + size, ox:ox + size]
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _distractor_look(leaf: str, rng: np.random.Generator) -> ObjectLook:
    """A random-looking object of a given type, without emblem: clutter, never a product."""
    return ObjectLook(leaf=leaf, colour=_random_colour(rng), pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
                      pattern_colour=_random_colour(rng), pattern_period=float(rng.uniform(0.12, 0.25)),
                      pattern_phase=float(rng.random()), material=MATERIALS[int(rng.integers(len(MATERIALS)))],
                      aspect=float(rng.uniform(0.8, 1.2)))


def _text_sprite(size: int, rng: np.random.Generator) -> Image.Image:
    """A line of random characters, sometimes on a label: watermarks, price tags, packaging."""
    n = int(rng.integers(3, 9))
    alphabet = string.ascii_uppercase + string.digits + "$%-"
    text = "".join(alphabet[i] for i in rng.integers(len(alphabet), size=n))
    font = _font(int(rng.integers(max(7, size // 14), max(8, size // 8))))
    left, top, right, bottom = font.getbbox(text)
    sprite = Image.new("RGBA", (right - left + 4, bottom - top + 4), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sprite)
    if rng.random() < 0.5:
        draw.rectangle((0, 0, sprite.width - 1, sprite.height - 1), fill=_random_colour(rng))
    draw.text((2 - left, 2 - top), text, fill=_random_colour(rng), font=font)
    return sprite


@dataclass(frozen=True)
class _ClutterPool:
    """Pre-rendered distractors (by category to exclude) and text sprites."""

    objects_not_in: dict[str, list[Image.Image]]
    texts: list[Image.Image]


@lru_cache(maxsize=2)
def _clutter_pool(size: int) -> _ClutterPool:
    """Clutter sprites drawn once per process from a fixed seed.

    Distractors and text marks are 3/4 of all drawing; rendering them once per process and
    then only choosing, flipping and placing them per view cuts generation time by about
    half. The pool is built from a constant seed, so every worker holds the same pool and
    outputs stay independent of the worker count.
    """
    rng = np.random.default_rng(_POOL_SEED)
    objects: list[tuple[str, Image.Image]] = []
    for i in range(_POOL_OBJECTS):
        leaf = LEAF_TYPES[i % len(LEAF_TYPES)]
        sprite = render_object(_distractor_look(leaf.name, rng), int(size * rng.uniform(0.2, 0.45)), rng)
        objects.append((leaf.category, _pose(sprite, rng, 40.0)))
    categories = {leaf.category for leaf in LEAF_TYPES}
    by_category = {c: [sprite for cat, sprite in objects if cat != c] for c in categories}
    return _ClutterPool(objects_not_in=by_category, texts=[_text_sprite(size, rng) for _ in range(_POOL_TEXTS)])


def _paste_sprite(img: Image.Image, sprite: Image.Image, rng: np.random.Generator, inside: bool) -> None:
    """Objects may hang over the border (and are mirrored half of the time); text stays inside, unmirrored."""
    size = img.width
    if inside:
        x = int(rng.integers(0, max(1, size - sprite.width)))
        y = int(rng.integers(0, max(1, size - sprite.height)))
    else:
        if rng.random() < 0.5:
            sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = int(rng.integers(-sprite.width // 3, size - sprite.width * 2 // 3))
        y = int(rng.integers(-sprite.height // 3, size - sprite.height * 2 // 3))
    img.paste(sprite, (x, y), sprite)


def _photometric(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Exposure, contrast and colour cast in one pass, then blur half of the time."""
    arr = np.asarray(img, np.float32)
    contrast = float(rng.uniform(0.8, 1.15))
    gain = float(rng.uniform(0.75, 1.2)) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    arr = ((arr - arr.mean()) * contrast + arr.mean()) * gain
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.8))))
    return img


def _pose(obj: Image.Image, rng: np.random.Generator, max_rotation: float) -> Image.Image:
    if rng.random() < 0.5:
        obj = obj.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = float(rng.uniform(-max_rotation, max_rotation))
    return obj.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)


def render_view(look: ObjectLook, size: int, style: ViewStyle, rng: np.random.Generator) -> ProductImage:
    """One photo of the product: JPEG bytes plus the tight ground-truth box of the product."""
    img = background(size, rng)
    pool = _clutter_pool(size)
    others = pool.objects_not_in[LEAF_BY_NAME[look.leaf].category]
    for _ in range(int(rng.integers(style.distractors[0], style.distractors[1] + 1))):
        _paste_sprite(img, others[int(rng.integers(len(others)))], rng, inside=False)
    for _ in range(int(rng.integers(style.text_marks[0], style.text_marks[1] + 1))):
        _paste_sprite(img, pool.texts[int(rng.integers(len(pool.texts)))], rng, inside=True)
    obj = _pose(render_object(look, max(12, int(size * rng.uniform(*style.scale))), rng), rng, style.max_rotation)
    if max(obj.size) > size:
        ratio = size / max(obj.size)
        obj = obj.resize((max(1, int(obj.width * ratio)), max(1, int(obj.height * ratio))),
                         Image.Resampling.BILINEAR)
    x, y = int(rng.integers(0, size - obj.width + 1)), int(rng.integers(0, size - obj.height + 1))
    img.paste(obj, (x, y), obj)
    if style.photometric:
        img = _photometric(img, rng)
    bx0, by0, bx1, by1 = obj.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox()
    box = Box(x0=float(x + bx0), y0=float(y + by0), x1=float(x + bx1), y1=float(y + by1),
              role=BoxRole.TRUTH, source="synth")
    return ProductImage.from_pil(img, "jpg", quality=style.jpeg_quality, boxes=[box])
