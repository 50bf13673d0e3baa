from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from moon.model.attention_kernel import MATH_KERNEL_MAX_LENGTH, compute_dtype_of, short_sequence_attention

FLASH_CPU_OP = "aten::_scaled_dot_product_flash_attention_for_cpu"


def attention_ops(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


def attend(dtype: torch.dtype, length: int, autocast: bool = False, grad: bool = True) -> set[str]:
    """Forward + backward of one SDPA call under `short_sequence_attention`; the ops it ran."""
    q, k, v = (torch.randn(2, 2, length, 16, dtype=dtype, requires_grad=grad) for _ in range(3))

    def run() -> None:
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            reference = q @ q.transpose(-1, -2)  # an activation of "the model": bf16 under autocast
            with short_sequence_attention(reference, length):
                out = F.scaled_dot_product_attention(q.to(reference.dtype), k.to(reference.dtype),
                                                     v.to(reference.dtype), is_causal=True)
        if grad:
            out.float().sum().backward()

    return attention_ops(run)


@pytest.mark.parametrize("case", [
    dict(dtype=torch.bfloat16, length=16),
    dict(dtype=torch.float32, length=16, autocast=True),
    dict(dtype=torch.bfloat16, length=MATH_KERNEL_MAX_LENGTH),
])
def test_short_bf16_training_attention_avoids_the_slow_flash_backward(case):
    ops = attend(**case)
    assert FLASH_CPU_OP not in ops and "aten::_scaled_dot_product_attention_math" in ops


@pytest.mark.parametrize("case", [
    dict(dtype=torch.float32, length=16),                                 # fp32: flash is as fast
    dict(dtype=torch.bfloat16, length=16, grad=False),                    # no backward to pay for
    dict(dtype=torch.bfloat16, length=MATH_KERNEL_MAX_LENGTH + 8),        # long: flash wins, math is O(T^2) memory
])
def test_other_attention_keeps_the_default_kernel(case):
    assert FLASH_CPU_OP in attend(**case)


def test_compute_dtype_follows_autocast():
    x = torch.zeros(2)
    assert compute_dtype_of(x) == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert compute_dtype_of(x) == torch.bfloat16
    assert compute_dtype_of(x.bfloat16()) == torch.bfloat16


def test_kernel_choice_is_restored_after_the_block():
    with short_sequence_attention(torch.zeros(1, dtype=torch.bfloat16, requires_grad=True), 8):
        pass
    assert FLASH_CPU_OP in attend(torch.bfloat16, 16, grad=False)
