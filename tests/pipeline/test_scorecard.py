"""The scorecard: which rows are headline, which column wins, what the markdown shows."""

from __future__ import annotations

from moon.pipeline.scorecard import build_scorecard, is_headline, scorecard_markdown
from moon.pipeline.stages import StageOutcome, StageRecord


def _outcome(stage: str, seconds: float, outputs: dict, ran: bool = True) -> StageOutcome:
    record = StageRecord(stage=stage, key="k", run_id="r", wall_seconds=seconds,
                         finished_at="2026-01-01T00:00:00+00:00", outputs=outputs)
    return StageOutcome(record, ran)


def _bench(metrics: dict) -> dict:
    return {"model_id": "m", "result_file": "r.json", "metrics": metrics}


def _train(steps: int) -> dict:
    return {"steps": steps, "batch_size": 32, "grad_accum": 2, "parameters": 1000, "train_wall_seconds": 12.0,
            "resumed_from": None}


def _card() -> dict:
    outcomes = {
        "train-a": _outcome("01-train-a", 12.5, _train(5)),
        "bench-a": _outcome("02-bench-a", 1.0, _bench({"text2product R@1": 0.5, "text2product_ann R@1": 0.5,
                                                        "cls.type acc": 0.9, "cls.type macro_f1": 0.8})),
        "bench-b": _outcome("03-bench-b", 2.0, _bench({"text2product R@1": 0.7, "text2product_ann R@1": 0.6,
                                                        "cls.type acc": None, "cls.type macro_f1": 0.8}), ran=False),
    }
    return build_scorecard({"products": 100, "seed": 0, "run_dir": "runs/x"}, outcomes,
                           models={"a": "bench-a", "b": "bench-b"}, training={"a": "train-a"})


def test_headline_rows_are_exact_recall_and_zero_shot_accuracy() -> None:
    assert is_headline("image2product R@10") and is_headline("attr.colour acc")
    assert not is_headline("image2product_ann R@10")
    assert not is_headline("image2product nDCG@10") and not is_headline("cls.type macro_f1")
    assert not is_headline("text2product R@5")


def test_best_column_per_row_and_ties_and_missing_values() -> None:
    card = _card()
    rows = {r["metric"]: r for r in card["comparison"]}
    assert rows["text2product R@1"]["best"] == "b"
    assert rows["cls.type acc"]["best"] is None, "only one model has a value: nothing to compare"
    assert rows["cls.type macro_f1"]["best"] is None, "a tie has no winner"
    assert card["headline"] == ["text2product R@1", "cls.type acc"]
    assert card["models"]["a"]["training"]["steps"] == 5 and card["models"]["b"]["training"] is None
    assert card["total_wall_seconds"] == 15.5 and card["this_run_seconds"] == 13.5


def test_markdown_bolds_the_winner_and_lists_every_stage() -> None:
    text = scorecard_markdown(_card())
    assert "| text2product R@1 | 0.500 | **0.700** |" in text
    assert "| cls.type acc | 0.900 | n/a |" in text
    assert "| 03-bench-b | 2.0 | done before |" in text
    assert "| a | 1,000 | 5 | 64 | 12 |" in text
