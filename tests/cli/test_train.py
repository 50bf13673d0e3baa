from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    return subprocess.run([sys.executable, "-m", "moon", "train", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_bad_recipe_is_one_clear_error_per_key_and_exit_code_2(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: r\nmodel: {name: moon-tiny, colour: red}\n"
                      f"data: {{dataset: {tmp_path / 'missing'}}}\n"
                      "optim: {lr: fast, steps: 10, batch_size: 4}\n")
    result = _run(str(recipe))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "recipe.yaml: model.colour: Extra inputs are not permitted" in result.stderr
    assert "recipe.yaml: optim.lr: Input should be a valid number" in result.stderr


def test_override_errors_and_missing_data_are_reported(tmp_path, tiny_dataset):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: r\nmodel: {{name: moon-tiny}}\ndata: {{dataset: {tiny_dataset}}}\n"
                      "optim: {lr: 0.001, steps: 10, batch_size: 4}\n")
    result = _run(str(recipe), "negatives.hard_k=many", f"data.negatives={tmp_path / 'neg.parquet'}")
    assert result.returncode == 2
    assert "recipe.yaml: negatives.hard_k: Input should be a valid integer" in result.stderr
    result = _run(str(recipe), f"data.negatives={tmp_path / 'neg.parquet'}")
    assert result.returncode == 2 and "data.negatives: file does not exist" in result.stderr
