"""The compute roofline of this machine and the FLOPs of a model, both measured, not assumed.

Peak: the best FLOP/s of a large square matmul (2 n^3 FLOPs) in fp32 and in bf16, on the
threads the benchmark uses. That is the most a dense model could reach here, so
"achieved FLOP/s / peak" says how much of the machine an encoder uses.

FLOPs: counted by torch's FlopCounterMode over a real forward (matmuls, convolutions and
attention kernels; elementwise ops are not counted, as is usual for rooflines). torch's
counter has no formula for the CPU attention kernel (`_scaled_dot_product_flash_attention_for_cpu`,
which every SDPA call on CPU runs) and would count it as zero, so it is added here, also for
grouped-query attention (fewer key/value heads than query heads).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def _attention_flops(query_shape, key_shape, value_shape) -> int:
    """QK^T and PV: 2 * batch * query heads * s_q * s_k * (d_qk + d_v)."""
    batch, heads, s_q, d_qk = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * s_q * s_k * (d_qk + d_v)


def _cpu_attention(query, key, value, *args, out_val=None, **kwargs) -> int:
    return _attention_flops(query, key, value)


def _cpu_attention_backward(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    """Gradients of V, of the scores, of Q and of K: four matmuls, twice the forward."""
    return 2 * _attention_flops(query, key, value)


CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything `fn` runs (forward, or forward + backward if it calls backward)."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5, min_seconds: float = 0.5) -> dict:
    """Best FLOP/s of an n x n @ n x n matmul in `dtype` (each repeat at least `min_seconds`)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    torch.mm(a, b)
    best = 0.0
    with torch.inference_mode():
        for _ in range(repeats):
            calls, start = 0, time.perf_counter()
            while True:
                torch.mm(a, b)
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            best = max(best, 2.0 * n ** 3 * calls / elapsed)
    return {"dtype": str(dtype).removeprefix("torch."), "n": n, "flops_per_second": best,
            "threads": torch.get_num_threads()}
