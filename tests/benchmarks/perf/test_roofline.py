"""FLOP counting on layers whose FLOPs are known in closed form."""

from __future__ import annotations

import torch

from benchmarks.perf.roofline import count_flops, matmul_peak


def test_linear_forward_is_two_flops_per_multiply_add() -> None:
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(10, 64)
    assert count_flops(lambda: layer(x)) == 2 * 10 * 64 * 32


def test_backward_adds_input_and_weight_gradients() -> None:
    layer = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(10, 64, requires_grad=True)
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 10 * 64 * 32


def test_cpu_attention_counts_as_its_two_matmuls() -> None:
    q = torch.randn(2, 4, 16, 8)
    one_matmul = count_flops(lambda: q @ q.transpose(-1, -2))
    assert one_matmul == 2 * 2 * 4 * 16 * 16 * 8
    sdpa = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert sdpa == 2 * one_matmul, "QK^T and (softmax)V; torch alone counts the CPU kernel as 0"


def test_grouped_query_attention_counts_every_query_head_and_backward() -> None:
    q = torch.randn(1, 4, 10, 8, requires_grad=True)
    kv = torch.randn(1, 2, 12, 8, requires_grad=True)
    attend = lambda: torch.nn.functional.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)  # noqa: E731
    forward = count_flops(attend)
    assert forward == 2 * 1 * 4 * 10 * 12 * (8 + 8)
    assert count_flops(lambda: attend().sum().backward()) == 3 * forward


def test_matmul_peak_reports_dtype_and_threads() -> None:
    peak = matmul_peak(torch.float32, n=64, repeats=1, min_seconds=0.01)
    assert peak["dtype"] == "float32" and peak["n"] == 64
    assert peak["threads"] == torch.get_num_threads() and peak["flops_per_second"] > 0
