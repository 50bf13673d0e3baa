import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2VLConfig
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as q25
from transformers.models.qwen2_vl import modeling_qwen2_vl as q2

from moon.model.vision_fast import BatchedVisionAttention, LinearPatchEmbed


def _vision_config(family: str):
    if family == "qwen2_vl":
        cfg = Qwen2VLConfig(vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=4, mlp_ratio=2))
        return cfg.vision_config, q2.VisionAttention, q2.apply_rotary_pos_emb_vision, q2.Qwen2VLVisionRotaryEmbedding
    cfg = Qwen2_5_VLConfig(vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=4,
                                               out_hidden_size=32))
    return (cfg.vision_config, q25.Qwen2_5_VLVisionAttention, q25.apply_rotary_pos_emb_vision,
            q25.Qwen2_5_VLVisionRotaryEmbedding)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("lengths", [[16, 16, 16], [16, 4, 16, 9]])
def test_batched_attention_equals_stock(family, lengths):
    config, attention_cls, rotary_fn, rope_cls = _vision_config(family)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    stock = attention_cls(config).eval()
    fast = BatchedVisionAttention(stock, rotary_fn)
    n = sum(lengths)
    x = torch.randn(n, 32)
    cu = torch.tensor([0] + lengths).cumsum(0).to(torch.int32)
    rope = rope_cls(config)
    pos = torch.stack([torch.arange(n) % 4, torch.arange(n) // 4], dim=1)
    emb = rope(x, pos)
    with torch.no_grad():
        assert torch.allclose(fast(x, cu_seqlens=cu, position_embeddings=emb),
                              stock(x, cu_seqlens=cu, position_embeddings=emb), atol=1e-6)
    assert set(dict(fast.named_parameters())) == set(dict(stock.named_parameters()))


def test_linear_patch_embed_equals_conv():
    torch.manual_seed(0)
    stock = q2.PatchEmbed(patch_size=14, temporal_patch_size=2, in_channels=3, embed_dim=24)
    fast = LinearPatchEmbed(stock)
    x = torch.randn(10, 3 * 2 * 14 * 14)
    with torch.no_grad():
        assert torch.allclose(fast(x), stock(x), atol=1e-5)
    assert list(dict(fast.named_parameters())) == ["proj.weight"]


def test_vision_position_ids_match_transformers():
    from transformers.vision_utils import get_vision_position_ids

    from moon.model.vision_fast import vision_position_ids

    grid = torch.tensor([[1, 8, 8], [1, 4, 6], [1, 8, 8], [2, 4, 4]])
    assert torch.equal(vision_position_ids(grid, 2), get_vision_position_ids(grid, 2))
