"""`moon report RUN_DIR`: an HTML page of a run's curves, scorecard, per-category bars and gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()


def report(run_dir: Path = typer.Argument(..., help="a `moon train` output directory"),
           out: Optional[Path] = typer.Option(None, help="HTML file to write (default: RUN_DIR/report.html)"),
           result: Optional[Path] = typer.Option(None, help="the run's RESULTS.json (default: RUN_DIR/RESULTS.json "
                                                            "if present)"),
           compare: list[Path] = typer.Option([], help="baseline RESULTS.json to compare with (repeatable)")) -> None:
    """Write a self-contained HTML report (no network needed to view it)."""
    from moon.report.build import write_report

    path = write_report(run_dir, out, result, compare)
    console.print(f"wrote {path}")
