"""MoE layer time vs the dense FFN of the same ACTIVE size.

The guided MoE of `moon.model.moe` runs each token through top_k experts of width I (routed
tokens) or one designated expert (category/attribute tokens). The fair dense baseline is a
SwiGLU FFN of width top_k * I: same FLOPs per routed token. The bar (issue 3) is
MoE <= 1.5x dense. Timings are the minimum over interleaved repetitions, which is robust on
a shared machine; by default one thread, so that the ratio measures work, not scheduling.

    python -m benchmarks.perf.moe [--tokens 4096] [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from rich.console import Console
from rich.table import Table
from transformers import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

from moon.model.config import MoEConfig
from moon.model.moe import GuidedMoE, routing_scope
from moon.model.segments import Segment

SIZES = {"moon-tiny": (128, 384), "medium": (512, 1408)}
"""name -> (hidden size, expert intermediate size)"""


def _min_times(fns: list[Callable[[], None]], repeats: int) -> list[float]:
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _segments(tokens: int, guided_share: float) -> torch.Tensor:
    """Title tokens with a share of category and attribute tokens (half each)."""
    seg = torch.full((1, tokens), int(Segment.TITLE))
    n = int(tokens * guided_share / 2)
    seg[0, :n] = Segment.CATEGORY
    seg[0, n:2 * n] = Segment.ATTRIBUTE
    return seg


def bench_case(hidden: int, intermediate: int, mode: str, tokens: int, num_experts: int, top_k: int,
               repeats: int, backward: bool, guided_share: float) -> dict:
    torch.manual_seed(0)
    dense = Qwen2MLP(Qwen2Config(hidden_size=hidden, intermediate_size=intermediate * top_k))
    expert = Qwen2MLP(Qwen2Config(hidden_size=hidden, intermediate_size=intermediate))
    moe = GuidedMoE.from_dense(expert, hidden, MoEConfig(mode=mode, num_experts=num_experts, top_k=top_k,
                                                         init="fresh"), init_std=0.02)
    x = torch.randn(1, tokens, hidden, requires_grad=backward)
    segments = _segments(tokens, guided_share)

    def run(module: torch.nn.Module) -> Callable[[], None]:
        def step() -> None:
            with routing_scope(segments):
                out = module(x)
                if backward:
                    out.float().pow(2).mean().backward()
        return step

    context = torch.enable_grad() if backward else torch.inference_mode()
    with context:
        dense_s, moe_s = _min_times([run(dense), run(moe)], repeats)
    return {"hidden": hidden, "intermediate": intermediate, "mode": mode, "tokens": tokens,
            "num_experts": num_experts, "top_k": top_k, "pass": "fwd+bwd" if backward else "fwd",
            "dense_ms": dense_s * 1e3, "moe_ms": moe_s * 1e3, "ratio": moe_s / dense_s}


def run(tokens: int = 4096, repeats: int = 7, experts: int = 6, top_k: int = 2,
        guided_share: float = 0.3, sizes: Optional[dict[str, tuple[int, int]]] = None) -> dict:
    """All sizes x modes x passes; `ratio` is the worst MoE/dense ratio (the bar: <= 1.5)."""
    rows = [bench_case(h, i, mode, tokens, experts, top_k, repeats, backward, guided_share)
            for h, i in (sizes or SIZES).values()
            for mode in ("guided", "router-only")
            for backward in (False, True)]
    return {"ratio": max(r["ratio"] for r in rows),
            "meaning": "worst time of the guided/router-only MoE layer over the dense SwiGLU FFN of its "
                       "active width (top_k x expert width), forward and forward+backward; bar <= 1.5",
            "threads": torch.get_num_threads(), "tokens": tokens, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--experts", type=int, default=6)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--guided-share", type=float, default=0.3,
                        help="share of category+attribute tokens in guided mode")
    parser.add_argument("--out", type=Path, default=Path("runs/perf/moe.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = run(args.tokens, args.repeats, args.experts, args.top_k, args.guided_share)
    table = Table(title=f"MoE vs dense FFN of the active size ({args.threads} thread(s), "
                        f"{args.tokens} tokens, N={args.experts}, k={args.top_k})")
    for col in ("hidden", "intermediate", "mode", "pass", "dense ms", "MoE ms", "ratio"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(str(r["hidden"]), str(r["intermediate"]), r["mode"], r["pass"], f"{r['dense_ms']:.1f}",
                      f"{r['moe_ms']:.1f}", f"{r['ratio']:.2f}")
    Console().print(table)
    Console().print(f"worst MoE/dense ratio {result['ratio']:.2f} (bar: <= 1.5)")
    document = {"benchmark": "moe_vs_dense", "torch": torch.__version__, "machine": platform.machine(), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2))
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
