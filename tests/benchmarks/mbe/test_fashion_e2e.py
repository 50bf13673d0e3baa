"""Reduced fashion pipeline end to end on the real catalogue: import, train, bench, report.

A tiny catalogue folder (the first rows of styles.csv and only their images) is built in
tmp_path, so the test exercises the importer's folder handling on ids it was not written
for, and nothing of the catalogue lands in the repository.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moon.cli.app import app

RECIPES = Path(__file__).resolve().parents[3] / "recipes"
ROWS = 150


def _tiny_catalogue(source: Path, dest: Path, rows: int) -> Path:
    lines = (source / "styles.csv").read_text().splitlines()
    (dest / "images").mkdir(parents=True)
    kept = [lines[0]]
    for line in lines[1:rows + 1]:
        pid = line.split(",", 1)[0]
        image = source / "images" / f"{pid}.jpg"
        if image.is_file():
            shutil.copyfile(image, dest / "images" / image.name)
        kept.append(line)
    (dest / "styles.csv").write_text("\n".join(kept) + "\n")
    return dest


def _invoke(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"moon {' '.join(args)} failed:\n{result.output}\n{result.exception!r}"


@pytest.mark.slow
def test_fashion_import_train_bench_report(fashion_dir, tmp_path):
    catalogue = _tiny_catalogue(fashion_dir, tmp_path / "catalogue", ROWS)
    data, run, results = tmp_path / "fashion", tmp_path / "run", tmp_path / "run" / "RESULTS.json"
    _invoke("data", "import", "fashion", str(catalogue), "--out", str(data))
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["tables"]["train/queries"]["count"] > 0

    _invoke("train", str(RECIPES / "fashion-cpu.yaml"), "--out", str(run), "--quiet",
            f"data.dataset={data}", "data.negatives=null", "optim.steps=3", "optim.warmup_steps=1",
            "optim.batch_size=12", "negatives.queue_size=0", "run.checkpoint_every=0")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and (run / "model" / "embedder.json").is_file()

    _invoke("bench", "fashion", "--catalogue", str(catalogue), "--model", str(run / "model"),
            "--out", str(results), "--split", "all", "--per-category", "--category-level", "2",
            "--examples", "3")
    doc = json.loads(results.read_text())
    tasks = doc["tasks"]
    values = [tasks["t2i"][m] for m in ("R@1", "R@10", "MRR@10")]
    values += [tasks["i2p"][m] for m in ("R@1", "R@10")] + [tasks["t2p"][m] for m in ("nDCG@10", "hit@10")]
    for level in ("articleType", "subCategory", "masterCategory"):
        values += [tasks["cls"][level]["acc"], tasks["cls"][level]["macro_f1"]]
    values += [tasks["attr"][name]["acc"] for name in ("baseColour", "gender", "usage", "season")]
    assert all(0.0 <= v <= 1.0 for v in values), values
    assert doc["split"] == "all" and doc["data_report"]["scored_products"] > 100
    for key in ("model_id", "data_id", "config_hash", "software", "wall_time_s"):
        assert doc[key], key
    assert len(doc["examples"]["t2i"]) == 3

    _invoke("report", str(run))
    page = (run / "report.html").read_text()
    assert "Training loss" in page and ('<figure class="hit">' in page or '<figure class="miss">' in page)
    assert "data:image/jpeg;base64," in page
