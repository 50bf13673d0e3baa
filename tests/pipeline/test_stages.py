"""Stage markers and keys: skip finished stages, resume unfinished ones, redo what changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moon.data.records import DataError
from moon.pipeline.stages import DONE_FILE, PARAMS_FILE, Stage, StageRunner


class Counter:
    """A stage body that counts its calls and leaves a file behind (or fails on request)."""

    def __init__(self, name: str):
        self.name = name
        self.calls = 0
        self.fail = False

    def __call__(self, out: Path) -> dict:
        self.calls += 1
        (out / "scratch.txt").write_text(str(self.calls))
        if self.fail:
            raise RuntimeError(f"{self.name} interrupted")
        return {"calls": self.calls}


def _stages(a: Counter, b: Counter, c: Counter, a_params: dict | None = None) -> list[Stage]:
    return [Stage("a", a, a_params or {"n": 1}), Stage("b", b, {}, ("a",)), Stage("c", c, {})]


def test_second_run_skips_finished_stages(tmp_path: Path) -> None:
    a, b, c = Counter("a"), Counter("b"), Counter("c")
    first = StageRunner(tmp_path).run_all(_stages(a, b, c))
    assert [o.ran for o in first] == [True, True, True]
    assert [o.record.stage for o in first] == ["01-a", "02-b", "03-c"]
    marker = json.loads((tmp_path / "02-b" / DONE_FILE).read_text())
    assert marker["outputs"] == {"calls": 1} and marker["wall_seconds"] >= 0
    second = StageRunner(tmp_path).run_all(_stages(a, b, c))
    assert [o.ran for o in second] == [False, False, False]
    assert (a.calls, b.calls, c.calls) == (1, 1, 1)
    assert second[1].record == first[1].record


def test_interrupted_stage_reruns_in_its_folder(tmp_path: Path) -> None:
    a, b, c = Counter("a"), Counter("b"), Counter("c")
    b.fail = True
    with pytest.raises(RuntimeError, match="b interrupted"):
        StageRunner(tmp_path).run_all(_stages(a, b, c))
    assert (tmp_path / "02-b" / PARAMS_FILE).is_file() and not (tmp_path / "02-b" / DONE_FILE).exists()
    b.fail = False
    outcomes = StageRunner(tmp_path).run_all(_stages(a, b, c))
    assert [o.ran for o in outcomes] == [False, True, True]
    assert (tmp_path / "02-b" / "scratch.txt").read_text() == "2"


def test_changed_params_redo_the_stage_and_its_downstream_only(tmp_path: Path) -> None:
    a, b, c = Counter("a"), Counter("b"), Counter("c")
    StageRunner(tmp_path).run_all(_stages(a, b, c))
    (tmp_path / "01-a" / "stale.txt").write_text("from the old settings")
    outcomes = StageRunner(tmp_path).run_all(_stages(a, b, c, a_params={"n": 2}))
    assert [o.ran for o in outcomes] == [True, True, False]
    assert not (tmp_path / "01-a" / "stale.txt").exists()


def test_redone_upstream_redoes_downstream(tmp_path: Path) -> None:
    a, b, c = Counter("a"), Counter("b"), Counter("c")
    StageRunner(tmp_path).run_all(_stages(a, b, c))
    (tmp_path / "01-a" / DONE_FILE).unlink()
    outcomes = StageRunner(tmp_path).run_all(_stages(a, b, c))
    assert [o.ran for o in outcomes] == [True, True, False]


def test_damaged_marker_is_a_clear_error(tmp_path: Path) -> None:
    a, b, c = Counter("a"), Counter("b"), Counter("c")
    StageRunner(tmp_path).run_all(_stages(a, b, c))
    (tmp_path / "01-a" / DONE_FILE).write_text('{"stage": "01-a"}')
    with pytest.raises(DataError, match=r"01-a/done.json.*wall_seconds"):
        StageRunner(tmp_path).run_all(_stages(a, b, c))


def test_stage_needing_a_later_stage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs \\['z'\\]"):
        StageRunner(tmp_path).run_all([Stage("a", Counter("a"), {}, ("z",))])
