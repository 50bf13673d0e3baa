"""Inline SVG charts: line charts of training curves and horizontal bar charts.

SVG text inside the HTML keeps the page self-contained (no script, no CDN, nothing to
fetch), prints, and stays sharp at any zoom.
"""

from __future__ import annotations

import math
from html import escape
from typing import Optional, Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=mag * 10)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def line_chart(series: dict[str, Sequence[tuple[float, float]]], title: str, x_label: str = "step",
               width: int = 560, height: int = 300, dashed: Sequence[str] = (),
               y_range: Optional[tuple[float, float]] = None) -> str:
    """One SVG with a polyline per named series of (x, y) points; non-finite points are skipped."""
    clean = {name: [(x, y) for x, y in pts if y is not None and math.isfinite(y)] for name, pts in series.items()}
    clean = {k: v for k, v in clean.items() if v}
    if not clean:
        return f'<p class="missing">{escape(title)}: no data points.</p>'
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    yt = _nice_ticks(y0, y1)
    y0, y1 = min(yt[0], y0), max(yt[-1], y1)
    left, right, top, bottom = 52, 12, 28, 40
    legend_h = 16 * ((len(clean) + 2) // 3)
    pw, ph = width - left - right, height - top - bottom - legend_h

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y - y0) / ((y1 - y0) or 1.0) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{width / 2}" y="17" text-anchor="middle" class="ct">{escape(title)}</text>']
    for t in yt:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>'
                     f'<text x="{left - 5}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    for t in _nice_ticks(x0, x1, 6):
        if x0 <= t <= x1:
            parts.append(f'<text x="{px(t):.1f}" y="{top + ph + 15}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>'
                 f'<text x="{left + pw / 2}" y="{top + ph + 31}" text-anchor="middle" class="tick">'
                 f'{escape(x_label)}</text>')
    for i, (name, pts) in enumerate(clean.items()):
        colour = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5,4"' if name in dashed else ""
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}>'
                     f'<title>{escape(name)}</title></polyline>')
        if len(pts) <= 30:
            parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in pts]
        lx = left + (i % 3) * (pw / 3)
        ly = top + ph + 48 + 16 * (i // 3)
        parts.append(f'<line x1="{lx:.1f}" x2="{lx + 18:.1f}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" '
                     f'stroke-width="2"{dash}/><text x="{lx + 22:.1f}" y="{ly}" class="tick">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(categories: Sequence[str], series: dict[str, Sequence[Optional[float]]], title: str,
              counts: Optional[Sequence[int]] = None, width: int = 720, max_value: float = 1.0) -> str:
    """Horizontal grouped bars: one group per category, one bar per series (values in [0, max])."""
    if not categories or not series:
        return f'<p class="missing">{escape(title)}: no data.</p>'
    bar_h, gap, label_w, top = 11, 8, 190, 28
    n = len(series)
    group_h = n * bar_h + gap
    legend_h = 18
    height = top + legend_h + len(categories) * group_h + 24
    plot_w = width - label_w - 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{width / 2}" y="17" text-anchor="middle" class="ct">{escape(title)}</text>']
    for i, name in enumerate(series):
        lx = label_w + i * 180
        parts.append(f'<rect x="{lx}" y="{top - 2}" width="12" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                     f'<text x="{lx + 16}" y="{top + 7}" class="tick">{escape(name)}</text>')
    y = top + legend_h
    for c, cat in enumerate(categories):
        label = cat if counts is None else f"{cat} (n={counts[c]})"
        parts.append(f'<text x="{label_w - 6}" y="{y + group_h / 2:.1f}" text-anchor="end" class="tick">'
                     f'{escape(label)}</text>')
        for i, values in enumerate(series.values()):
            v = values[c]
            by = y + i * bar_h
            if v is None:
                parts.append(f'<text x="{label_w + 3}" y="{by + bar_h - 2}" class="tick">–</text>')
                continue
            w = max(0.0, min(1.0, v / max_value)) * plot_w
            parts.append(f'<rect x="{label_w}" y="{by}" width="{w:.1f}" height="{bar_h - 1}" '
                         f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(cat)}: {v:.3f}</title></rect>'
                         f'<text x="{label_w + w + 4:.1f}" y="{by + bar_h - 2}" class="tick">{v:.2f}</text>')
        y += group_h
    parts.append(f'<line x1="{label_w}" x2="{label_w}" y1="{top + legend_h - 4}" y2="{y}" class="axis"/></svg>')
    return "".join(parts)
