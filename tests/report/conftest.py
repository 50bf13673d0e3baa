"""A run directory as `moon train` + `moon bench fashion` leave it, written by hand so the
report tests need no model: metrics.jsonl, summary.json, RESULTS.json with breakdown and
examples pointing at a small fashion-layout folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.mbe.conftest import write_catalogue


def write_result(path: Path, data_path: Path, model_id: str, t2i_r10: float, examples: bool = True,
                 breakdown: bool = True, data_id: str = "fashion:catalogue@1") -> Path:
    doc = {
        "schema": "moon-bench-result/1", "benchmark": "fashion", "model_id": model_id, "model_path": "m",
        "config_hash": "abc", "data_id": data_id, "data_path": str(data_path), "split": "all",
        "tasks": {"t2i": {"R@1": 0.2, "R@10": t2i_r10, "MRR@10": 0.3}, "i2p": None,
                  "t2p": {"nDCG@10": 0.4, "hit@10": 0.6},
                  "cls": {"articleType": {"acc": 0.5, "macro_f1": 0.25}},
                  "attr": {"gender": {"acc": 0.6}, "season": {"acc": 0.8}}},
        "not_applicable": {"i2p": "text-only"}, "software": {"python": "3"}, "wall_time_s": 12.0,
        "created": "2026-01-01T00:00:00+00:00",
    }
    if breakdown:
        doc["breakdown"] = {"t2i": {"Tshirts": {"n": 3, "R@1": 0.1, "R@10": 0.66},
                                    "Handbags": {"n": 2, "R@1": 0.0, "R@10": 0.5}}}
    if examples:
        doc["examples"] = {"t2i": [
            {"query_index": 0, "query": {"text": "Brand0 Men Red Tshirts", "image_jpeg_b64": None},
             "relevant": ["5000"], "n_relevant": 1,
             "top": [{"id": "5003", "score": 0.9, "hit": False}, {"id": "5000", "score": 0.8, "hit": True},
                     {"id": "5001", "score": 0.7, "hit": False}]},
            {"query_index": 5, "query": {"text": "Brand1 Women Blue Handbags", "image_jpeg_b64": None},
             "relevant": ["5005"], "n_relevant": 1,
             "top": [{"id": "5006", "score": 0.9, "hit": False}, {"id": "424242", "score": 0.5, "hit": False}]},
        ]}
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    catalogue = write_catalogue(tmp_path / "catalogue", n=12)
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": 0, "val/chance@10": 0.1, "val/R@10/text": 0.12}]
    for step in range(1, 21):
        record = {"step": step, "train/loss": 5.0 - 0.2 * step, "train/lr": 1e-3}
        if step % 10 == 0:
            record.update({"train/loss_text": 4.0 - 0.1 * step, "train/accuracy": 0.05 * step,
                           "train/temperature": 0.05})
        lines.append(record)
    lines.append({"step": 20, "val/chance@10": 0.1, "val/R@10/text": 0.45})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 21, "train/lo')
    (run / "summary.json").write_text(json.dumps({"recipe": "fashion-cpu", "steps": 20, "wall_seconds": 90,
                                                  "parameters": 1234}))
    write_result(run / "RESULTS.json", catalogue, "moon-tiny", 0.55)
    return run
