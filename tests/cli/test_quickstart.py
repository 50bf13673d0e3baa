"""`moon quickstart` end to end on a reduced budget, then re-runs that must resume, not redo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from moon.cli.app import app
from moon.pipeline.quickstart import QuickstartConfig

STAGES = ["01-data", "02-detector", "03-crop", "04-negatives", "05-init", "06-train-moon", "07-train-openclip",
          "08-export", "09-index", "10-bench-moon", "11-bench-openclip", "12-bench-untrained"]


def _small_recipe(tmp_path: Path) -> Path:
    """The shipped quickstart recipe with a small batch and no validation before training."""
    tree = yaml.safe_load(QuickstartConfig().recipe.read_text())
    tree["optim"]["batch_size"] = 8
    tree.setdefault("validation", {})["at_start"] = False
    path = tmp_path / "quickstart-small.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _run(args: list[str]) -> dict:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads((Path(args[args.index("--run-dir") + 1]) / "scorecard.json").read_text())


@pytest.mark.slow
def test_quickstart_runs_end_to_end_then_resumes(tmp_path: Path) -> None:
    run = tmp_path / "qs"
    args = ["quickstart", "--run-dir", str(run), "--products", "120", "--steps", "2", "--detector-epochs", "1",
            "--recipe", str(_small_recipe(tmp_path)), "--quiet"]
    card = _run(args)
    assert [s["stage"] for s in card["stages"]] == STAGES
    assert all(s["ran_now"] for s in card["stages"])
    assert set(card["models"]) == {"moon", "open_clip", "moon_untrained"}
    moon, clip = card["models"]["moon"]["training"], card["models"]["open_clip"]["training"]
    assert moon["steps"] == clip["steps"] == 2 and moon["batch_size"] == clip["batch_size"] == 8
    headline = [r for r in card["comparison"] if r["headline"]]
    assert {r["metric"] for r in headline} >= {"text2product R@10", "image2product R@10", "cls.type acc"}
    for row in headline:
        assert all(v is not None and 0.0 <= v <= 1.0 for v in row["values"].values()), row
    counts = json.loads((run / "01-data" / "done.json").read_text())["outputs"]["counts"]
    assert card["index"]["count"] == counts["test/products"], "the index holds every test product"
    assert (run / "scorecard.md").read_text().startswith("# MOON quickstart scorecard")

    markers = {p: p.read_bytes() for p in run.glob("*/done.json")}
    assert len(markers) == len(STAGES)
    again = _run(args)
    assert not any(s["ran_now"] for s in again["stages"]) and again["this_run_seconds"] == 0
    assert {p: p.read_bytes() for p in run.glob("*/done.json")} == markers
    assert again["comparison"] == card["comparison"]

    # a training killed after its last checkpoint: it resumes there, and only what reads it is redone
    (run / "07-train-openclip" / "done.json").unlink()
    shutil.rmtree(run / "07-train-openclip" / "run" / "model")
    resumed = _run(args)
    redone = [s["stage"] for s in resumed["stages"] if s["ran_now"]]
    assert redone == ["07-train-openclip", "11-bench-openclip"]
    assert resumed["models"]["open_clip"]["training"]["resumed_from"] == 2
