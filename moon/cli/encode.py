"""`moon encode --model DIR --data DATASET --split test --out EMB.npy|DIR`: embed a split."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from moon.data.records import FULL_VIEW, IMAGE_TITLE_VIEW, IMAGE_VIEW

VIEWS = {"full": FULL_VIEW, "image": IMAGE_VIEW, "image-title": IMAGE_TITLE_VIEW}


def encode(
    model: str = typer.Option(..., "--model", help="saved model directory (or a reserved name such as minilm)"),
    data: Path = typer.Option(..., "--data", help="dataset directory (manifest.json + shards)"),
    split: str = typer.Option("test", "--split"),
    out: Path = typer.Option(..., "--out", help="EMB.npy (ids in EMB.ids.json) or a directory"),
    table: str = typer.Option("products", "--table", help="products | queries"),
    view: str = typer.Option("full", "--view", help="product view: full | image | image-title"),
    batch_size: int = typer.Option(32, "--batch-size"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable records (counted) instead of failing"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Write float32 embeddings (.npy) and their ids (JSON) for one split of a dataset."""
    from moon.model.encode_dataset import encode_split
    from moon.model.registry import load_embedder

    try:
        if table not in ("products", "queries"):
            raise ValueError(f"--table must be products or queries, got {table!r}")
        if view not in VIEWS:
            raise ValueError(f"--view must be one of {', '.join(VIEWS)}, got {view!r}")
        embedder = load_embedder(model)
        if hasattr(embedder, "to"):
            embedder.to(device)
        result = encode_split(embedder, data, split, out, table=table, batch_size=batch_size, view=VIEWS[view],
                              on_error="skip" if skip_bad else "raise", show_progress=not quiet)
    except (ValueError, OSError) as exc:
        print(f"moon: error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    summary = Table(title=f"moon encode {split}/{table}")
    summary.add_column("field")
    summary.add_column("value", justify="right")
    for key in ("model_id", "count", "dim", "skipped", "embeddings_path", "ids_path"):
        summary.add_row(key, str(getattr(result, key)))
    summary.add_row("items/s", f"{result.per_second:.1f}")
    Console().print(summary)
