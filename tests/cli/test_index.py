"""`moon export`, `moon index build|add`, `moon search` through the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moon.cli.app import app
from moon.cli.index import parse_filters, parse_size
from tests.index.conftest import saved_tiny_embedder, single_thread_faiss, tiny_text_embedder  # noqa: F401
from tests.index.conftest import write_dataset

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def test_export_build_add_search(saved_tiny_embedder, tmp_path):
    write_dataset(tmp_path / "a", 24)
    write_dataset(tmp_path / "b", 30)
    invoke("export", "--model", saved_tiny_embedder, "--data", tmp_path / "a", "--out", tmp_path / "ex_a",
           "--chunk-size", "10")
    out = invoke("export", "--model", saved_tiny_embedder, "--data", tmp_path / "a", "--out", tmp_path / "ex_a",
                 "--chunk-size", "10").output
    assert "complete" in out
    invoke("export", "--model", saved_tiny_embedder, "--data", tmp_path / "b", "--out", tmp_path / "ex_b")
    build = invoke("index", "build", tmp_path / "ex_a", "--out", tmp_path / "ix", "--memory-budget", "1GB").output
    assert "flat" in build
    add = invoke("index", "add", tmp_path / "ix", tmp_path / "ex_b").output
    assert "30" in add and "6" in add
    invoke("search", tmp_path / "ix", "--product-id", "p0-3", "--k", "3", "--filter", "attr.colour=blue",
           "--out", tmp_path / "hits.json")
    hits = json.loads((tmp_path / "hits.json").read_text())
    assert len(hits) == 3 and all(h["id"] != "p0-3" for h in hits)
    assert all("blue" in h["title"] for h in hits)
    invoke("search", tmp_path / "ix", "--model", saved_tiny_embedder, "--text", "red mug", "--k", "4",
           "--out", tmp_path / "text.json")
    assert len(json.loads((tmp_path / "text.json").read_text())) == 4


def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "moon", "index", "build", str(tmp_path), "--out",
                           str(tmp_path / "ix")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("moon: error:") and "Traceback" not in proc.stderr
    assert "not an export directory" in proc.stderr


def test_parse_size_and_filters():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("512MiB") == 512 * 2**20 and parse_size(None) is None
    assert parse_size("1.5g") == 1_500_000_000
    with pytest.raises(ValueError, match="memory-budget"):
        parse_size("lots")
    assert parse_filters(["category=Shoes", "attr.colour = red"]) == {"category": "Shoes", "attr.colour": "red"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_filters(["category"])
