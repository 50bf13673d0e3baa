"""Gradient cache: contrastive loss over a large batch with the memory of one chunk.

The InfoNCE loss couples every query with every product, so its batch cannot simply be
split into independent micro-batches without losing negatives. The gradient cache
(Gao et al., 2021) splits only the *encoder* work:

1. embed every chunk without an autograd graph;
2. compute the loss on the full set of embeddings (leaf tensors) and back-propagate it,
   which yields d loss / d embedding for every row (and the temperature's gradient);
3. re-embed chunk by chunk with a graph and back-propagate `<embedding, cached grad>`,
   which adds exactly that chunk's share of the parameter gradients.

Every forward and backward goes through the DeepSpeed engine (ZeRO hooks, autocast),
with `managed_gradient_accumulation: false` so the many backward calls accumulate until
the single `engine.step()`. RNG states are replayed so dropout masks match between the
two passes. The MoE auxiliary loss is taken per chunk, weighted by chunk size: for a
balance loss that is the mean over chunks, not the loss of the whole batch.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch

from moon.model.base import move_inputs
from moon.train.objective import BatchMeta, GroupSpec


class RngState:
    """The CPU (and CUDA, when in use) RNG state at one point, to replay a forward."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    @contextmanager
    def replay(self) -> Iterator[None]:
        devices = list(range(len(self.cuda))) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


def gradcache_step(engine, groups: dict[str, GroupSpec], meta: BatchMeta, chunk_size: int, device: torch.device,
                   loss_scale: float, aux_weight: float,
                   guard: Optional[Callable[[torch.Tensor], None]] = None) -> dict[str, torch.Tensor]:
    """Forward + backward of one micro-batch by chunks; gradients accumulate in the engine.

    `loss_scale` multiplies the loss (1 / gradient-accumulation steps); `guard` sees the
    loss before any backward (the trainer stops there on NaN/inf). Returns the stats.
    """
    chunks: dict[str, list[tuple[dict[str, torch.Tensor], RngState, int]]] = {}
    leaves: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, (records, make_inputs) in groups.items():
            parts, chunks[name] = [], []
            for start in range(0, len(records), chunk_size):
                piece = records[start:start + chunk_size]
                inputs = move_inputs(make_inputs(piece), device)
                state = RngState()
                emb, _ = engine(op="embed", inputs=inputs)
                parts.append(emb.float())
                chunks[name].append((inputs, state, len(piece)))
            leaves[name] = torch.cat(parts).detach().requires_grad_(True)
    loss, stats = engine(op="loss", embeddings=leaves, meta=meta)
    if guard is not None:
        guard(loss)
    engine.backward(loss * loss_scale, scale_wrt_gas=False)
    aux_total = torch.zeros(())
    for name, pieces in chunks.items():
        grad = leaves[name].grad
        if grad is None:
            continue  # a group the loss did not use contributes no gradient
        total = leaves[name].shape[0]
        offset = 0
        for inputs, state, n in pieces:
            with state.replay():
                emb, aux = engine(op="embed", inputs=inputs)
            share = n / total
            surrogate = (emb.float() * grad[offset:offset + n]).sum() + aux_weight * loss_scale * share * aux
            engine.backward(surrogate, scale_wrt_gas=False)
            aux_total = aux_total + share * aux.detach().cpu()
            offset += n
    stats["aux"] = aux_total
    return stats
