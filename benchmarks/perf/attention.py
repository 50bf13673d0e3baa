"""Attention kernel choice for CPU bf16 training: PyTorch's default vs `short_sequence_attention`.

Forward + backward of one SDPA call at the shapes moon-tiny and the open_clip baseline train
with (vision chunks of 16 patches, ~80-token LLM sequences, 50-token ViT sequences) and at one
long sequence where the default must be kept. `ratio` is the worst default / chosen time over the
short shapes (> 1 means the choice is faster); the long row shows the choice leaves it alone.

    python -m benchmarks.perf.attention [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from benchmarks.perf.timing import interleaved_best
from moon.model.attention_kernel import short_sequence_attention

SHAPES = {"moon-tiny vision chunks": (384, 4, 16, 32), "moon-tiny LLM": (48, 4, 80, 32),
          "open_clip ViT": (112, 4, 50, 64), "long (kept on default)": (2, 4, 1024, 32)}
"""name -> (batch, heads, length, head dim)"""


def bench_shape(batch: int, heads: int, length: int, dim: int, repeats: int) -> dict:
    q, k, v = (torch.randn(batch, heads, length, dim, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))

    def step(chosen: bool):
        def run() -> None:
            context = short_sequence_attention(q, length) if chosen else torch.enable_grad()
            with context:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            out.float().sum().backward()
        return run

    best = interleaved_best({"default": step(False), "chosen": step(True)}, repeats)
    return {"shape": [batch, heads, length, dim], "default_ms": best["default"] * 1e3,
            "chosen_ms": best["chosen"] * 1e3, "speedup": best["default"] / best["chosen"]}


def run(repeats: int = 3, shapes: dict[str, tuple[int, int, int, int]] = SHAPES) -> dict:
    rows = [dict(bench_shape(*shape, repeats=repeats), name=name) for name, shape in shapes.items()]
    short = [r for r in rows if r["shape"][2] <= 256]
    return {"ratio": min(r["speedup"] for r in short) if short else float("nan"),
            "meaning": "default SDPA kernel time / short_sequence_attention's kernel time, bf16 forward+backward "
                       "(worst short shape; > 1 means faster)", "rows": rows}


def bench(ctx) -> dict:
    """Suite entry: the quick mode drops the long shape."""
    shapes = {k: v for k, v in SHAPES.items() if not ctx.quick or v[2] <= 256}
    return {**run(repeats=2 if ctx.quick else 3, shapes=shapes), "threads": ctx.threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = run(args.repeats)
    table = Table(title=f"SDPA bf16 forward+backward, {args.threads} thread(s)")
    for col in ("shape", "B x H x T x D", "default ms", "chosen ms", "speedup"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(r["name"], " x ".join(map(str, r["shape"])), f"{r['default_ms']:.1f}", f"{r['chosen_ms']:.1f}",
                      f"{r['speedup']:.2f}")
    Console().print(table)
    Console().print(f"worst short-shape speedup {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
