from __future__ import annotations

import json

from typer.testing import CliRunner

from moon.cli.app import app
from moon.data.shards import open_dataset

runner = CliRunner()


def test_synth_stats_validate_round_trip(tmp_path):
    out = tmp_path / "synth"
    result = runner.invoke(app, ["data", "synth", "--products", "30", "--out", str(out), "--workers", "1",
                                 "--image-size", "64"])
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert sum(s["products"]["products"] for s in stats["splits"].values()) == 30
    assert open_dataset(out).load_products("train")[0].images[0].to_pil().size == (64, 64)

    result = runner.invoke(app, ["data", "validate", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "validation.json").read_text())["ok"] is True

    result = runner.invoke(app, ["data", "stats", str(out), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0 and json.loads((tmp_path / "s.json").read_text()) == stats


def test_validate_fails_with_exit_code_1_and_names_the_shard(tiny_dataset, tmp_path):
    shard = tiny_dataset / "train" / "products-00000.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["data", "validate", str(tiny_dataset), "--report", str(report)])
    assert result.exit_code == 1
    problems = json.loads(report.read_text())["problems"]
    assert any(p["shard"] == "train/products-00000.tar" and "sha256" in p["message"] for p in problems)


def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    result = runner.invoke(app, ["data", "stats", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a moon dataset" in result.output
    result = runner.invoke(app, ["data", "synth", "--products", "3", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "products" in result.output


def test_import_commands(tmp_path):
    (tmp_path / "cat" / "images").mkdir(parents=True)
    (tmp_path / "cat" / "styles.csv").write_text(
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
        "7,Men,Apparel,Topwear,Shirts,White,Fall,2011,Formal,Plain Shirt\n"
        "8,Men,Apparel,Topwear,Shirts,White,Fall,2011,Formal,Lost Shirt\n")
    from PIL import Image

    Image.new("RGB", (40, 60), (250, 250, 250)).save(tmp_path / "cat" / "images" / "7.jpg")
    result = runner.invoke(app, ["data", "import", "fashion", str(tmp_path / "cat"), "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "f" / "import_report.json").read_text())
    assert report["bad_rows"][0]["id"] == "8" and "missing image" in result.output

    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "1", "doc_title": "t", "doc_image": "cat/images/7.jpg",
                                                  "doc_industry_name": "fashion"}) + "\n")
    (tmp_path / "map.yaml").write_text("default_split: val\n")
    result = runner.invoke(app, ["data", "import", "mbe", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "m"),
                                 "--mapping", str(tmp_path / "map.yaml")])
    assert result.exit_code == 0, result.output
    assert open_dataset(tmp_path / "m").count("val", "products") == 1
