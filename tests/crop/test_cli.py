"""`moon crop train|run` through the real CLI: results on disk, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from moon.cli.app import app
from moon.crop.boxes import CropPolicy
from moon.crop.detector import INFO_FILE, Detector, DetectorTrainConfig

runner = CliRunner()


@pytest.mark.slow
def test_crop_run_cli_writes_dataset_and_report(trained_detector: Detector, scene_dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    args = ["crop", "run", "--detector", str(trained_detector.path), "--data", str(scene_dataset),
            "--out", str(out), "--batch-size", "16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "crop_report.json").read_text())
    assert report["complete"] and report["images"] > 0 and report["detector_id"] == trained_detector.detector_id
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and json.loads((out / "crop_report.json").read_text())["shards_done"] == 0


@pytest.mark.slow
def test_crop_train_cli_one_epoch(scene_dataset: Path, tmp_path: Path):
    result = runner.invoke(app, ["crop", "train", "--data", str(scene_dataset), "--out", str(tmp_path / "d"),
                                 "--epochs", "1", "--imgsz", "64", "--batch", "16", "--mosaic", "0"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "d" / INFO_FILE).read_text())
    assert info["train"]["epochs"] == 1 and "val_map50" in info["metrics"] and "test_map50" in info["metrics"]


def test_crop_errors_are_one_line(tmp_path: Path):
    result = runner.invoke(app, ["crop", "run", "--detector", str(tmp_path), "--data", str(tmp_path),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not a moon detector" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["crop", "train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "not found" in result.output


def _option_help(command: str) -> dict[str, str]:
    crop = typer.main.get_command(app).commands["crop"]
    return {p.name: p.help or "" for p in crop.commands[command].params}


def test_help_states_the_library_defaults():
    """The CLI leaves unset options to the library, so its help must quote the library's defaults."""
    train, config = _option_help("train"), DetectorTrainConfig()
    for name in ("model", "epochs", "imgsz", "classes", "batch", "optimizer", "lr0", "mosaic", "seed"):
        assert f"(default {getattr(config, name)})" in train[name], (name, train[name])
    run, policy = _option_help("run"), CropPolicy()
    for name in ("min_confidence", "pad", "min_size"):
        assert f"(default {getattr(policy, name)})" in run[name], (name, run[name])
