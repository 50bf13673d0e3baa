import pytest

from moon.data.records import DataError
from moon.report.inputs import read_metrics, read_run


def test_metrics_skip_and_count_cut_lines(run_dir):
    records, bad = read_metrics(run_dir / "metrics.jsonl")
    assert bad == 1 and records[0]["step"] == 0 and records[-1]["val/R@10/text"] == 0.45


def test_empty_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="nothing to report"):
        read_run(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_run(tmp_path / "nope")


def test_compare_file_that_is_not_a_result(run_dir, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"a": 1}')
    with pytest.raises(DataError, match=r"x.json: not a benchmark result"):
        read_run(run_dir, compare=[bad])
