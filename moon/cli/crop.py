"""`moon crop train|run`: train the core-region detector, add CORE boxes to a dataset.

Thin wrappers over moon.crop; ultralytics and torch are imported inside the commands so
that `moon --help` stays fast. Each command prints a table and leaves its JSON result in
the output directory (detector.json, crop_report.json).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from moon.data.records import format_validation_error

app = typer.Typer(help="Core-region cropper: train a YOLO product detector, crop a dataset.",
                  no_args_is_help=True)
console = Console()


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input (DataError/ValueError/missing file) -> one line per problem on stderr, exit code 2."""
    try:
        yield
    except (ValueError, OSError) as exc:
        message = format_validation_error(exc, "options") if isinstance(exc, ValidationError) else str(exc)
        print(f"moon: error: {message}", file=sys.stderr)
        raise typer.Exit(2) from None


def _table(title: str, rows: dict) -> Table:
    table = Table(title=title)
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


@app.command()
def train(data: Path = typer.Option(..., "--data", help="moon dataset (boxes exported) or YOLO dataset dir"),
          out: Path = typer.Option(..., "--out", help="detector directory to create"),
          model: str = typer.Option("yolov8n.yaml", "--model", help=(
              "ultralytics model yaml (trains from scratch, nothing downloaded) or a local .pt; "
              "a .pt is unpickled by ultralytics: only pass files you trust")),
          epochs: int = typer.Option(50, "--epochs"),
          imgsz: int = typer.Option(320, "--imgsz", help="training and prediction image size"),
          classes: str = typer.Option("product", "--classes", help="'product' (one class) or 'leaf'"),
          batch: int = typer.Option(16, "--batch"),
          lr0: float = typer.Option(0.01, "--lr0"),
          mosaic: float = typer.Option(1.0, "--mosaic", help="mosaic augmentation probability"),
          seed: int = typer.Option(0, "--seed"),
          device: Optional[str] = typer.Option(None, "--device", help="'cpu', '0', ... (default: cuda:0 if any)"),
          overwrite: bool = typer.Option(False, "--overwrite", help="replace a detector already at --out")) -> None:
    """Train a product detector offline and save it as safetensors + detector.json."""
    with _user_errors():
        from moon.crop.detector import train_detector

        detector = train_detector(data, out, overwrite=overwrite, model=model, epochs=epochs, imgsz=imgsz,
                                  classes=classes, batch=batch, lr0=lr0, mosaic=mosaic, seed=seed, device=device)
    info = detector.info
    console.print(_table(f"detector {detector.source}", {
        "classes": ", ".join(info.class_names), **{f"images {k}": v for k, v in info.data.get("images", {}).items()},
        **info.metrics, "saved": str(out)}))


@app.command()
def run(detector: Path = typer.Option(..., "--detector", help="directory written by `moon crop train`"),
        data: Path = typer.Option(..., "--data", help="input moon dataset"),
        out: Path = typer.Option(..., "--out", help="output dataset (re-run to resume)"),
        batch_size: int = typer.Option(32, "--batch-size", help="images per detector batch"),
        min_confidence: float = typer.Option(0.25, "--min-confidence", help="below: whole-image fallback"),
        pad: float = typer.Option(0.05, "--pad", help="padding per side, fraction of the box"),
        min_size: float = typer.Option(0.15, "--min-size", help="minimum crop side, fraction of the image"),
        device: Optional[str] = typer.Option(None, "--device")) -> None:
    """Add a CORE box to every product and query image; skips shards already done."""
    with _user_errors():
        from moon.crop.boxes import CropPolicy
        from moon.crop.detector import Detector
        from moon.crop.run import REPORT_FILE, crop_dataset

        policy = CropPolicy(min_confidence=min_confidence, pad=pad, min_size=min_size)
        report = crop_dataset(Detector.load(detector, device=device), data, out, batch_size=batch_size,
                              policy=policy)
    console.print(_table("crop run", {**report.model_dump(exclude={"out_dir"}), "report": str(out / REPORT_FILE)}))
