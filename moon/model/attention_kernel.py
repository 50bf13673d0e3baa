"""Which scaled-dot-product-attention kernel to use for short sequences in CPU bf16 training.

PyTorch's CPU flash-attention kernel is its default for bf16, but its backward pass is slow on
short sequences. Measured on the 2-core CI machine (torch 2.14, bf16, forward + backward,
head dim 32): 16-token image chunks 54 ms flash vs 10 ms math, 80-token texts 27 vs 11 ms,
192 tokens 27 vs 22 ms, 256 tokens 22 vs 33 ms. In the fashion-cpu recipe attention backward
was 30% of the step. `short_sequence_attention` selects the math kernel exactly where it wins:
on CPU, in bf16 (weights or autocast), with autograd recording, for sequences up to
`MATH_KERNEL_MAX_LENGTH` tokens. Everywhere else (GPU, fp32, inference, long sequences) the
default kernel choice is left alone: the math kernel materialises the [length, length] scores,
and the flash kernel wins without a backward pass. Under activation checkpointing the layers
replayed during backward run outside this context and use the default kernel: slower, same result.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

MATH_KERNEL_MAX_LENGTH = 192
"""Longest sequence that gets the math kernel (the crossover measured above lies between 192 and 256)."""


def compute_dtype_of(tensor: torch.Tensor) -> torch.dtype:
    """The dtype matrix products on `tensor` run in: the autocast dtype when autocast is on for
    its device, else the tensor's own dtype."""
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


def short_sequence_attention(reference: torch.Tensor, length: int) -> ContextManager[None]:
    """Context for SDPA calls on sequences of `length` tokens computed from `reference`
    (any activation of the same forward: it gives the device and dtype)."""
    if (reference.device.type == "cpu" and torch.is_grad_enabled() and length <= MATH_KERNEL_MAX_LENGTH
            and compute_dtype_of(reference) == torch.bfloat16):
        return sdpa_kernel([SDPBackend.MATH])
    return nullcontext()
