"""One silhouette per leaf type, as a short list of drawing primitives in unit coordinates.

A silhouette is what makes a mug a mug at 128 pixels: category recognition has to come
from shape, not from colour or texture (those are attributes and vary freely inside a
type). Shapes are declared as data (primitive, mode, geometry) rather than drawing code,
so one renderer draws them all and the unit square maps onto any width/height, which is
how the `fit` attribute (slim/regular/wide) stretches every type the same way.

Modes: "add" paints the object mask, "cut" removes from it (holes of handles), "line"
and "fill" are dark details drawn over the textured surface (seams, screens, clock hands).
Coordinates: x to the right, y down, both in [0, 1] of the object's box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["add", "cut", "line", "fill"]
Kind = Literal["poly", "ellipse", "rect", "rrect", "arc", "polyline"]


@dataclass(frozen=True)
class Primitive:
    """One drawing step; `geom` is points for poly/polyline, a box (+radius/angles) otherwise."""

    kind: Kind
    mode: Mode
    geom: tuple
    width: float = 0.0  # stroke width as a fraction of the object's shorter side (arc, polyline, line mode)


@dataclass(frozen=True)
class Silhouette:
    """The shape of a leaf type: primitives, natural aspect (width/height), emblem anchor."""

    primitives: tuple[Primitive, ...]
    aspect: float
    emblem_at: tuple[float, float]


def _p(kind: Kind, mode: Mode, *geom, width: float = 0.0) -> Primitive:
    return Primitive(kind=kind, mode=mode, geom=tuple(geom), width=width)


SILHOUETTES: dict[str, Silhouette] = {
    "t-shirt": Silhouette((
        _p("poly", "add", (0.3, 0.05), (0.42, 0.1), (0.58, 0.1), (0.7, 0.05), (0.98, 0.25), (0.86, 0.42),
           (0.78, 0.36), (0.78, 0.98), (0.22, 0.98), (0.22, 0.36), (0.14, 0.42), (0.02, 0.25)),
        _p("arc", "line", 0.4, 0.0, 0.6, 0.2, 0, 180, width=0.03),
    ), aspect=1.0, emblem_at=(0.5, 0.4)),
    "shirt": Silhouette((
        _p("poly", "add", (0.3, 0.05), (0.5, 0.14), (0.7, 0.05), (0.92, 0.2), (1.0, 0.85), (0.88, 0.87),
           (0.8, 0.4), (0.8, 0.98), (0.2, 0.98), (0.2, 0.4), (0.12, 0.87), (0.0, 0.85), (0.08, 0.2)),
        _p("polyline", "line", (0.36, 0.05), (0.5, 0.2), (0.64, 0.05), width=0.03),
        _p("polyline", "line", (0.5, 0.2), (0.5, 0.98), width=0.02),
    ), aspect=1.0, emblem_at=(0.34, 0.36)),
    "tank top": Silhouette((
        _p("poly", "add", (0.28, 0.02), (0.38, 0.02), (0.42, 0.18), (0.58, 0.18), (0.62, 0.02), (0.72, 0.02),
           (0.74, 0.3), (0.82, 0.4), (0.82, 0.98), (0.18, 0.98), (0.18, 0.4), (0.26, 0.3)),
    ), aspect=0.75, emblem_at=(0.5, 0.5)),
    "trousers": Silhouette((
        _p("poly", "add", (0.18, 0.02), (0.82, 0.02), (0.92, 0.98), (0.6, 0.98), (0.5, 0.3), (0.4, 0.98),
           (0.08, 0.98)),
        _p("polyline", "line", (0.18, 0.09), (0.82, 0.09), width=0.025),
    ), aspect=0.6, emblem_at=(0.7, 0.2)),
    "shorts": Silhouette((
        _p("poly", "add", (0.1, 0.05), (0.9, 0.05), (0.98, 0.9), (0.56, 0.95), (0.5, 0.45), (0.44, 0.95),
           (0.02, 0.9)),
        _p("polyline", "line", (0.1, 0.14), (0.9, 0.14), width=0.03),
    ), aspect=1.2, emblem_at=(0.25, 0.32)),
    "skirt": Silhouette((
        _p("poly", "add", (0.3, 0.03), (0.7, 0.03), (0.98, 0.97), (0.02, 0.97)),
        _p("polyline", "line", (0.29, 0.12), (0.71, 0.12), width=0.03),
        _p("polyline", "line", (0.4, 0.12), (0.3, 0.97), width=0.015),
        _p("polyline", "line", (0.6, 0.12), (0.7, 0.97), width=0.015),
    ), aspect=0.9, emblem_at=(0.5, 0.4)),
    "hoodie": Silhouette((
        _p("ellipse", "add", 0.32, 0.0, 0.68, 0.3),
        _p("poly", "add", (0.25, 0.18), (0.75, 0.18), (0.95, 0.35), (1.0, 0.9), (0.88, 0.92), (0.8, 0.5),
           (0.8, 0.98), (0.2, 0.98), (0.2, 0.5), (0.12, 0.92), (0.0, 0.9), (0.05, 0.35)),
        _p("ellipse", "fill", 0.4, 0.06, 0.6, 0.24),
        _p("poly", "line", (0.32, 0.7), (0.68, 0.7), (0.74, 0.9), (0.26, 0.9), width=0.02),
    ), aspect=1.0, emblem_at=(0.5, 0.45)),
    "coat": Silhouette((
        _p("poly", "add", (0.3, 0.02), (0.5, 0.12), (0.7, 0.02), (0.9, 0.12), (1.0, 0.8), (0.9, 0.82),
           (0.84, 0.35), (0.86, 0.99), (0.14, 0.99), (0.16, 0.35), (0.1, 0.82), (0.0, 0.8), (0.1, 0.12)),
        _p("polyline", "line", (0.34, 0.04), (0.44, 0.4), (0.5, 0.12), (0.56, 0.4), (0.66, 0.04), width=0.02),
        _p("polyline", "line", (0.16, 0.55), (0.84, 0.55), width=0.035),
    ), aspect=0.7, emblem_at=(0.68, 0.3)),
    "handbag": Silhouette((
        _p("arc", "add", 0.25, 0.05, 0.75, 0.75, 180, 360, width=0.08),
        _p("poly", "add", (0.12, 0.4), (0.88, 0.4), (0.98, 0.98), (0.02, 0.98)),
        _p("polyline", "line", (0.1, 0.55), (0.9, 0.55), width=0.02),
    ), aspect=1.2, emblem_at=(0.5, 0.72)),
    "backpack": Silhouette((
        _p("arc", "add", 0.36, 0.0, 0.64, 0.24, 180, 360, width=0.06),
        _p("rrect", "add", 0.15, 0.1, 0.85, 0.98, 0.25),
        _p("rrect", "line", 0.28, 0.58, 0.72, 0.9, 0.1, width=0.025),
    ), aspect=0.8, emblem_at=(0.5, 0.36)),
    "tote": Silhouette((
        _p("arc", "add", 0.2, 0.05, 0.45, 0.7, 180, 360, width=0.05),
        _p("arc", "add", 0.55, 0.05, 0.8, 0.7, 180, 360, width=0.05),
        _p("rect", "add", 0.1, 0.36, 0.9, 0.98),
    ), aspect=0.95, emblem_at=(0.5, 0.66)),
    "sneaker": Silhouette((
        _p("poly", "add", (0.02, 0.55), (0.1, 0.25), (0.35, 0.2), (0.5, 0.35), (0.75, 0.45), (0.95, 0.55),
           (0.98, 0.8), (0.02, 0.8)),
        _p("rect", "fill", 0.0, 0.8, 1.0, 0.95),
        _p("polyline", "line", (0.4, 0.3), (0.5, 0.5), width=0.025),
        _p("polyline", "line", (0.5, 0.35), (0.62, 0.52), width=0.025),
    ), aspect=1.8, emblem_at=(0.3, 0.58)),
    "boot": Silhouette((
        _p("poly", "add", (0.15, 0.02), (0.55, 0.02), (0.55, 0.55), (0.85, 0.65), (0.98, 0.8), (0.98, 0.95),
           (0.1, 0.95), (0.12, 0.5)),
        _p("rect", "fill", 0.1, 0.88, 0.98, 0.95),
    ), aspect=0.9, emblem_at=(0.34, 0.36)),
    "cap": Silhouette((
        _p("ellipse", "add", 0.1, 0.1, 0.8, 0.95),
        _p("rect", "cut", 0.0, 0.6, 1.0, 1.0),
        _p("poly", "add", (0.55, 0.5), (1.0, 0.56), (0.98, 0.68), (0.5, 0.62)),
        _p("polyline", "line", (0.45, 0.1), (0.45, 0.6), width=0.02),
    ), aspect=1.5, emblem_at=(0.28, 0.38)),
    "sun hat": Silhouette((
        _p("ellipse", "add", 0.0, 0.5, 1.0, 0.9),
        _p("ellipse", "add", 0.28, 0.12, 0.72, 0.72),
        _p("polyline", "line", (0.28, 0.58), (0.72, 0.58), width=0.04),
    ), aspect=1.5, emblem_at=(0.5, 0.4)),
    "mug": Silhouette((
        _p("ellipse", "add", 0.58, 0.25, 0.98, 0.78),
        _p("ellipse", "cut", 0.68, 0.37, 0.88, 0.66),
        _p("rrect", "add", 0.12, 0.08, 0.74, 0.96, 0.08),
        _p("ellipse", "line", 0.12, 0.03, 0.74, 0.14, width=0.02),
    ), aspect=1.1, emblem_at=(0.43, 0.52)),
    "teapot": Silhouette((
        _p("ellipse", "add", 0.02, 0.4, 0.3, 0.8),
        _p("ellipse", "cut", 0.08, 0.48, 0.24, 0.72),
        _p("poly", "add", (0.72, 0.62), (0.97, 0.28), (1.0, 0.34), (0.82, 0.82)),
        _p("ellipse", "add", 0.2, 0.3, 0.8, 0.97),
        _p("ellipse", "add", 0.35, 0.18, 0.65, 0.38),
        _p("ellipse", "add", 0.45, 0.07, 0.55, 0.21),
    ), aspect=1.3, emblem_at=(0.5, 0.64)),
    "bottle": Silhouette((
        _p("rect", "add", 0.38, 0.0, 0.62, 0.3),
        _p("poly", "add", (0.38, 0.24), (0.62, 0.24), (0.82, 0.42), (0.18, 0.42)),
        _p("rrect", "add", 0.18, 0.38, 0.82, 0.99, 0.12),
        _p("rect", "fill", 0.36, 0.0, 0.64, 0.08),
    ), aspect=0.45, emblem_at=(0.5, 0.68)),
    "chair": Silhouette((
        _p("rrect", "add", 0.2, 0.0, 0.8, 0.46, 0.1),
        _p("rect", "add", 0.12, 0.45, 0.88, 0.58),
        _p("rect", "add", 0.15, 0.57, 0.23, 0.99),
        _p("rect", "add", 0.77, 0.57, 0.85, 0.99),
    ), aspect=0.75, emblem_at=(0.5, 0.23)),
    "table": Silhouette((
        _p("rect", "add", 0.0, 0.25, 1.0, 0.38),
        _p("rect", "add", 0.05, 0.37, 0.95, 0.48),
        _p("rect", "add", 0.08, 0.47, 0.16, 0.98),
        _p("rect", "add", 0.84, 0.47, 0.92, 0.98),
    ), aspect=1.5, emblem_at=(0.5, 0.42)),
    "lamp": Silhouette((
        _p("poly", "add", (0.3, 0.0), (0.7, 0.0), (0.92, 0.45), (0.08, 0.45)),
        _p("rect", "add", 0.46, 0.44, 0.54, 0.88),
        _p("ellipse", "add", 0.2, 0.84, 0.8, 1.0),
    ), aspect=0.8, emblem_at=(0.5, 0.26)),
    "vase": Silhouette((
        _p("poly", "add", (0.35, 0.0), (0.65, 0.0), (0.6, 0.15), (0.85, 0.45), (0.8, 0.85), (0.65, 1.0),
           (0.35, 1.0), (0.2, 0.85), (0.15, 0.45), (0.4, 0.15)),
    ), aspect=0.65, emblem_at=(0.5, 0.56)),
    "clock": Silhouette((
        _p("ellipse", "add", 0.0, 0.0, 1.0, 1.0),
        _p("ellipse", "line", 0.08, 0.08, 0.92, 0.92, width=0.03),
        _p("polyline", "line", (0.5, 0.5), (0.5, 0.2), width=0.05),
        _p("polyline", "line", (0.5, 0.5), (0.74, 0.6), width=0.05),
    ), aspect=1.0, emblem_at=(0.5, 0.76)),
    "phone": Silhouette((
        _p("rrect", "add", 0.08, 0.0, 0.92, 1.0, 0.15),
        _p("rrect", "line", 0.16, 0.07, 0.84, 0.88, 0.05, width=0.04),
        _p("ellipse", "fill", 0.44, 0.91, 0.56, 0.97),
    ), aspect=0.5, emblem_at=(0.5, 0.45)),
    "smartwatch": Silhouette((
        _p("rect", "add", 0.3, 0.0, 0.7, 1.0),
        _p("rrect", "add", 0.12, 0.24, 0.88, 0.76, 0.2),
        _p("rrect", "line", 0.22, 0.32, 0.78, 0.68, 0.15, width=0.04),
    ), aspect=0.6, emblem_at=(0.5, 0.5)),
    "headphones": Silhouette((
        _p("arc", "add", 0.1, 0.0, 0.9, 0.9, 180, 360, width=0.1),
        _p("rect", "add", 0.1, 0.42, 0.17, 0.6),
        _p("rect", "add", 0.83, 0.42, 0.9, 0.6),
        _p("rrect", "add", 0.02, 0.5, 0.3, 0.98, 0.3),
        _p("rrect", "add", 0.7, 0.5, 0.98, 0.98, 0.3),
    ), aspect=1.1, emblem_at=(0.16, 0.74)),
    "speaker": Silhouette((
        _p("rrect", "add", 0.15, 0.0, 0.85, 1.0, 0.12),
        _p("ellipse", "line", 0.25, 0.5, 0.75, 0.92, width=0.04),
        _p("ellipse", "fill", 0.42, 0.64, 0.58, 0.78),
        _p("ellipse", "line", 0.4, 0.08, 0.6, 0.24, width=0.04),
    ), aspect=0.65, emblem_at=(0.5, 0.37)),
    "laptop": Silhouette((
        _p("rrect", "add", 0.12, 0.0, 0.88, 0.64, 0.04),
        _p("poly", "add", (0.05, 0.64), (0.95, 0.64), (1.0, 0.8), (0.0, 0.8)),
        _p("polyline", "line", (0.4, 0.72), (0.6, 0.72), width=0.03),
    ), aspect=1.4, emblem_at=(0.5, 0.32)),
    "monitor": Silhouette((
        _p("rrect", "add", 0.0, 0.0, 1.0, 0.68, 0.03),
        _p("rect", "add", 0.45, 0.67, 0.55, 0.88),
        _p("rect", "add", 0.28, 0.86, 0.72, 0.95),
        _p("rect", "line", 0.05, 0.06, 0.95, 0.62, width=0.02),
    ), aspect=1.4, emblem_at=(0.5, 0.34)),
    "keyboard": Silhouette((
        _p("rrect", "add", 0.0, 0.25, 1.0, 0.8, 0.05),
        *(_p("polyline", "line", (0.04, y), (0.96, y), width=0.025) for y in (0.38, 0.5, 0.62)),
        *(_p("polyline", "line", (x, 0.3), (x, 0.74), width=0.012) for x in (0.2, 0.35, 0.5, 0.65, 0.8)),
    ), aspect=2.2, emblem_at=(0.88, 0.32)),
}
