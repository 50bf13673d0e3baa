import pytest
import torch
from torch import nn
from transformers import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

from moon.model.config import MoEConfig
from moon.model.moe import GuidedMoE, install_moe, load_balancing_loss, routing_scope
from moon.model.segments import Segment

H, I = 16, 24


def _dense(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Qwen2MLP(Qwen2Config(hidden_size=H, intermediate_size=I))


def _moe(mode: str = "guided", init: str = "fresh", **kw) -> GuidedMoE:
    torch.manual_seed(1)
    return GuidedMoE.from_dense(_dense(), H, MoEConfig(mode=mode, init=init, num_experts=6, top_k=2, **kw), 0.2)


def _segments() -> torch.Tensor:
    """2 x 12 tokens: image, title, category, attribute, special and padding tokens."""
    S = Segment
    row0 = [S.SPECIAL, S.IMAGE, S.IMAGE, S.CROP, S.TITLE, S.TITLE, S.CATEGORY, S.CATEGORY, S.ATTRIBUTE,
            S.ATTRIBUTE, S.ATTRIBUTE, S.SPECIAL]
    row1 = [S.SPECIAL, S.QUERY, S.QUERY, S.CATEGORY, S.ATTRIBUTE, S.SPECIAL] + [S.PAD] * 6
    return torch.tensor([[int(s) for s in row0], [int(s) for s in row1]])


def test_routing_guidance():
    moe = _moe()
    seg = _segments()
    x = torch.randn(2, 12, H)
    seen: dict[int, torch.Tensor] = {}
    for e, expert in enumerate(moe.experts):
        expert.register_forward_hook(lambda mod, inp, out, e=e: seen.__setitem__(e, inp[0].detach().clone()))
    with routing_scope(seg) as state:
        out = moe(x)
    flat_x, flat_seg = x.reshape(-1, H), seg.reshape(-1)
    cate, attr = flat_seg == Segment.CATEGORY, flat_seg == Segment.ATTRIBUTE
    general = (flat_seg != Segment.PAD) & ~cate & ~attr
    assert torch.equal(seen[moe.cate_expert], flat_x[cate])
    assert torch.equal(seen[moe.attr_expert], flat_x[attr])
    routed_rows = torch.cat([seen[e] for e in range(moe.num_routed)])
    general_rows = flat_x[general]
    # every general token reaches exactly top_k general experts, and nothing else does
    assert routed_rows.shape[0] == general_rows.shape[0] * moe.top_k
    for row in general_rows:
        assert int((routed_rows == row).all(dim=1).sum()) == moe.top_k
    counts = state.counts[0]
    assert counts[moe.cate_expert] == int(cate.sum()) and counts[moe.attr_expert] == int(attr.sum())
    assert int(counts[:moe.num_routed].sum()) == int(general.sum()) * moe.top_k
    assert torch.equal(out[1, 6:], torch.zeros(6, H))  # padding is not computed


def test_router_only_routes_everything():
    moe = _moe("router-only")
    seg = _segments()
    with routing_scope(seg) as state:
        moe(torch.randn(2, 12, H))
    assert int(state.counts[0].sum()) == int((seg != Segment.PAD).sum()) * 2
    assert moe.router.out_features == 6
    moe(torch.randn(1, 5, H))  # without segment ids every token is routed


def test_guided_without_segment_ids_is_an_error():
    with pytest.raises(RuntimeError, match="segment ids"):
        _moe()(torch.randn(1, 4, H))


def test_gradients_reach_every_expert_and_the_router():
    moe = _moe()
    x = torch.randn(2, 12, H, requires_grad=True)
    with routing_scope(_segments()) as state:
        out = moe(x)
    (out.pow(2).mean() + state.aux_loss(0.01, 0.001)).backward()
    for e, expert in enumerate(moe.experts):
        for name, p in expert.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"expert {e} {name} got no gradient"
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0


def test_upcycled_moe_equals_dense_at_init():
    dense = _dense()
    moe = GuidedMoE.from_dense(dense, H, MoEConfig(num_experts=6, top_k=2), 0.2)
    x = torch.randn(2, 12, H)
    seg = _segments()
    with routing_scope(seg):
        out = moe(x)
    valid = (seg != Segment.PAD).unsqueeze(-1)
    assert torch.allclose(out, dense(x) * valid, atol=1e-6)
    # an upcycled router still learns from the balance loss
    with routing_scope(seg) as state:
        moe(x)
    state.aux_loss(1.0, 0.0).backward()
    assert moe.router.weight.grad.abs().sum() > 0


def test_balance_loss_is_minimal_for_uniform_routing():
    n, tokens, k = 4, 64, 2
    uniform = torch.full((tokens, n), 1.0 / n)
    chosen = torch.arange(tokens * k).remainder(n).view(tokens, k)
    assert load_balancing_loss(uniform, chosen, n).item() == pytest.approx(1.0)
    gen = torch.Generator().manual_seed(0)
    for scale in (0.5, 2.0, 8.0):
        probs = (torch.randn(tokens, n, generator=gen) * scale).softmax(-1)
        assert load_balancing_loss(probs, probs.topk(k).indices, n).item() >= 1.0 - 1e-6
    skewed = torch.tensor([[0.97, 0.01, 0.01, 0.01]]).expand(tokens, n)
    collapsed = load_balancing_loss(skewed, skewed.topk(k).indices, n).item()
    assert collapsed > 1.5


def test_install_moe_checks_layers():
    layers = nn.ModuleList([nn.Module() for _ in range(3)])
    for layer in layers:
        layer.mlp = _dense()
    with pytest.raises(ValueError, match="out of range"):
        install_moe(layers, MoEConfig(layers=[0, 3]), H, 0.02)
    assert install_moe(layers, MoEConfig(layers=[1]), H, 0.02) == [1]
    assert isinstance(layers[1].mlp, GuidedMoE) and not isinstance(layers[0].mlp, GuidedMoE)
    assert install_moe(layers, MoEConfig(mode="off"), H, 0.02) == []


def test_concurrent_forwards_see_their_own_segment_ids():
    """Routing state is per thread (a ContextVar), not an attribute of the shared module."""
    import threading

    moe = _moe()
    x = torch.randn(2, 12, H)
    seg_a = _segments()
    seg_b = torch.full_like(seg_a, int(Segment.CATEGORY))
    expected = {}
    for name, seg in (("a", seg_a), ("b", seg_b)):
        with routing_scope(seg) as state:
            expected[name] = (moe(x), state.counts[0])
    barrier = threading.Barrier(2)
    results = {}

    def run(name: str, seg: torch.Tensor) -> None:
        with routing_scope(seg) as state:
            barrier.wait()
            results[name] = (moe(x), state.counts[0])

    threads = [threading.Thread(target=run, args=args) for args in (("a", seg_a), ("b", seg_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("a", "b"):
        assert torch.allclose(results[name][0], expected[name][0], atol=1e-6)
        assert torch.equal(results[name][1], expected[name][1])
    assert results["b"][1][moe.cate_expert] == 24
