"""The negatives sidecar: round trip, atomic writes, clear errors on bad tables."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moon.data.records import DataError
from moon.negatives.sidecar import (
    COLUMNS,
    NegativesWriter,
    negatives_by_pair,
    negatives_metadata,
    read_negatives,
    write_negatives,
)

ROWS = {"query_id": ["q1", "q1", "q2"], "positive_id": ["p1", "p1", "p2"], "negative_id": ["n2", "n1", "n3"],
        "policy": ["knn", "same_category", "session"], "rank": [1, 0, 0], "score": [0.5, 0.7, 0.1]}


def test_round_trip_with_metadata_and_pair_lookup(tmp_path: Path):
    path = write_negatives(tmp_path / "neg.parquet", ROWS, {"model_id": "m", "config": {"k": 2}})
    table = read_negatives(path)
    assert table.column_names == list(COLUMNS) and table.num_rows == 3
    assert table.column("policy").to_pylist() == ROWS["policy"]
    assert negatives_metadata(path) == {"model_id": "m", "config": {"k": 2}}
    assert negatives_by_pair(table) == {("q1", "p1"): ["n1", "n2"], ("q2", "p2"): ["n3"]}
    assert [p.name for p in tmp_path.iterdir()] == ["neg.parquet"]


def test_streamed_batches_and_failed_write_leaves_nothing(tmp_path: Path):
    with NegativesWriter(tmp_path / "s.parquet") as writer:
        writer.write(ROWS)
        writer.write(ROWS)
    assert read_negatives(tmp_path / "s.parquet").num_rows == 6
    with pytest.raises(RuntimeError):
        with NegativesWriter(tmp_path / "t.parquet") as writer:
            writer.write(ROWS)
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]


def test_writing_wrong_columns_names_them(tmp_path: Path):
    bad = {k: v for k, v in ROWS.items() if k != "policy"}
    with pytest.raises(DataError, match="missing: \\['policy'\\]"):
        write_negatives(tmp_path / "x.parquet", bad)
    with pytest.raises(DataError, match="do not match"):
        write_negatives(tmp_path / "x.parquet", {**ROWS, "rank": ["a", "b", "c"]})


def test_reading_checks_columns_and_types(tmp_path: Path):
    pq.write_table(pa.table({k: v for k, v in ROWS.items() if k != "score"}), tmp_path / "a.parquet")
    with pytest.raises(DataError, match="missing column 'score'"):
        read_negatives(tmp_path / "a.parquet")
    pq.write_table(pa.table({**ROWS, "rank": [[1], [2], [3]]}), tmp_path / "b.parquet")
    with pytest.raises(DataError, match="column 'rank' has type"):
        read_negatives(tmp_path / "b.parquet")
    pq.write_table(pa.table({**ROWS, "rank": pa.array([1, 0, 0], pa.int64())}), tmp_path / "c.parquet")
    assert read_negatives(tmp_path / "c.parquet").schema.field("rank").type == pa.int32()
    (tmp_path / "d.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable parquet"):
        read_negatives(tmp_path / "d.parquet")
    with pytest.raises(DataError, match="not found"):
        read_negatives(tmp_path / "missing.parquet")
