"""`moon data ...`: generate MBE-synth, validate, summarise and import datasets.

Each command parses its options, calls one library function, prints a rich table and
writes the full result as JSON (next to the dataset unless told otherwise).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from moon.cli.errors import user_errors
from moon.data.importers.fashion import import_fashion
from moon.data.importers.mbe import MbeMapping, import_mbe
from moon.data.importers.report import REPORT_NAME, ImportReport
from moon.data.shards import atomic_write_json, open_dataset
from moon.data.stats import dataset_stats
from moon.data.synth import SynthConfig, generate
from moon.data.validate import validate_dataset

app = typer.Typer(help="Datasets: generate MBE-synth, validate, stats, import.", no_args_is_help=True)
import_app = typer.Typer(help="Import product data from other layouts.", no_args_is_help=True)
app.add_typer(import_app, name="import")

console = Console()
STATS_NAME = "stats.json"
VALIDATION_NAME = "validation.json"


def _print_stats(stats: dict) -> None:
    products = Table(title=f"dataset {stats['name']}: products")
    for col in ("split", "products", "groups", "images", "images/product", "products/attr combo"):
        products.add_column(col, justify="left" if col == "split" else "right")
    queries = Table(title="queries")
    for col in ("split", "queries", "text", "image", "product", "sessions", "positives"):
        queries.add_column(col, justify="left" if col == "split" else "right")
    for split, entry in stats["splits"].items():
        p, q = entry.get("products", {}), entry.get("queries", {})
        products.add_row(split, str(p.get("products", 0)), str(p.get("groups", 0)), str(p.get("images", 0)),
                         str(p.get("images_per_product", {}).get("mean", 0)),
                         str(p.get("products_per_attribute_combination", 0)))
        if q:
            kinds = q["kinds"]
            queries.add_row(split, str(q["queries"]), *(str(kinds.get(k, 0)) for k in ("text", "image", "product")),
                            str(q["sessions"]), str(q["distinct_positives"]))
    console.print(products)
    console.print(queries)
    attrs = Table(title="attribute values (all splits)")
    attrs.add_column("attribute")
    attrs.add_column("values", justify="right")
    attrs.add_column("most common")
    merged: dict[str, dict[str, int]] = {}
    for entry in stats["splits"].values():
        for name, counts in entry.get("products", {}).get("attribute_values", {}).items():
            for value, n in counts.items():
                merged.setdefault(name, {})[value] = merged.setdefault(name, {}).get(value, 0) + n
    for name, counts in merged.items():
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:4]
        attrs.add_row(name, str(len(counts)), ", ".join(f"{v} ({n})" for v, n in top))
    console.print(attrs)
    if stats["skipped_bad_samples"]:
        console.print(f"[yellow]skipped bad samples: {stats['skipped_bad_samples']} "
                      "(run `moon data validate` for details)[/yellow]")


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj)
    console.print(f"wrote {path}")


@app.command()
def synth(out: Path = typer.Option(..., "--out", help="output dataset directory"),
          products: int = typer.Option(2000, "--products", help="number of products over all splits"),
          seed: int = typer.Option(0, "--seed"),
          workers: int = typer.Option(2, "--workers", help="rendering processes (output does not depend on it)"),
          image_size: int = typer.Option(128, "--image-size", help="square image side in pixels"),
          overwrite: bool = typer.Option(False, "--overwrite", help="replace a dataset already at --out")) -> None:
    """Generate MBE-synth (the built-in benchmark) and print its statistics."""
    with user_errors():
        config = SynthConfig(products=products, seed=seed, workers=workers, image_size=image_size)
        generate(config, out, overwrite=overwrite)
        stats = dataset_stats(open_dataset(out))
    _print_stats(stats)
    _write_json(out / STATS_NAME, stats)


@app.command()
def stats(path: Path = typer.Argument(..., help="dataset directory"),
          json_out: Optional[Path] = typer.Option(None, "--json", help=f"where to write (default PATH/{STATS_NAME})")
          ) -> None:
    """Print counts per split, categories, attribute values, images per product."""
    with user_errors():
        result = dataset_stats(open_dataset(path))
    _print_stats(result)
    _write_json(json_out or path / STATS_NAME, result)


@app.command()
def validate(path: Path = typer.Argument(..., help="dataset directory"),
             report: Optional[Path] = typer.Option(None, "--report",
                                                   help=f"JSON report path (default PATH/{VALIDATION_NAME})"),
             show: int = typer.Option(30, "--show", help="problems to print (all are in the report)")) -> None:
    """Check manifest, checksums, every sample, image and box; exit 1 if anything is wrong."""
    result = validate_dataset(path)
    if result.problems:
        table = Table(title=f"{len(result.problems)} problem(s)")
        for col in ("severity", "shard", "sample", "field", "message"):
            table.add_column(col)
        for p in result.problems[:show]:
            table.add_row(p.severity, p.shard or "-", p.key or "-", p.field or "-", p.message)
        console.print(table)
    samples = ", ".join(f"{k}={v}" for k, v in result.samples.items()) or "none"
    verdict = "[green]OK[/green]" if result.ok else "[red]FAILED[/red]"
    console.print(f"{verdict}: {result.errors} error(s), {result.warnings} warning(s); samples read: {samples}")
    target = report or (path / VALIDATION_NAME if path.is_dir() else Path(VALIDATION_NAME))
    with user_errors():
        _write_json(target, result.model_dump(mode="json"))
    if not result.ok:
        raise typer.Exit(1)


def _print_import(report: ImportReport) -> None:
    table = Table(title=f"import {report.source}")
    for col in ("rows", "products", "queries", "bad rows"):
        table.add_column(col, justify="right")
    table.add_row(str(report.rows), json.dumps(report.products), json.dumps(report.queries), str(len(report.bad_rows)))
    console.print(table)
    if report.bad_rows:
        bad = Table(title="bad rows by reason (ids and lines in the report)")
        bad.add_column("reason")
        bad.add_column("rows", justify="right")
        bad.add_column("first ids")
        for reason, n in report.top_reasons():
            ids = [b.id or f"line {b.line}" for b in report.bad_rows if b.reason.split(":")[0] == reason][:5]
            bad.add_row(reason, str(n), ", ".join(ids))
        console.print(bad)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"wrote {Path(report.out) / REPORT_NAME}")


@import_app.command("fashion")
def import_fashion_cmd(source: Path = typer.Argument(..., help="folder with styles.csv and images/<id>.jpg"),
                       out: Path = typer.Option(..., "--out", help="output dataset directory"),
                       seed: int = typer.Option(0, "--seed", help="seed of the image-query augmentation"),
                       limit: Optional[int] = typer.Option(None, "--limit", help="import only the first N rows"),
                       overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Import the fashion-catalogue layout (train/test split by id hash, training queries)."""
    with user_errors():
        report = import_fashion(source, out, seed=seed, limit=limit, overwrite=overwrite)
    _print_import(report)


@import_app.command("mbe")
def import_mbe_cmd(source: Path = typer.Argument(..., help="MBE rows: .jsonl, .json or .parquet"),
                   out: Path = typer.Option(..., "--out", help="output dataset directory"),
                   mapping: Optional[Path] = typer.Option(None, "--mapping", help="YAML field mapping"),
                   queries: Optional[Path] = typer.Option(None, "--queries", help="separate query rows"),
                   overwrite: bool = typer.Option(False, "--overwrite")) -> None:
    """Import the MBE benchmark layout (doc_* product fields, mapped query fields)."""
    with user_errors():
        m = MbeMapping.from_yaml(mapping) if mapping else MbeMapping()
        report = import_mbe(source, out, mapping=m, queries=queries, overwrite=overwrite)
    _print_import(report)
