"""Stages of a run directory: each one a folder RUN/<nn-name>/ with a done marker.

Why markers rather than checking outputs: only the stage itself knows when its outputs are
complete, so it says so last, atomically (`done.json`: wall time, outputs summary). A
re-run skips every stage whose marker is present and whose key still matches.

The key is a hash of the stage's own parameters and the keys of the stages it reads from.
`params.json` is written when a stage starts, so a half-finished stage is recognised on
the next run: same key -> the stage runs again in its folder and may resume from what it
left there (a training continues from its last checkpoint, a crop run skips finished
shards); different key (e.g. `--steps` changed) -> the folder is cleared first, since its
contents belong to other settings. The upstream part of the key is each upstream stage's
key plus the id of the execution that finished it, so a stage that is redone (settings changed, or its folder
deleted by hand) also redoes every stage downstream of it, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moon.data.records import DataError, format_validation_error
from moon.data.shards import atomic_write_json

DONE_FILE = "done.json"
PARAMS_FILE = "params.json"


class StageRecord(BaseModel):
    """The done marker of one stage."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    key: str
    run_id: str = Field(description="random id of the execution that finished the stage")
    wall_seconds: float
    finished_at: str
    outputs: dict[str, Any]


@dataclass(frozen=True)
class Stage:
    """One step of a job: `run(stage_dir)` does the work and returns a JSON-ready summary."""

    name: str
    run: Callable[[Path], dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageOutcome:
    record: StageRecord
    ran: bool
    """False when the stage was already done and skipped."""


def stage_folder(index: int, name: str) -> str:
    return f"{index:02d}-{name}"


def stage_key(params: dict[str, Any], upstream: Sequence[str]) -> str:
    text = json.dumps({"params": params, "upstream": list(upstream)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def finished_identity(record: StageRecord) -> str:
    """What downstream keys depend on: this stage's settings and the run that produced it."""
    return hashlib.sha256(f"{record.key}@{record.run_id}".encode()).hexdigest()


def read_record(stage_dir: Path) -> Optional[StageRecord]:
    path = stage_dir / DONE_FILE
    if not path.is_file():
        return None
    try:
        return StageRecord.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise DataError(format_validation_error(exc, str(path)) + "\n(delete the file to redo the stage)") from None


def _started_key(stage_dir: Path) -> Optional[str]:
    path = stage_dir / PARAMS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["key"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


class StageRunner:
    """Runs stages in order inside `run_dir`, skipping finished ones (see module docstring)."""

    def __init__(self, run_dir: Path, on_start: Optional[Callable[[str], None]] = None,
                 on_end: Optional[Callable[[StageOutcome], None]] = None):
        self.run_dir = Path(run_dir)
        self.on_start = on_start
        self.on_end = on_end
        self.identities: dict[str, str] = {}
        self.outcomes: dict[str, StageOutcome] = {}

    def run_all(self, stages: Sequence[Stage]) -> list[StageOutcome]:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        return [self.run(i, stage) for i, stage in enumerate(stages, 1)]

    def run(self, index: int, stage: Stage) -> StageOutcome:
        unknown = [n for n in stage.needs if n not in self.identities]
        if unknown:
            raise ValueError(f"stage {stage.name} needs {unknown}, which have not run before it")
        folder = stage_folder(index, stage.name)
        stage_dir = self.run_dir / folder
        key = stage_key(stage.params, [self.identities[n] for n in stage.needs])
        record = read_record(stage_dir)
        if record is not None and record.key == key:
            outcome = StageOutcome(record, ran=False)
        else:
            outcome = StageOutcome(self._execute(stage, folder, stage_dir, key), ran=True)
        self.identities[stage.name] = finished_identity(outcome.record)
        self.outcomes[stage.name] = outcome
        if self.on_end is not None:
            self.on_end(outcome)
        return outcome

    def _execute(self, stage: Stage, folder: str, stage_dir: Path, key: str) -> StageRecord:
        if stage_dir.exists() and _started_key(stage_dir) != key:
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(stage_dir / PARAMS_FILE, {"stage": folder, "key": key, "params": stage.params,
                                                    "needs": list(stage.needs)})
        if self.on_start is not None:
            self.on_start(folder)
        started = time.perf_counter()
        outputs = stage.run(stage_dir)
        record = StageRecord(stage=folder, key=key, run_id=uuid.uuid4().hex, wall_seconds=time.perf_counter() - started,
                             finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             outputs=json.loads(json.dumps(outputs, default=str)))
        atomic_write_json(stage_dir / DONE_FILE, record.model_dump(mode="json"))
        return record
