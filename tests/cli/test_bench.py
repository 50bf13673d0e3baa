"""`moon bench fashion|run|leaderboard` through the CLI."""

import json

from typer.testing import CliRunner

from moon.cli.app import app
from tests.benchmarks.mbe.conftest import write_catalogue
from tests.index.conftest import saved_tiny_embedder, single_thread_faiss, tiny_text_embedder  # noqa: F401

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.output


def test_bench_fashion_run_and_leaderboard(saved_tiny_embedder, tiny_dataset, tmp_path):
    catalogue = write_catalogue(tmp_path / "cat")
    out = invoke("bench", "fashion", "--catalogue", catalogue, "--model", saved_tiny_embedder,
                 "--out", tmp_path / "fashion.json", "--split", "all", "--per-category")
    assert "t2p nDCG@10" in out and "n/a" in out
    fashion = json.loads((tmp_path / "fashion.json").read_text())
    assert fashion["benchmark"] == "fashion" and fashion["split"] == "all"
    assert set(fashion["breakdown"]) == {"t2p"}
    invoke("bench", "run", "--model", saved_tiny_embedder, "--data", tiny_dataset, "--out", tmp_path / "mbe.json",
           "--ann", "none")
    assert json.loads((tmp_path / "mbe.json").read_text())["tasks"]["text2product"] is not None
    invoke("bench", "leaderboard", tmp_path / "fashion.json", tmp_path / "fashion.json", "--out", tmp_path / "b.md",
           "--per-category")
    board = (tmp_path / "b.md").read_text()
    assert board.startswith("| metric | tiny-bert (fashion) | tiny-bert (fashion) |")
    assert "### t2p nDCG@10 per category" in board
    for run in ("run-a", "run-b"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "RESULTS.json").write_text((tmp_path / "fashion.json").read_text())
    invoke("bench", "leaderboard", tmp_path / "run-a" / "RESULTS.json", tmp_path / "run-b" / "RESULTS.json",
           "--out", tmp_path / "c.md")
    assert (tmp_path / "c.md").read_text().startswith("| metric | tiny-bert (run-a) | tiny-bert (run-b) |")
