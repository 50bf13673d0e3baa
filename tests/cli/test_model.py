"""`moon model init` / `moon model configs` through the CLI."""

import json

from typer.testing import CliRunner

from moon.cli.app import app

runner = CliRunner()
SMALL = ["--set", "backbone.text.num_layers=1", "--set", "backbone.vision.depth=1",
         "--set", "inputs.image_size=56"]


def test_model_init_writes_a_model_dir(tiny_dataset, tmp_path):
    model_dir = tmp_path / "model"
    result = runner.invoke(app, ["model", "init", "--config", "moon-tiny", "--corpus", str(tiny_dataset),
                                 "--out", str(model_dir), *SMALL])
    assert result.exit_code == 0, result.output
    assert json.loads((model_dir / "embedder.json").read_text())["architecture"] == "moon"
    assert json.loads((model_dir / "moon_config.json").read_text())["inputs"]["image_size"] == 56
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "tokenizer.json").is_file()


def test_model_init_errors_are_one_line(tiny_dataset, tmp_path):
    result = runner.invoke(app, ["model", "init", "--config", "moon-tiny", "--out", str(tmp_path / "m"),
                                 "--set", "moe.top_k=9", "--corpus", str(tiny_dataset)])
    assert result.exit_code == 2 and "top_k" in result.output
    result = runner.invoke(app, ["model", "init", "--config", "moon-tiny", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "corpus" in result.output


def test_model_configs_lists_named_configs():
    result = runner.invoke(app, ["model", "configs"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "moon-qwen2.5-vl-3b" in result.output
