"""`moon mine` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from moon.cli.app import app
from moon.negatives.miner import report_path
from moon.negatives.sidecar import read_negatives

runner = CliRunner()


def test_mine_cli_writes_sidecar_and_report(mining_dataset: Path, tmp_path: Path):
    out = tmp_path / "neg.parquet"
    result = runner.invoke(app, ["mine", "--model", "fallback", "--data", str(mining_dataset), "--out", str(out),
                                 "--k", "3", "--policies", "knn,session", "--seed", "1"])
    assert result.exit_code == 0, result.output
    table = read_negatives(out)
    assert table.num_rows > 0 and set(table.column("policy").to_pylist()) <= {"knn", "session"}
    assert report_path(out).is_file()
    assert json.loads(report_path(out).read_text())["filtered"]["shared_answer"] > 0


def test_mine_cli_can_keep_shared_answers_for_old_sidecars(mining_dataset: Path, tmp_path: Path):
    out = tmp_path / "neg.parquet"
    result = runner.invoke(app, ["mine", "--model", "fallback", "--data", str(mining_dataset), "--out", str(out),
                                 "--k", "3", "--keep-shared-answers"])
    assert result.exit_code == 0, result.output
    assert json.loads(report_path(out).read_text())["filtered"]["shared_answer"] == 0


def test_mine_cli_bad_policy_is_one_clean_line(mining_dataset: Path, tmp_path: Path):
    result = runner.invoke(app, ["mine", "--model", "fallback", "--data", str(mining_dataset),
                                 "--out", str(tmp_path / "n.parquet"), "--policies", "knn,nearby"])
    assert result.exit_code == 2 and "policies" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["mine", "--model", str(tmp_path), "--data", str(mining_dataset),
                                 "--out", str(tmp_path / "n.parquet")])
    assert result.exit_code == 2 and "embedder.json" in result.output
