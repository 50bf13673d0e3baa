import json
import re

from moon.report.inputs import read_run
from moon.report.page import render

from tests.report.conftest import write_result


def _section(page: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert match, name
    return match.group(1)


def test_page_has_every_section_with_content(run_dir, tmp_path):
    baseline = write_result(tmp_path / "baseline.json", tmp_path / "catalogue", "openclip-tiny", 0.31)
    page = render(read_run(run_dir, compare=[baseline]))
    curves = _section(page, "training-curves")
    assert curves.count("<svg") == 3 and "train/loss_text" in curves and "val/R@10/text" in curves
    assert "1 unreadable line(s)" in curves
    score = _section(page, "scorecard")
    assert "run (this run)" in score and "openclip-tiny" in score
    assert '<td class="best">0.550</td>' in score and "<td>0.310</td>" in score
    assert "attr mean acc" in score and "0.700" in score
    assert "<tr><td>i2p</td>" in score   # n/a for every model: one row
    bars = _section(page, "per-category-results")
    assert "t2i R@10 per category" in bars and "Tshirts (n=3)" in bars and "0.66" in bars
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_gallery_marks_hits_and_shows_the_expected_product(run_dir):
    gallery = _section(render(read_run(run_dir)), "retrieval-gallery")
    assert gallery.count('<figure class="hit">') == 1
    assert gallery.count('<figure class="miss">') == 4
    first, second = gallery.split('<div class="query">')[1:3]
    ranked = re.findall(r'<figure class="(hit|miss)">.*?<br>(\d+)', first)
    assert ranked == [("miss", "5003"), ("hit", "5000"), ("miss", "5001")]
    assert "1 of top 3 relevant" in first and 'class="target"' not in first
    assert re.search(r'<figure class="target">.*?<br>5005', second)
    assert gallery.count("data:image/jpeg;base64,") == 5   # 424242 has no image: a labelled blank
    assert "1 product image(s) not found" in gallery


def test_missing_optional_parts_say_what_to_run(run_dir):
    (run_dir / "RESULTS.json").unlink()
    page = render(read_run(run_dir))
    assert "No benchmark result" in _section(page, "scorecard")
    assert "No per-category breakdown" in _section(page, "per-category-results")
    assert "No retrieval examples" in _section(page, "retrieval-gallery")
    assert "<svg" in _section(page, "training-curves")


def test_result_only_and_no_validation(run_dir):
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/loss": 2.0}) + "\n")
    write_result(run_dir / "RESULTS.json", run_dir.parent / "catalogue", "m", 0.5, examples=False, breakdown=False)
    page = render(read_run(run_dir))
    assert "No validation curve" in _section(page, "training-curves")
    assert "No per-category breakdown" in page and "No retrieval examples" in page
    assert "t2i R@10" in _section(page, "scorecard")


def test_scorecard_warns_only_when_the_scored_data_differ(run_dir, tmp_path):
    write_result(run_dir / "RESULTS.json", tmp_path / "catalogue", "moon-tiny", 0.55,
                 data_id="fashion:catalogue@1+crops:det@2")
    same = write_result(tmp_path / "same.json", tmp_path / "catalogue", "openclip-tiny", 0.31)
    other = write_result(tmp_path / "other.json", tmp_path / "catalogue", "openclip-tiny", 0.31,
                         data_id="fashion:catalogue@9")
    assert "not comparable" not in _section(render(read_run(run_dir, compare=[same])), "scorecard")
    assert "not comparable" in _section(render(read_run(run_dir, compare=[other])), "scorecard")
