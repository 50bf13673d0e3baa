"""Procedural drawing of one object: silhouette, colour, pattern, material texture, emblem.

Each visible attribute is drawn so that it survives a 128-pixel JPEG: colour covers most
of the surface, patterns have a period of a few pixels at most 1/5 of the object, the
material changes the micro-texture and shading (knit ribs, denim twill, glossy highlight,
brushed metal), and the fit stretches the silhouette. The brand emblem and a few
product-specific constants (exact shade, pattern phase and period, proportions) form a
visual fingerprint, so two products that share every attribute still look different:
that is what makes image queries need pixels (see the package docstring).

Drawing uses PIL for vector shapes (2x supersampled for anti-aliasing) and numpy for
per-pixel textures; an object of 60-90 pixels renders in about a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from moon.data.synth.shapes import SILHOUETTES, Primitive

SUPERSAMPLE = 2
EMBLEM_SHAPES = ("circle", "triangle", "square", "diamond", "star", "cross", "ring", "bars")


@dataclass(frozen=True)
class Emblem:
    """A brand's mark: a small glyph drawn on every product of the brand."""

    shape: str
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class ObjectLook:
    """Everything that decides how one object looks, independent of pose and scene."""

    leaf: str
    colour: tuple[int, int, int]
    pattern: str
    pattern_colour: tuple[int, int, int]
    pattern_period: float  # fraction of the object's height
    pattern_phase: float  # in [0, 1)
    material: str
    aspect: float  # horizontal stretch: fit times a small per-product jitter
    emblem: Optional[Emblem] = None


def object_size(look: ObjectLook, longest_side: int) -> tuple[int, int]:
    """Pixel (width, height) of an object whose longer side is `longest_side`."""
    aspect = SILHOUETTES[look.leaf].aspect * look.aspect
    if aspect >= 1.0:
        return longest_side, max(8, round(longest_side / aspect))
    return max(8, round(longest_side * aspect)), longest_side


def _draw_primitive(draw: ImageDraw.ImageDraw, prim: Primitive, w: int, h: int, fill: int) -> None:
    short = min(w, h)
    width = max(1, round(prim.width * short))

    def pt(x: float, y: float) -> tuple[float, float]:
        return (x * (w - 1), y * (h - 1))

    outline = prim.mode == "line"
    if prim.kind in ("poly", "polyline"):
        pts = [pt(*p) for p in prim.geom]
        if prim.kind == "polyline" or outline:
            draw.line(pts + ([pts[0]] if prim.kind == "poly" else []), fill=fill, width=width, joint="curve")
        else:
            draw.polygon(pts, fill=fill)
        return
    box = [*pt(prim.geom[0], prim.geom[1]), *pt(prim.geom[2], prim.geom[3])]
    if prim.kind == "arc":
        draw.arc(box, start=prim.geom[4], end=prim.geom[5], fill=fill, width=width)
    elif prim.kind == "ellipse":
        draw.ellipse(box, outline=fill if outline else None, fill=None if outline else fill,
                     width=width if outline else 1)
    elif prim.kind == "rect":
        draw.rectangle(box, outline=fill if outline else None, fill=None if outline else fill,
                       width=width if outline else 1)
    else:
        radius = prim.geom[4] * short
        draw.rounded_rectangle(box, radius=radius, outline=fill if outline else None,
                               fill=None if outline else fill, width=width if outline else 1)


def silhouette_masks(leaf: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(object mask, detail mask) as float arrays in [0, 1] of shape (height, width)."""
    sw, sh = width * SUPERSAMPLE, height * SUPERSAMPLE
    body, detail = Image.new("L", (sw, sh), 0), Image.new("L", (sw, sh), 0)
    body_draw, detail_draw = ImageDraw.Draw(body), ImageDraw.Draw(detail)
    for prim in SILHOUETTES[leaf].primitives:
        if prim.mode in ("add", "cut"):
            _draw_primitive(body_draw, prim, sw, sh, 255 if prim.mode == "add" else 0)
        else:
            _draw_primitive(detail_draw, prim, sw, sh, 255)
    body, detail = body.reduce(SUPERSAMPLE), detail.reduce(SUPERSAMPLE)
    return np.asarray(body, dtype=np.float32) / 255.0, np.asarray(detail, dtype=np.float32) / 255.0


@lru_cache(maxsize=512)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) coordinates as float32; cached because objects reuse a few sizes."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def pattern_mask(pattern: str, height: int, width: int, period: float, phase: float) -> np.ndarray:
    """Where the secondary pattern colour shows, in [0, 1], shape (height, width)."""
    yy, xx = _pixel_grid(height, width)
    u, v = xx / height, yy / height
    if pattern == "solid":
        return np.zeros((height, width), np.float32)
    if pattern == "striped":
        return (np.mod(v / period + phase, 1.0) < 0.42).astype(np.float32)
    if pattern == "checked":
        cells = np.floor(u / period + phase) + np.floor(v / period + phase)
        return 0.65 * (np.mod(cells, 2.0) == 1).astype(np.float32)
    if pattern == "dotted":
        gy = v / period + phase
        gx = u / period + phase + 0.5 * np.mod(np.floor(gy), 2.0)
        dist = np.hypot(np.mod(gx, 1.0) - 0.5, np.mod(gy, 1.0) - 0.5)
        return (dist < 0.27).astype(np.float32)
    if pattern == "zigzag":
        tri = np.abs(np.mod(u / period, 1.0) - 0.5)
        return (np.mod(v / period + tri + phase, 1.0) < 0.33).astype(np.float32)
    if pattern == "gradient":
        return np.clip(v * height / max(height - 1, 1) * 0.9, 0.0, 0.9).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}")


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: random values on a coarse grid, bilinear upsampled."""
    coarse = rng.standard_normal((height // cell + 2, width // cell + 2)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def material_shading(material: str, surface: np.ndarray, mask: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Apply the material's micro-texture and shading to an (h, w, 3) float surface."""
    h, w = mask.shape
    yy, xx = _pixel_grid(h, w)
    light = (1.06 - 0.14 * yy / max(h - 1, 1))[..., None]
    if material == "matte":
        return surface * light * (1.0 + 0.03 * _smooth_noise(rng, h, w, 6))[..., None]
    if material == "glossy":
        spot = np.exp(-(((xx - 0.3 * w) / (0.22 * w)) ** 2 + ((yy - 0.25 * h) / (0.2 * h)) ** 2))
        shaded = surface * (light * 1.05) * 0.92
        return shaded * (1 - 0.7 * spot[..., None]) + 255.0 * 0.7 * spot[..., None]
    if material == "knit":
        ribs = 0.86 + 0.14 * np.abs(np.sin(np.pi * xx / 2.5)) * (0.75 + 0.25 * np.cos(np.pi * yy / 2.0))
        return surface * light * ribs[..., None]
    if material == "denim":
        twill = np.mod(xx + yy, 4.0) < 2.0
        grain = 1.0 + 0.06 * rng.standard_normal((h, w)).astype(np.float32)
        return surface * light * ((0.86 + 0.14 * twill) * grain)[..., None]
    if material == "leather":
        edge = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.BoxBlur(3)),
                          dtype=np.float32) / 255.0
        blotch = 1.0 + 0.1 * _smooth_noise(rng, h, w, 4)
        return surface * light * ((0.7 + 0.3 * edge) * blotch)[..., None]
    if material == "metallic":
        streaks = 1.0 + 0.1 * _smooth_noise(rng, h, max(w // 8, 1), 1)
        streaks = np.asarray(Image.fromarray(streaks, mode="F").resize((w, h)), dtype=np.float32)
        sheen = 0.8 + 0.35 * np.cos(2.0 * np.pi * (xx / max(w - 1, 1) * 1.3 - 0.2)) ** 2
        grey = surface.mean(axis=2, keepdims=True)
        return (0.75 * surface + 0.25 * grey) * (streaks * sheen)[..., None]
    raise ValueError(f"unknown material {material!r}")


def _draw_emblem(img: Image.Image, emblem: Emblem, cx: float, cy: float, size: float) -> None:
    draw = ImageDraw.Draw(img)
    r = size / 2
    box = (cx - r, cy - r, cx + r, cy + r)
    fill = emblem.colour
    if emblem.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif emblem.shape == "ring":
        draw.ellipse(box, outline=fill, width=max(1, round(size / 4)))
    elif emblem.shape == "square":
        draw.rectangle(box, fill=fill)
    elif emblem.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif emblem.shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif emblem.shape == "star":
        angles = np.linspace(-np.pi / 2, 1.5 * np.pi, 11)[:-1]
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        draw.polygon([(cx + rr * np.cos(a), cy + rr * np.sin(a)) for a, rr in zip(angles, radii)], fill=fill)
    elif emblem.shape == "cross":
        t = max(1.0, size / 4)
        draw.rectangle((cx - t / 2, cy - r, cx + t / 2, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - t / 2, cx + r, cy + t / 2), fill=fill)
    elif emblem.shape == "bars":
        t = max(1.0, size / 5)
        for dy in (-r, -t / 2, r - t):
            draw.rectangle((cx - r, cy + dy, cx + r, cy + dy + t), fill=fill)
    else:
        raise ValueError(f"unknown emblem shape {emblem.shape!r}")


def detail_tone(colour: tuple[int, int, int]) -> np.ndarray:
    """Seams and screens: darker than the surface, or lighter on near-black objects."""
    rgb = np.asarray(colour, np.float32)
    return np.full(3, 120.0, np.float32) if rgb.mean() < 60 else rgb * 0.35


def render_object(look: ObjectLook, longest_side: int, rng: np.random.Generator) -> Image.Image:
    """Draw the object as an RGBA image (alpha = silhouette), longer side `longest_side` pixels."""
    width, height = object_size(look, longest_side)
    mask, detail = silhouette_masks(look.leaf, width, height)
    pm = pattern_mask(look.pattern, height, width, look.pattern_period, look.pattern_phase)[..., None]
    surface = (np.asarray(look.colour, np.float32) * (1.0 - pm)
               + np.asarray(look.pattern_colour, np.float32) * pm)
    surface = material_shading(look.material, surface, mask, rng)
    surface = surface * (1.0 - 0.85 * detail[..., None]) + detail_tone(look.colour) * 0.85 * detail[..., None]
    rgb = Image.fromarray(np.clip(surface, 0, 255).astype(np.uint8), "RGB")
    if look.emblem is not None:
        ex, ey = SILHOUETTES[look.leaf].emblem_at
        _draw_emblem(rgb, look.emblem, ex * (width - 1), ey * (height - 1), max(4.0, 0.2 * min(width, height)))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray((mask * 255).astype(np.uint8), "L"))
    return rgba
