"""Which training precision a recipe's `deepspeed.precision` means on the machine at hand.

bf16 only pays where the hardware multiplies it natively. Measured on two 2-core x86 CPU machines
(torch 2.14.1, 1024x1024 matmul, 2 threads): with AMX / AVX512-BF16, 186 GFLOP/s fp32 vs 407
GFLOP/s bf16; with AVX2 only, 102 GFLOP/s fp32 vs 0.9 GFLOP/s bf16, and a moon-tiny training step
under bf16 autocast took ~10x its fp32 time. So `auto` picks bf16 autocast on CPUs with native bf16
and fp32 on the others, and bf16 weights on CUDA devices that support them; an explicit bf16 choice
is kept but warned about on a CPU that would emulate it.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "autocast-bf16"]
RequestedPrecision = Literal["auto", "fp32", "bf16", "autocast-bf16"]


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 matrix instructions (AVX512-BF16 or AMX tiles)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(requested: RequestedPrecision, use_cuda: bool) -> Precision:
    """The precision to train in: `requested`, or for `auto` the fastest one this device runs natively."""
    if requested == "auto":
        if use_cuda:
            return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
        return "autocast-bf16" if cpu_has_native_bf16() else "fp32"
    if requested != "fp32" and not use_cuda and not cpu_has_native_bf16():
        log.warning("deepspeed.precision is %s but this CPU has no native bf16 (AVX512-BF16 or AMX): its bf16 "
                    "matmuls are emulated and can run ~100x slower than fp32; precision: auto picks fp32 here",
                    requested)
    return requested


def configured_precision(ds_config: dict) -> Precision:
    """The precision a generated DeepSpeed config trains in (recorded in a run's summary.json)."""
    if ds_config.get("bf16", {}).get("enabled"):
        return "bf16"
    return "autocast-bf16" if ds_config.get("torch_autocast", {}).get("enabled") else "fp32"
