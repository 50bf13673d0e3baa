"""Read what a report shows: the trainer's metrics log, its summary, and benchmark results.

Result files are read as plain JSON (moon/ may not import the benchmarks package); only the
keys the page uses are interpreted, so older result files without `breakdown` or `examples`
still render, with those sections saying what is missing and how to get it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from moon.data.records import DataError

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
RESULT_NAMES = ("RESULTS.json", "results.json")


def scored_data(data_id: str) -> str:
    """The data a benchmark result scored: its data id without the model-side input suffix.

    `moon bench fashion --detector` records the detector it cropped with as "DATA+crops:ID", so
    cached embeddings never mix cropped and uncropped inputs; a model that crops and one that
    does not still scored the same products, and their numbers compare (the report's scorecard
    and `moon bench leaderboard` both warn only when this differs)."""
    return data_id.split("+", 1)[0]


@dataclass
class BenchResult:
    """One RESULTS.json: a label for the page plus the raw document."""

    label: str
    path: Path
    data: dict[str, Any]

    @property
    def tasks(self) -> dict[str, Any]:
        return self.data.get("tasks") or {}


@dataclass
class RunInputs:
    run_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    bad_metric_lines: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    result: Optional[BenchResult] = None
    compare: list[BenchResult] = field(default_factory=list)


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Records of metrics.jsonl and the number of unreadable lines (a killed run can cut one)."""
    records, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        else:
            bad += 1
    return records, bad


def read_result(path: Path, label: Optional[str] = None) -> BenchResult:
    if not path.is_file():
        raise DataError(f"{path}: result file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise DataError(f"{path}: not a benchmark result (expected an object with 'tasks', "
                        "as written by `moon bench`)")
    return BenchResult(label or str(data.get("model_id") or path.parent.name), path, data)


def find_result(run_dir: Path) -> Optional[Path]:
    """The run's own result: RUN_DIR/RESULTS.json (or results.json) if the bench wrote it there."""
    for name in RESULT_NAMES:
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def read_run(run_dir: Path, result: Optional[Path] = None, compare: Sequence[Path] = ()) -> RunInputs:
    """Everything the report needs from RUN_DIR; a missing part is left empty, never invented."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory does not exist")
    inputs = RunInputs(run_dir)
    if (run_dir / METRICS_FILE).is_file():
        inputs.metrics, inputs.bad_metric_lines = read_metrics(run_dir / METRICS_FILE)
    if (run_dir / SUMMARY_FILE).is_file():
        try:
            inputs.summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{run_dir / SUMMARY_FILE}: not JSON ({exc})") from None
    own = result or find_result(run_dir)
    if own is not None:
        inputs.result = read_result(Path(own), label=f"{run_dir.name} (this run)")
    inputs.compare = [read_result(Path(p)) for p in compare]
    if not inputs.metrics and inputs.result is None:
        raise DataError(f"{run_dir}: nothing to report: no {METRICS_FILE} and no result file "
                        f"({' or '.join(RESULT_NAMES)}; or pass --result)")
    return inputs
