"""moon-tiny encoder throughput against this machine's roofline.

For a fixed set of products (full view: images + core crops + title, category, attributes)
the FLOPs of the model forward are counted once (FlopCounterMode), then the forward is
timed on pre-built inputs in fp32 and under bf16 autocast, and the whole
`encode_products` call (processor + forward) in the model's own dtype (fp32 on CPU), the
three interleaved so that load bursts of a shared machine hit them alike. Achieved FLOP/s =
products/s x FLOPs/product; the headline ratio is the fp32 forward against the fp32 matmul
peak, the bf16 figures are reported next to it.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch

from moon.data.records import FULL_VIEW
from moon.data.shards import open_dataset

from benchmarks.perf.roofline import count_flops, matmul_peak
from benchmarks.perf.timing import interleaved_best


def run(ctx) -> dict:
    n, batch, repeats = (8, 8, 1) if ctx.quick else (32, 16, 2)
    products = open_dataset(ctx.dataset()).load_products("train")[:n]
    model = ctx.model().eval()
    batches = [model.processor.products(products[i:i + batch], FULL_VIEW) for i in range(0, len(products), batch)]

    def forward(autocast: bool) -> Callable[[], None]:
        def go() -> None:
            context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
            with torch.inference_mode(), context:
                for inputs in batches:
                    model(**inputs)
        return go

    flops = count_flops(forward(False))
    per_product = flops / len(products)
    peaks = {name: matmul_peak(dtype, n=1024 if ctx.quick else 2048, repeats=2 if ctx.quick else 4)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    seconds = interleaved_best({
        "forward_fp32": forward(False), "forward_bf16": forward(True),
        "encode_products_fp32": lambda: model.encode_products(products, batch_size=batch, show_progress=False)},
        repeats)
    rates = {name: len(products) / s for name, s in seconds.items()}
    fractions = {
        "forward_fp32_vs_fp32_peak": rates["forward_fp32"] * per_product / peaks["fp32"]["flops_per_second"],
        "forward_bf16_vs_bf16_peak": rates["forward_bf16"] * per_product / peaks["bf16"]["flops_per_second"],
        "encode_products_fp32_vs_fp32_peak":
            rates["encode_products_fp32"] * per_product / peaks["fp32"]["flops_per_second"],
    }
    return {"ratio": fractions["forward_fp32_vs_fp32_peak"],
            "meaning": "moon-tiny forward FLOP/s (fp32) / measured fp32 matmul peak",
            "products": len(products), "batch_size": batch, "flops_per_product": per_product,
            "parameters": sum(p.numel() for p in model.parameters()),
            "peak_flops_per_second": {k: v["flops_per_second"] for k, v in peaks.items()},
            "products_per_second": rates, "fraction_of_peak": fractions,
            "roofline_products_per_second": {k: v["flops_per_second"] / per_product for k, v in peaks.items()}}
