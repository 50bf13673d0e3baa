"""Write the report of a run directory to an HTML file (atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from moon.data.shards import atomic_write_bytes
from moon.report.inputs import read_run
from moon.report.page import render

REPORT_NAME = "report.html"


def write_report(run_dir: Path, out: Optional[Path] = None, result: Optional[Path] = None,
                 compare: Sequence[Path] = ()) -> Path:
    """Render RUN_DIR (metrics, summary, its RESULTS.json + `compare` results) to `out`."""
    inputs = read_run(Path(run_dir), result, compare)
    out = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    atomic_write_bytes(out, render(inputs).encode("utf-8"))
    return out
