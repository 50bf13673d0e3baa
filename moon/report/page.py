"""Compose the report page: curves, scorecard, per-category bars, retrieval gallery.

Every section is optional: a run without validation, a result without a per-category
breakdown or without examples still gives a page, and the empty section says which
command produces the missing part (so the page is never silently incomplete).
"""

from __future__ import annotations

from html import escape
from typing import Any, Optional, Sequence

from moon.report.charts import bar_chart, line_chart
from moon.report.images import ProductImages
from moon.report.inputs import BenchResult, RunInputs, scored_data

MAIN_METRICS = (("t2i R@10", ("t2i", "R@10")), ("i2p R@1", ("i2p", "R@1")), ("t2p nDCG@10", ("t2p", "nDCG@10")),
                ("cls articleType macro-F1", ("cls", "articleType", "macro_f1")), ("attr mean acc", ("attr", "*", "acc")))
"""The headline metric of each fashion task (the issue's bar); `*` averages over children."""
PREFERRED = ("R@10", "R@1", "nDCG@10", "MRR@10", "hit@10", "acc")
MAX_CATEGORIES = 30
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:2px} h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin:14px 0 6px} .meta{color:#555;font-size:13px} .missing{color:#8a6d3b;font-style:italic}
table{border-collapse:collapse;font-size:13px;margin:6px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left} td.best{font-weight:bold;background:#e8f5e9}
.charts{display:flex;flex-wrap:wrap;gap:12px} svg{background:#fff} .ct{font-size:13px;font-weight:600}
.tick{font-size:11px;fill:#333} .grid{stroke:#eee} .frame{fill:none;stroke:#999} .axis{stroke:#999}
.query{display:flex;gap:10px;align-items:flex-start;margin:8px 0;padding:6px;border-bottom:1px solid #eee}
.qbox{width:190px;font-size:12px;flex:none} .qbox img{display:block;margin-bottom:3px}
figure{margin:0;width:116px;text-align:center;font-size:11px;flex:none} figure img,.blank{width:112px;height:112px;
object-fit:contain;border:4px solid #ccc;box-sizing:border-box;background:#fafafa;display:block}
figure.hit img,figure.hit .blank{border-color:#2e7d32} figure.miss img,figure.miss .blank{border-color:#c62828}
figure.target img,figure.target .blank{border:4px dashed #777} .gap{width:18px;flex:none}
.mark{font-weight:bold} figure.hit .mark{color:#2e7d32} figure.miss .mark{color:#c62828}
"""


def _get(tree: Any, path: Sequence[str]) -> Optional[float]:
    node = tree
    for i, key in enumerate(path):
        if key == "*":
            if not isinstance(node, dict):
                return None
            values = [_get(child, path[i + 1:]) for child in node.values()]
            values = [v for v in values if v is not None]
            return sum(values) / len(values) if values else None
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def flatten(tasks: dict[str, Any], prefix: str = "") -> dict[str, Optional[float]]:
    """{'cls': {'articleType': {'acc': .5}}} -> {'cls.articleType acc': .5}; a null task is None."""
    out: dict[str, Optional[float]] = {}
    for key, value in tasks.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
            out.update({f"{name} {m}": float(v) for m, v in value.items()})
        elif isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = None
    return out


def _table(rows: list[tuple[str, list[Optional[float]]]], header: list[str]) -> str:
    html = ["<table><tr><th>metric</th>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"]
    for name, values in rows:
        numbers = [v for v in values if v is not None]
        best = max(numbers) if len(numbers) > 1 else None
        cells = "".join("<td>n/a</td>" if v is None else
                        f'<td class="best">{v:.3f}</td>' if v == best else f"<td>{v:.3f}</td>" for v in values)
        html.append(f"<tr><td>{escape(name)}</td>{cells}</tr>")
    return "".join(html) + "</table>"


def curves_section(inputs: RunInputs) -> str:
    records = inputs.metrics
    if not records:
        return '<p class="missing">No metrics.jsonl in the run directory (is this a `moon train` output?).</p>'
    keys = sorted({k for r in records for k in r if k != "step"})
    loss = {"train/loss": [(r["step"], r.get("train/loss")) for r in records if "train/loss" in r]}
    loss.update({k: [(r["step"], r[k]) for r in records if k in r] for k in keys if k.startswith("train/loss_")})
    charts = [line_chart(loss, "Training loss (total and per query kind)")]
    val_keys = [k for k in keys if k.startswith("val/")]
    if val_keys:
        val = {k: [(r["step"], r[k]) for r in records if k in r] for k in val_keys}
        charts.append(line_chart(val, "Validation", dashed=[k for k in val_keys if "chance" in k], y_range=(0, 1)))
    else:
        note = (inputs.summary.get("validation_note") or "the recipe has no validation split")
        charts.append(f'<p class="missing">No validation curve: {escape(str(note))}.</p>')
    extra = {k: [(r["step"], r[k]) for r in records if k in r] for k in ("train/accuracy", "train/temperature")
             if k in keys}
    if extra:
        charts.append(line_chart(extra, "In-batch accuracy and temperature"))
    note = (f'<p class="missing">{inputs.bad_metric_lines} unreadable line(s) in metrics.jsonl skipped.</p>'
            if inputs.bad_metric_lines else "")
    return '<div class="charts">' + "".join(charts) + "</div>" + note


def scorecard_section(results: list[BenchResult]) -> str:
    if not results:
        return ('<p class="missing">No benchmark result: run `moon bench fashion ... --out RUN_DIR/RESULTS.json` '
                "(or pass --result).</p>")
    header = [r.label for r in results]
    main = [(label, [_get(r.tasks, path) for r in results]) for label, path in MAIN_METRICS]
    main = [row for row in main if any(v is not None for v in row[1])]
    flats = [flatten(r.tasks) for r in results]
    names: list[str] = []
    for flat in flats:
        names += [n for n in flat if n not in names]
    names = [n for n in names if not any(other.startswith(f"{n} ") for other in names)]  # n/a task of one model
    full = [(n, [flat.get(n) for flat in flats]) for n in names]
    data = {(scored_data(str(r.data.get("data_id"))), r.data.get("split")) for r in results}
    warn = ('<p class="missing">Warning: these results were computed on different data or splits; '
            "their numbers are not comparable.</p>" if len(data) > 1 else "")
    meta = "".join(f"<li>{escape(r.label)}: {escape(str(r.data.get('model_id')))} on "
                   f"{escape(str(r.data.get('data_id')))} ({escape(str(r.data.get('split')))}), "
                   f"{float(r.data.get('wall_time_s') or 0):.0f} s, <code>{escape(str(r.path))}</code></li>"
                   for r in results)
    out = warn
    if main:
        out += "<h3>Main metric per task</h3>" + _table(main, header)
    return out + "<h3>All metrics</h3>" + _table(full, header) + f'<ul class="meta">{meta}</ul>'


def _main_metric(per_category: dict[str, dict[str, float]]) -> Optional[str]:
    metrics = [m for c in per_category.values() for m in c if m != "n"]
    return next((m for m in PREFERRED if m in metrics), metrics[0] if metrics else None)


def categories_section(results: list[BenchResult]) -> str:
    with_breakdown = [r for r in results if r.data.get("breakdown")]
    if not with_breakdown:
        return ('<p class="missing">No per-category breakdown in the results: bench with '
                "`--per-category --category-level 2` (articleType).</p>")
    tasks: list[str] = []
    for r in with_breakdown:
        tasks += [t for t in r.data["breakdown"] if t not in tasks and not t.endswith("_ann")]
    charts = []
    for task in tasks:
        per_run = {r.label: r.data["breakdown"].get(task, {}) for r in with_breakdown}
        first = next(b for b in per_run.values() if b)
        metric = _main_metric(first)
        if metric is None:
            continue
        counts: dict[str, int] = {}
        for b in per_run.values():
            for cat, values in b.items():
                counts.setdefault(cat, int(values.get("n", 0)))
        cats = sorted(counts, key=lambda c: (-counts[c], c))[:MAX_CATEGORIES]
        series = {label: [b.get(c, {}).get(metric) for c in cats] for label, b in per_run.items() if b}
        shown = "" if len(counts) <= MAX_CATEGORIES else f", {MAX_CATEGORIES} largest of {len(counts)}"
        charts.append(bar_chart(cats, series, f"{task} {metric} per category{shown}", [counts[c] for c in cats]))
    return "".join(charts) or '<p class="missing">The breakdown holds no metrics.</p>'


def _figure(item: dict[str, Any], images: ProductImages, kind: str) -> str:
    """One product tile; kind 'hit' / 'miss' for a ranked result, 'target' for the expected product."""
    pid = str(item.get("id"))
    b64 = images.get(pid)
    img = (f'<img src="data:image/jpeg;base64,{b64}" alt="{escape(pid)}">' if b64
           else f'<div class="blank" title="image not found">{escape(pid)}</div>')
    mark = {"hit": "&#10003; hit", "miss": "&#10007; miss", "target": "expected"}[kind]
    score = item.get("score")
    score_text = f" {float(score):.3f}" if isinstance(score, (int, float)) else ""
    return (f'<figure class="{kind}">{img}<figcaption><span class="mark">{mark}</span>'
            f"<br>{escape(pid)}{score_text}</figcaption></figure>")


def _expected(example: dict[str, Any], n_hits: int, images: ProductImages) -> str:
    """When a single-target query missed, show what it should have found (after a gap)."""
    relevant = example.get("relevant") or []
    if n_hits or len(relevant) != 1:
        return ""
    return '<div class="gap"></div>' + _figure({"id": relevant[0]}, images, "target")


def gallery_section(result: Optional[BenchResult], images: Optional[ProductImages]) -> str:
    examples = (result.data.get("examples") if result else None) or {}
    if not examples or images is None:
        return ('<p class="missing">No retrieval examples in the result: re-run `moon bench fashion` '
                "(it keeps 8 queries per retrieval task unless --examples 0).</p>")
    parts = []
    for task, items in examples.items():
        parts.append(f"<h3>{escape(task)}</h3>")
        for ex in items:
            query = ex.get("query") or {}
            qimg = (f'<img src="data:image/jpeg;base64,{query["image_jpeg_b64"]}" alt="query image">'
                    if query.get("image_jpeg_b64") else "")
            qtext = escape(str(query.get("text"))) if query.get("text") else ""
            top = ex.get("top") or []
            n_hits = sum(1 for t in top if t.get("hit"))
            parts.append(f'<div class="query"><div class="qbox">{qimg}<b>{qtext or "(image query)"}</b><br>'
                         f'{n_hits} of top {len(top)} relevant; {int(ex.get("n_relevant", 0))} relevant in all</div>'
                         + "".join(_figure(t, images, "hit" if t.get("hit") else "miss") for t in top)
                         + _expected(ex, n_hits, images) + "</div>")
    if images.missing:
        parts.append(f'<p class="missing">{len(images.missing)} product image(s) not found under '
                     f"{escape(str(images.root))}.</p>")
    return "".join(parts)


def render(inputs: RunInputs) -> str:
    """The full HTML document (self-contained: inline CSS, SVG and base64 images only)."""
    results = ([inputs.result] if inputs.result else []) + inputs.compare
    images = (ProductImages(inputs.result.data.get("data_path"), inputs.result.data.get("split"))
              if inputs.result else None)
    s = inputs.summary
    meta = [f"run directory <code>{escape(str(inputs.run_dir))}</code>"]
    if s:
        meta.append(f"recipe {escape(str(s.get('recipe')))}, {s.get('steps')} steps, "
                    f"{float(s.get('wall_seconds') or 0) / 60:.1f} min, {s.get('parameters')} parameters")
    sections = [("Training curves", curves_section(inputs)),
                ("Scorecard", scorecard_section(results)),
                ("Per-category results", categories_section(results)),
                ("Retrieval gallery", gallery_section(inputs.result, images))]
    body = "".join(f'<section id="{title.lower().replace(" ", "-")}"><h2>{title}</h2>{html}</section>'
                   for title, html in sections)
    title = f"MOON report: {inputs.run_dir.name}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
            f'<p class="meta">{"; ".join(meta)}</p>{body}</body></html>')
