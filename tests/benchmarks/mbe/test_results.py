import pytest

from moon.data.records import DataError

from benchmarks.mbe.results import flatten, leaderboard, make_result, nest, read_result
from benchmarks.mbe.tasks import TaskScore


def result(model_id: str, t2i: float, data_id: str = "fashion:x@1", breakdown=None):
    scores = [TaskScore("t2i", {"R@1": t2i, "R@10": 0.9}, breakdown=breakdown),
              TaskScore("i2p", None, na_reason="text-only"),
              TaskScore("cls.articleType", {"acc": 0.5, "macro_f1": t2i / 2})]
    return make_result(scores, benchmark="fashion", model_id=model_id, model_path=model_id, config_hash="ab" * 32,
                       data_id=data_id, data_path="/d", split="test", wall_time_s=3.0)


def test_nest_and_flatten():
    tree = nest([TaskScore("cls.articleType", {"acc": 0.5}), TaskScore("t2i", None, na_reason="n/a")])
    assert tree == {"cls": {"articleType": {"acc": 0.5}}, "t2i": None}
    assert flatten(tree) == {"cls.articleType acc": 0.5, "t2i": None}


def test_leaderboard_marks_best_and_not_applicable():
    board = leaderboard([("a", result("moon-tiny", 0.4)), ("b", result("minilm-l6", 0.2))])
    lines = board.splitlines()
    assert lines[0] == "| metric | moon-tiny (a) | minilm-l6 (b) |"
    assert "| t2i R@1 | **0.400** | 0.200 |" in lines
    assert "| i2p | n/a | n/a |" in lines
    assert "| t2i R@10 | **0.900** | **0.900** |" in lines
    assert "Warning" not in board


def test_leaderboard_warns_on_different_data_and_renders_breakdown():
    per_cat = {"Shoes": {"n": 3.0, "R@1": 0.5}, "Bags": {"n": 2.0, "R@1": 1.0}}
    board = leaderboard([("a", result("m1", 0.4, breakdown=per_cat)), ("b", result("m2", 0.2, data_id="other"))],
                        breakdown=True)
    assert "different data" in board
    assert "### t2i R@1 per category" in board and "| Shoes | 3 | 0.500 | – |" in board


def test_leaderboard_compares_a_cropping_model_with_one_that_does_not():
    cropped = result("moon", 0.4, data_id="fashion:x@1+crops:det@2")
    assert "Warning" not in leaderboard([("a", cropped), ("b", result("clip", 0.2))])
    assert "Warning" in leaderboard([("a", cropped), ("b", result("clip", 0.2, data_id="fashion:y@3"))])


def test_read_result_names_the_bad_file(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text('{"model_id": 3}')
    with pytest.raises(DataError, match="r.json"):
        read_result(bad)
    with pytest.raises(ValueError, match="at least one"):
        leaderboard([])
