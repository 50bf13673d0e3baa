"""Spatial negatives: every rank's product embeddings, shared with every other rank.

MOON's "spatial" negatives are the products of all data-parallel ranks. Each rank gets the
global set but keeps autograd only through its own slice: a rank's loss then back-propagates
into the products it embedded, which is the usual (and communication-free in backward)
approximation used by CLIP-style trainers. Ids and group ids travel with the embeddings so
false-negative masking works on gathered products too. With world size 1 (or no process
group) gathering is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device() -> torch.device:
    """Where collective tensors must live: NCCL only moves CUDA tensors, gloo CPU ones."""
    if dist.is_available() and dist.is_initialized() and "nccl" in str(dist.get_backend()).lower():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_tensor(x: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of `x` in rank order, on x's device (no autograd). All ranks must pass
    equal shapes."""
    rank, size = world()
    if size == 1:
        return [x]
    device = collective_device()
    shape = torch.tensor(list(x.shape), dtype=torch.long, device=device)
    shapes = [torch.zeros_like(shape) for _ in range(size)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        raise RuntimeError(f"rank {rank}: all_gather needs equal shapes on every rank, got "
                           f"{[tuple(s.tolist()) for s in shapes]}")
    sent = x.contiguous().to(device)
    out = [torch.empty_like(sent) for _ in range(size)]
    dist.all_gather(out, sent)
    return [part.to(x.device) for part in out]


@dataclass
class Gathered:
    """Products from all ranks: `embeddings` [W*N, D] in rank order, `local` the slice of this rank."""

    embeddings: torch.Tensor
    product_ids: torch.Tensor
    group_ids: torch.Tensor
    local: slice


def gather_products(embeddings: torch.Tensor, product_ids: torch.Tensor, group_ids: torch.Tensor) -> Gathered:
    """All-gather product embeddings with gradient kept for the local slice, plus their ids."""
    rank, size = world()
    n = embeddings.shape[0]
    if size == 1:
        return Gathered(embeddings, product_ids, group_ids, slice(0, n))
    parts = all_gather_tensor(embeddings.detach().float())
    parts[rank] = embeddings.float()
    ids = torch.cat(all_gather_tensor(product_ids))
    groups = torch.cat(all_gather_tensor(group_ids))
    return Gathered(torch.cat(parts), ids, groups, slice(rank * n, (rank + 1) * n))


def any_rank(flag: bool) -> bool:
    """True if `flag` is set on any rank (so every rank agrees to stop, never deadlocks)."""
    _, size = world()
    if size == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
