from __future__ import annotations

import pytest
import torch

from moon.train.queue import EmbeddingQueue


def _batch(start: int, n: int, dim: int = 3):
    ids = torch.arange(start, start + n)
    return ids[:, None].float().repeat(1, dim), ids, ids + 1000


def test_fifo_order_and_wrap():
    q = EmbeddingQueue(size=5, dim=3)
    assert len(q) == 0 and q.contents()[0].shape == (0, 3)
    q.enqueue(*_batch(0, 3))
    assert q.contents()[1].tolist() == [0, 1, 2]
    q.enqueue(*_batch(3, 4))  # wraps: 0 and 1 are overwritten first
    emb, ids, groups = q.contents()
    assert len(q) == 5
    assert ids.tolist() == [2, 3, 4, 5, 6]
    assert groups.tolist() == [1002, 1003, 1004, 1005, 1006]
    assert emb[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_batch_larger_than_queue_keeps_newest_rows():
    q = EmbeddingQueue(size=4, dim=3)
    q.enqueue(*_batch(0, 10))
    assert q.contents()[1].tolist() == [6, 7, 8, 9]


def test_entries_are_detached_copies():
    q = EmbeddingQueue(size=4, dim=2)
    emb = torch.ones(2, 2, requires_grad=True)
    q.enqueue(emb * 2, torch.tensor([1, 2]), torch.tensor([1, 2]))
    stored = q.contents()[0]
    assert not stored.requires_grad and stored.dtype == torch.float32
    assert stored.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_state_dict_round_trip_restores_order_and_pointer():
    q = EmbeddingQueue(size=4, dim=3)
    q.enqueue(*_batch(0, 6))
    r = EmbeddingQueue(size=4, dim=3)
    r.load_state_dict(q.state_dict())
    assert r.contents()[1].tolist() == q.contents()[1].tolist() == [2, 3, 4, 5]
    q.enqueue(*_batch(6, 1))
    r.enqueue(*_batch(6, 1))
    assert torch.equal(q.contents()[0], r.contents()[0]) and r.contents()[1].tolist() == [3, 4, 5, 6]


def test_shape_errors_are_clear():
    q = EmbeddingQueue(size=4, dim=3)
    with pytest.raises(ValueError, match=r"\[N, 3\] embeddings"):
        q.enqueue(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="size=8, dim=3"):
        EmbeddingQueue(size=8, dim=3).load_state_dict(q.state_dict())
