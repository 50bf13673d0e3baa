"""Guided Mixture-of-Experts: MOON's replacement for the FFN of selected LLM layers.

`guided` mode has N experts: N-2 general experts chosen per token by a learned top-k router,
plus FFN_cate and FFN_attr that receive every category / attribute token (the guidance comes
from the processor's segment ids, not from the router). `router-only` routes all tokens over
all N experts (the ablation without guidance, same parameter count).

Dispatch groups tokens per expert (one argsort, then index_select / index_add_ per expert),
so the cost is a loop over experts, never over tokens. Every expert is called on every
forward, with an empty batch if no token chose it, so data-parallel wrappers (DDP, ZeRO-3
parameter gathering) see the same modules used on every rank. Padding tokens are not
computed (their FFN output is 0; attention never reads them and pooling skips them).

Segment ids reach the layers through a `contextvars.ContextVar` set by `routing_scope` around
the language-model call: nothing is stored on the modules, so concurrent forwards in
different threads (nn.DataParallel replicas, serving threads) cannot see each other's ids.
`checkpoint_context` re-enters the same ids when activation checkpointing replays a layer
during backward.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from moon.model.config import MoEConfig
from moon.model.segments import Segment


class RoutingState:
    """Inputs and collected outputs of the MoE layers for one forward pass."""

    def __init__(self, segment_ids: Optional[torch.Tensor], collect: bool = True):
        self.segment_ids = None if segment_ids is None else segment_ids.reshape(-1)
        self.collect = collect
        self.balance: list[torch.Tensor] = []
        self.z: list[torch.Tensor] = []
        self.counts: list[torch.Tensor] = []

    def record(self, balance: torch.Tensor, z: torch.Tensor, counts: torch.Tensor) -> None:
        if self.collect:
            self.balance.append(balance)
            self.z.append(z)
            self.counts.append(counts.detach())

    def aux_loss(self, balance_weight: float, z_weight: float) -> Optional[torch.Tensor]:
        """Weighted mean over MoE layers; None when no MoE layer ran."""
        if not self.balance:
            return None
        return balance_weight * torch.stack(self.balance).mean() + z_weight * torch.stack(self.z).mean()

    def stats(self) -> dict[str, torch.Tensor]:
        if not self.counts:
            return {}
        return {"moe/expert_counts": torch.stack(self.counts),
                "moe/balance_loss": torch.stack(self.balance).detach().mean(),
                "moe/z_loss": torch.stack(self.z).detach().mean()}


_ROUTING: ContextVar[Optional[RoutingState]] = ContextVar("moon_moe_routing", default=None)


@contextmanager
def routing_scope(segment_ids: Optional[torch.Tensor]) -> Iterator[RoutingState]:
    """Make `segment_ids` ([B, T], matching the hidden states) visible to MoE layers."""
    state = RoutingState(segment_ids)
    token = _ROUTING.set(state)
    try:
        yield state
    finally:
        _ROUTING.reset(token)


@contextmanager
def _replay_scope(state: Optional[RoutingState]) -> Iterator[None]:
    token = _ROUTING.set(state)
    try:
        yield
    finally:
        _ROUTING.reset(token)


def checkpoint_context():
    """`context_fn` for non-reentrant torch.utils.checkpoint: replays see the same segment ids
    (and their losses are not collected twice)."""
    state = _ROUTING.get()
    replay = None if state is None else RoutingState(state.segment_ids, collect=False)
    return nullcontext(), _replay_scope(replay)


def load_balancing_loss(probs: torch.Tensor, chosen: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Switch/GShard balance loss N * sum_i f_i * P_i over routed tokens.

    `probs` [R, N] router probabilities, `chosen` [R, k] selected experts. f_i is the share of
    assignments that went to expert i, P_i its mean probability; the value is 1.0 for uniform
    routing, which is its minimum, and grows as routing concentrates.
    """
    if probs.shape[0] == 0:
        return probs.sum() * 0.0
    share = torch.bincount(chosen.reshape(-1), minlength=num_experts).to(probs.dtype) / chosen.numel()
    return num_experts * torch.sum(share * probs.mean(0))


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE z-loss: mean squared log-partition; keeps router logits small."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


def _reinit(module: nn.Module, std: float) -> None:
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)


class GuidedMoE(nn.Module):
    """N experts with the dense FFN's interface: [B, T, H] -> [B, T, H]."""

    def __init__(self, experts: list[nn.Module], hidden_size: int, config: MoEConfig, init_std: float):
        super().__init__()
        if config.mode == "off":
            raise ValueError("GuidedMoE needs moe.mode 'guided' or 'router-only'")
        if len(experts) != config.num_experts:
            raise ValueError(f"expected {config.num_experts} experts, got {len(experts)}")
        self.guided = config.mode == "guided"
        self.num_experts = config.num_experts
        self.num_routed = config.routed_experts
        self.top_k = config.top_k
        self.renormalize = config.renormalize
        self.experts = nn.ModuleList(experts)
        self.router = nn.Linear(hidden_size, self.num_routed, bias=False)
        nn.init.normal_(self.router.weight, std=init_std)

    @classmethod
    def from_dense(cls, dense: nn.Module, hidden_size: int, config: MoEConfig, init_std: float) -> "GuidedMoE":
        """Upcycle (every expert a copy of the dense FFN) or fresh (same shapes, new weights)."""
        experts = [copy.deepcopy(dense) for _ in range(config.num_experts)]
        if config.init == "fresh":
            for expert in experts:
                _reinit(expert, init_std)
        return cls(experts, hidden_size, config, init_std)

    @property
    def cate_expert(self) -> int:
        return self.num_experts - 2

    @property
    def attr_expert(self) -> int:
        return self.num_experts - 1

    def _route(self, x: torch.Tensor, routed: torch.Tensor) -> "Assignment":
        """Top-k over the routed experts for the tokens in `routed` (fp32 router, no autocast)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = F.linear(x.index_select(0, routed).float(), self.router.weight.float())
            probs = logits.softmax(dim=-1)
            gates, chosen = probs.topk(self.top_k, dim=-1)
            if self.renormalize:
                gates = gates / gates.sum(dim=-1, keepdim=True)
            balance = load_balancing_loss(probs, chosen, self.num_routed)
            z = router_z_loss(logits)
        return Assignment(routed=routed, chosen=chosen, gates=gates, forced=routed[:0],
                          forced_experts=routed[:0], balance=balance, z=z)

    def assign(self, x: torch.Tensor, segment_ids: Optional[torch.Tensor]) -> "Assignment":
        """Which experts see which tokens: routed tokens (top-k, gated) and, in guided mode,
        category/attribute tokens forced to FFN_cate/FFN_attr with gate 1. Pads get none."""
        if segment_ids is None:
            return self._route(x, torch.arange(x.shape[0], device=x.device))
        valid = segment_ids != Segment.PAD
        if not self.guided:
            return self._route(x, valid.nonzero().squeeze(1))
        is_cate = segment_ids == Segment.CATEGORY
        is_attr = segment_ids == Segment.ATTRIBUTE
        result = self._route(x, (valid & ~is_cate & ~is_attr).nonzero().squeeze(1))
        cate, attr = is_cate.nonzero().squeeze(1), is_attr.nonzero().squeeze(1)
        result.forced = torch.cat([cate, attr])
        result.forced_experts = torch.cat([torch.full_like(cate, self.cate_expert),
                                           torch.full_like(attr, self.attr_expert)])
        return result

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, shape[-1])
        state = _ROUTING.get()
        segment_ids = None if state is None else state.segment_ids
        if segment_ids is None and self.guided:
            raise RuntimeError("guided MoE needs segment ids: run it through MoonModel.forward "
                               "or inside moon.model.moe.routing_scope(segment_ids)")
        if segment_ids is not None and segment_ids.numel() != x.shape[0]:
            raise RuntimeError(f"segment ids cover {segment_ids.numel()} tokens, hidden states {x.shape[0]}")
        if segment_ids is not None:
            segment_ids = segment_ids.to(x.device)
        assignment = self.assign(x, segment_ids)
        experts = torch.cat([assignment.chosen.reshape(-1), assignment.forced_experts])
        counts = torch.bincount(experts, minlength=self.num_experts)
        if state is not None:
            state.record(assignment.balance, assignment.z, counts)
        return self.dispatch(x, assignment, experts, counts).view(shape)

    def dispatch(self, x: torch.Tensor, assignment: "Assignment", experts: torch.Tensor,
                 counts: torch.Tensor) -> torch.Tensor:
        """Group assignments by expert (one sort, one gather), run each expert once on its
        contiguous block, un-sort, and combine the k outputs of each routed token.

        Un-sorting and summing the k gated outputs avoids `index_add_` with repeated indices,
        which is several times slower than gathers on CPU.
        """
        a = assignment
        k = a.chosen.shape[1]
        tokens = torch.cat([a.routed.repeat_interleave(k), a.forced])
        order = torch.argsort(experts, stable=True)
        blocks = x.index_select(0, tokens[order]).split(counts.tolist())
        sorted_out = torch.cat([expert(block) for expert, block in zip(self.experts, blocks)])
        outputs = torch.empty_like(sorted_out)
        outputs[order] = sorted_out
        n_routed, width = a.routed.shape[0], outputs.shape[-1]
        per_choice = outputs[:n_routed * k].view(n_routed, k, width)
        routed_out = (per_choice * a.gates.unsqueeze(-1).to(outputs.dtype)).sum(1)
        out = torch.zeros_like(x)
        out[a.routed] = routed_out.to(out.dtype)
        out[a.forced] = outputs[n_routed * k:].to(out.dtype)
        return out


@dataclass
class Assignment:
    """Token-to-expert assignment of one MoE call (indices are rows of the flattened batch)."""

    routed: torch.Tensor
    """[R] tokens chosen by the router"""
    chosen: torch.Tensor
    """[R, k] their experts (indices among the routed experts, which come first)"""
    gates: torch.Tensor
    """[R, k] float32 gate weights"""
    forced: torch.Tensor
    """[F] tokens sent to a designated expert (guided mode)"""
    forced_experts: torch.Tensor
    """[F] that expert (FFN_cate or FFN_attr)"""
    balance: torch.Tensor
    z: torch.Tensor


def install_moe(layers: nn.ModuleList, config: MoEConfig, hidden_size: int, init_std: float) -> list[int]:
    """Replace `layer.mlp` of the configured layers by GuidedMoE; returns the layer indices."""
    if config.mode == "off":
        return []
    n = len(layers)
    chosen = list(range(n)) if config.layers == "all" else list(config.layers)
    bad = [i for i in chosen if not 0 <= i < n]
    if bad:
        raise ValueError(f"moe.layers {bad} out of range: the LLM has {n} layers (0..{n - 1})")
    for i in chosen:
        dense = layers[i].mlp
        if isinstance(dense, GuidedMoE):
            raise ValueError(f"layer {i} already has a GuidedMoE")
        layers[i].mlp = GuidedMoE.from_dense(dense, hidden_size, config, init_std)
    return chosen


def moe_modules(model: nn.Module) -> list[GuidedMoE]:
    return [m for m in model.modules() if isinstance(m, GuidedMoE)]
