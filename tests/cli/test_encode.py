"""`moon encode` through the CLI."""

import json

import numpy as np
from typer.testing import CliRunner

from moon.cli.app import app
from moon.model.bootstrap import init_model

runner = CliRunner()
SMALL = {"backbone.text.num_layers": 1, "backbone.vision.depth": 1, "inputs.image_size": 56}


def test_encode_writes_npy_and_ids(tiny_dataset, tmp_path):
    init_model("moon-tiny", tmp_path / "model", corpus=tiny_dataset, overrides=SMALL)
    out = tmp_path / "emb.npy"
    result = runner.invoke(app, ["encode", "--model", str(tmp_path / "model"), "--data", str(tiny_dataset),
                                 "--split", "val", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    ids = json.loads((tmp_path / "emb.ids.json").read_text())["ids"]
    emb = np.load(out)
    assert emb.shape == (len(ids), 128) and len(ids) == 6
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    result = runner.invoke(app, ["encode", "--model", str(tmp_path / "model"), "--data", str(tiny_dataset),
                                 "--split", "val", "--table", "queries", "--out", str(tmp_path / "q"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "q" / "embeddings.npy").shape[0] == 18


def test_encode_errors_are_one_line(tiny_dataset, tmp_path):
    result = runner.invoke(app, ["encode", "--model", str(tmp_path), "--data", str(tiny_dataset),
                                 "--out", str(tmp_path / "e.npy")])
    assert result.exit_code == 2 and "embedder.json" in result.output
    result = runner.invoke(app, ["encode", "--model", "minilm", "--data", str(tiny_dataset),
                                 "--out", str(tmp_path / "e.npy"), "--table", "bogus"])
    assert result.exit_code == 2 and "--table" in result.output
