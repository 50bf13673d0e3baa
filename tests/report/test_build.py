from typer.testing import CliRunner

from moon.cli.app import app


def test_cli_writes_the_page_atomically(run_dir, tmp_path):
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>") and not list(tmp_path.glob("*.tmp*"))


def test_cli_default_output_and_bad_compare(run_dir, tmp_path):
    assert CliRunner().invoke(app, ["report", str(run_dir)]).exit_code == 0
    assert (run_dir / "report.html").is_file()
    result = CliRunner().invoke(app, ["report", str(run_dir), "--compare", str(tmp_path / "missing.json")])
    assert result.exit_code != 0 and "result file not found" in str(result.exception)
