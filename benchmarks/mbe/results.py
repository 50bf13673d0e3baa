"""Result files (one JSON per run) and the markdown leaderboard that compares them.

A result names everything needed to trust or reproduce a number: model id and config hash,
data id and split, software versions and wall time. Metrics sit under `tasks` nested by
task name ("cls.articleType" -> tasks.cls.articleType.{acc, macro_f1}); a task that does
not apply to a model (an image task for a text-only model) is `null` there, with the reason
in `not_applicable`.
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import moon
from moon.data.records import DataError, format_validation_error
from moon.data.shards import atomic_write_json
from moon.report.inputs import scored_data

from benchmarks.mbe.tasks import TaskScore

RESULT_SCHEMA = "moon-bench-result/1"


class RunResult(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    result_schema: str = Field(RESULT_SCHEMA, alias="schema")
    benchmark: str
    model_id: str
    model_path: str
    config_hash: str
    data_id: str
    data_path: str
    split: str
    tasks: dict[str, Any]
    not_applicable: dict[str, str] = Field(default_factory=dict)
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    details: dict[str, dict[str, Any]] = Field(default_factory=dict)
    breakdown: Optional[dict[str, dict[str, dict[str, float]]]] = None
    data_report: dict[str, Any] = Field(default_factory=dict)
    examples: Optional[dict[str, list[dict[str, Any]]]] = Field(
        default=None, description="per retrieval task: sampled queries with their top-5 products (moon report)")
    software: dict[str, str]
    wall_time_s: float
    created: str


def software_versions() -> dict[str, str]:
    """Versions of python and of the libraries a score depends on."""
    import faiss
    import numpy
    import torch
    import transformers

    try:
        open_clip = metadata.version("open_clip_torch")
    except metadata.PackageNotFoundError:
        open_clip = "not installed"
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "faiss": faiss.__version__, "numpy": numpy.__version__,
            "open_clip": open_clip, "moon": moon.__version__}


def nest(scores: Sequence[TaskScore]) -> dict[str, Any]:
    """{'cls.articleType': {...}} -> {'cls': {'articleType': {...}}}; n/a tasks become None."""
    tree: dict[str, Any] = {}
    for score in scores:
        *parents, leaf = score.name.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = score.metrics
    return tree


def make_result(scores: Sequence[TaskScore], *, benchmark: str, model_id: str, model_path: str,
                config_hash: str, data_id: str, data_path: str, split: str, wall_time_s: float,
                data_report: Optional[dict[str, Any]] = None) -> RunResult:
    breakdown = {s.name: s.breakdown for s in scores if s.breakdown is not None}
    examples = {s.name: s.examples for s in scores if s.examples}
    return RunResult(benchmark=benchmark, model_id=model_id, model_path=model_path, config_hash=config_hash,
                     data_id=data_id, data_path=data_path, split=split, tasks=nest(scores),
                     not_applicable={s.name: s.na_reason for s in scores if s.na_reason},
                     counts={s.name: s.counts for s in scores if s.counts},
                     details={s.name: s.details for s in scores if s.details},
                     breakdown=breakdown or None, data_report=data_report or {}, examples=examples or None,
                     software=software_versions(), wall_time_s=wall_time_s,
                     created=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def write_result(result: RunResult, path: Union[str, Path]) -> None:
    atomic_write_json(path, result.model_dump(mode="json", by_alias=True))


def read_result(path: Union[str, Path]) -> RunResult:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: result file not found")
    try:
        return RunResult.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise DataError(format_validation_error(exc, str(path))) from exc


def flatten(tasks: dict[str, Any], prefix: str = "") -> dict[str, Optional[float]]:
    """{'t2i': {'R@1': .5}} -> {'t2i R@1': .5}; a null task stays one None entry."""
    flat: dict[str, Optional[float]] = {}
    for key, value in tasks.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
            flat.update({f"{name} {metric}": float(v) for metric, v in value.items()})
        elif isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = None
    return flat


def _cell(value: Optional[float], best: bool) -> str:
    text = f"{value:.3f}"
    return f"**{text}**" if best else text


def leaderboard(results: Sequence[tuple[str, RunResult]], breakdown: bool = False) -> str:
    """Markdown: one row per metric, one column per result, best value of a row in bold."""
    if not results:
        raise ValueError("the leaderboard needs at least one result file")
    flats = [flatten(r.tasks) for _, r in results]
    rows: list[str] = []
    for flat in flats:
        rows += [k for k in flat if k not in rows]
    header = [f"{r.model_id} ({label})" for label, r in results]
    lines = ["| metric | " + " | ".join(header) + " |", "|---|" + "---|" * len(results)]
    for row in rows:
        values = [flat.get(row) for flat in flats]
        numbers = [v for v in values if v is not None]
        top = max(numbers) if len(numbers) > 1 else None
        cells = ["–" if row not in flat else "n/a" if v is None else _cell(v, v == top)
                 for flat, v in zip(flats, values)]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "| run | data | split | config hash | wall time (s) |", "|---|---|---|---|---|"]
    lines += [f"| {h} | {r.data_id} | {r.split} | {r.config_hash[:12]} | {r.wall_time_s:.0f} |"
              for h, (_, r) in zip(header, results)]
    if len({(scored_data(r.data_id), r.split) for _, r in results}) > 1:
        lines += ["", "**Warning:** these results were computed on different data or splits; "
                      "their numbers are not comparable."]
    if breakdown:
        lines += _breakdown_tables(results, header)
    return "\n".join(lines) + "\n"


def _breakdown_tables(results: Sequence[tuple[str, RunResult]], header: list[str]) -> list[str]:
    """Per-category tables for every task that has a breakdown, first metric of the task."""
    lines: list[str] = []
    tasks = []
    for _, r in results:
        tasks += [t for t in (r.breakdown or {}) if t not in tasks]
    for task in tasks:
        per_run = [(r.breakdown or {}).get(task, {}) for _, r in results]
        categories = sorted({c for b in per_run for c in b})
        metric = next(m for b in per_run for c in b.values() for m in c if m != "n")
        lines += ["", f"### {task} {metric} per category", "",
                  "| category | n | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(results)]
        for cat in categories:
            n = next(int(b[cat]["n"]) for b in per_run if cat in b)
            cells = [f"{b[cat][metric]:.3f}" if cat in b else "–" for b in per_run]
            lines.append(f"| {cat} | {n} | " + " | ".join(cells) + " |")
    return lines
