import json

import numpy as np
import pytest
import torch
from transformers import (
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from moon.data.records import QueryKind, QueryRecord
from moon.model.config import ConfigError
from moon.model.encoder import MoonModel, special_token_ids, wrap_config
from moon.model.pooling import pool
from moon.model.registry import load_embedder
from moon.model.tokenizer import corpus_from_products, train_tokenizer

ATOL = 1e-5


def _stock_embeddings(model: MoonModel, inputs) -> torch.Tensor:
    """Mean-pooled last hidden states of the unmodified HF model with the same weights."""
    stock = model.adapter.model_class._from_config(model.backbone.config, attn_implementation="sdpa").eval()
    stock.load_state_dict(model.backbone.state_dict())
    mm = (inputs["input_ids"] == model.image_token_id).long()
    with torch.no_grad():
        out = stock(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"],
                    mm_token_type_ids=mm, use_cache=False)
    return torch.nn.functional.normalize(pool(out.last_hidden_state, inputs["attention_mask"],
                                                            inputs["segment_ids"], "mean"), dim=-1)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_matches_stock_hf_forward(build_model, products, family):
    dense = build_model(family, **{"moe.mode": "off"})
    inputs = dense.processor.products(products[:4])
    with torch.no_grad():
        out = dense(**inputs)
    assert out.aux_loss is None and out.stats == {}
    assert torch.allclose(out.embeddings, _stock_embeddings(dense, inputs), atol=ATOL)
    # upcycled guided MoE (renormalised top-k over copies of the FFN) starts equal to dense
    guided = build_model(family)
    with torch.no_grad():
        moe_out = guided(**inputs)
    assert torch.allclose(moe_out.embeddings, out.embeddings, atol=ATOL)
    assert moe_out.aux_loss is not None and moe_out.stats["moe/expert_counts"].shape == (2, 6)


@pytest.mark.parametrize("family, pooling", [("qwen2_vl", "mean"), ("qwen2_5_vl", "mean"),
                                             ("qwen2_vl", "bidirectional-mean"), ("qwen2_vl", "last")])
def test_padding_and_batch_invariance(build_model, products, family, pooling):
    model = build_model(family, pooling=pooling)
    items = products[:6]
    assert len({len(p.images) for p in items}) > 1
    batched = model.encode_products(items, batch_size=6, show_progress=False)
    alone = np.stack([model.encode_products([p], show_progress=False)[0] for p in items])
    assert np.abs(batched - alone).max() < ATOL
    queries = ["red mug", QueryRecord(query_id="i", kind=QueryKind.IMAGE, image=items[0].images[0], positive_id="p")]
    q_batched = model.encode_queries(queries, show_progress=False)
    q_alone = np.stack([model.encode_queries([q], show_progress=False)[0] for q in queries])
    assert np.abs(q_batched - q_alone).max() < ATOL


def test_encode_api(build_model, products):
    model = build_model(**{"projection.dim": 48, "projection.matryoshka_dims": [16, 48]})
    emb = model.encode_products(products[:3], batch_size=2, show_progress=False)
    assert emb.dtype == np.float32 and emb.shape == (3, 48) and model.embedding_dim == 48
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    as_torch = model.encode_queries(["a", "b"], output="torch", show_progress=False)
    assert isinstance(as_torch, torch.Tensor) and as_torch.shape == (2, 48)
    out = model(**model.processor.products(products[:2]))
    assert sorted(out.matryoshka) == [16, 48]
    assert torch.allclose(out.matryoshka[16].norm(dim=-1), torch.ones(2), atol=1e-5)
    cfg = model.config_dict()
    assert cfg["architecture"] == "moon" and cfg["config"]["projection"]["dim"] == 48


def test_bf16_autocast_on_cpu(build_model, products):
    fp32 = build_model()
    bf16 = build_model(compute_dtype="bfloat16")
    assert bf16.compute_dtype == torch.bfloat16 and fp32.compute_dtype == torch.float32
    a = fp32.encode_products(products[:2], show_progress=False)
    b = bf16.encode_products(products[:2], show_progress=False)
    assert b.dtype == np.float32
    assert (a * b).sum(axis=1).min() > 0.98


@pytest.mark.parametrize("autocast", [False, True])
def test_bf16_training_forward_uses_the_math_attention_kernel(build_model, products, autocast):
    """moon.model.attention_kernel: in CPU bf16 training both towers avoid the flash kernel, whose
    backward is slow on short sequences; fp32 keeps PyTorch's default (flash)."""
    from torch.profiler import ProfilerActivity, profile

    model = build_model().train()
    inputs = model.processor.products(products[:3])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(**inputs)
        out.embeddings.float().sum().backward()
    ops = {event.key for event in prof.key_averages()}
    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    assert (flash in ops) != autocast
    if autocast:
        assert "aten::_scaled_dot_product_attention_math" in ops


def test_save_load_roundtrip_is_bit_exact(build_model, products, tmp_path):
    model = build_model(**{"projection.dim": 32, "projection.matryoshka_dims": [16]})
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(**model.processor.products(products[:4]))
    (out.embeddings.sum() + out.aux_loss).backward()
    opt.step()
    model.eval()
    model.save_pretrained(tmp_path / "m")
    for name in ("model.safetensors", "moon_config.json", "backbone_config.json", "tokenizer.json", "embedder.json"):
        assert (tmp_path / "m" / name).is_file(), name
    again = load_embedder(tmp_path / "m")
    assert isinstance(again, MoonModel)
    own, loaded = model.state_dict(), again.state_dict()
    assert own.keys() == loaded.keys()
    assert all(torch.equal(own[k], loaded[k]) for k in own)
    assert np.array_equal(model.encode_products(products, show_progress=False),
                          again.encode_products(products, show_progress=False))
    assert again.config == model.config
    assert again.config_dict()["weights"] == model.config_dict()["weights"]
    assert build_model(**{"projection.dim": 32, "projection.matryoshka_dims": [16]}).config_dict()["weights"] \
        != model.config_dict()["weights"]


def test_mismatched_or_unknown_config_keys(build_model, tmp_path):
    build_model().save_pretrained(tmp_path / "m")
    spec = tmp_path / "m" / "moon_config.json"
    original = json.loads(spec.read_text())
    edited = json.loads(spec.read_text())
    edited["moe"]["num_experts"] = 4
    spec.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match=r"experts\.4.*moon_config.json edited"):
        MoonModel.from_pretrained(tmp_path / "m")
    original["moe"]["experts"] = 4
    spec.write_text(json.dumps(original))
    with pytest.raises(ConfigError, match=r"moe\.experts"):
        MoonModel.from_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="neither a saved MOON model"):
        MoonModel.from_pretrained(tmp_path)


def test_gradient_checkpointing_gives_the_same_gradients(build_model, products):
    grads = []
    for checkpointing in (False, True):
        model = build_model().train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        out = model(**model.processor.products(products[:3]))
        (out.embeddings.pow(3).sum() + out.aux_loss).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    plain, ckpt = grads
    assert plain.keys() == ckpt.keys() and any(".router." in n for n in plain)
    for name in plain:
        assert torch.allclose(plain[name], ckpt[name], atol=1e-6), name


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_zero_residual_init_starts_branches_at_zero_and_trains_them(build_model, products, family):
    model = build_model(family, **{"backbone.init": "zero-residual"}).train()
    branches = model.adapter.residual_branch_outputs(model.backbone)
    experts = model.config.moe.num_experts
    assert len(branches) == 2 * 2 + 2 * (1 + experts)  # 2 vision blocks, 2 decoder layers with MoE
    assert all(float(linear.weight.detach().abs().sum()) == 0 for linear in branches)
    inputs = model.processor.products(products[:4])
    assert not torch.allclose(*model(**inputs).embeddings[:2]), "zeroed branches must not collapse items"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    target = torch.nn.functional.normalize(torch.randn(4, model.embedding_dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    for _ in range(2):
        optimizer.zero_grad()
        (model(**inputs).embeddings * target).sum().neg().backward()
        optimizer.step()
    query = model.backbone.language_model.layers[0].self_attn.q_proj
    assert all(float(linear.weight.detach().abs().sum()) > 0 for linear in branches if linear.weight.grad is not None)
    assert query.weight.grad is not None and float(query.weight.grad.abs().sum()) > 0, \
        "after the first step the layers inside a branch must receive gradient"

    standard = build_model(family, **{"backbone.init": "standard"})
    assert all(float(linear.weight.detach().abs().sum()) > 0 for linear in standard.adapter.residual_branch_outputs(standard.backbone))


@pytest.fixture
def raw_checkpoint(tmp_path, products):
    """A tiny HF Qwen2-VL (with LM head) saved with its own processor, as downloaded ones are."""
    tokenizer = train_tokenizer(corpus_from_products(products), vocab_size=400)
    ids = special_token_ids(tokenizer)
    config = dict(
        model_type="qwen2_vl", image_token_id=ids.image, video_token_id=ids.video,
        vision_start_token_id=ids.vision_start, vision_end_token_id=ids.vision_end,
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=ids.im_end,
                         pad_token_id=ids.pad, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                                "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2))
    from transformers import Qwen2VLConfig

    torch.manual_seed(0)
    hf = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**config)).eval()
    path = tmp_path / "Qwen2-VL-tiny"
    hf.save_pretrained(path)
    Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                     video_processor=Qwen2VLVideoProcessor()).save_pretrained(path)
    return path, hf


def test_wraps_a_raw_hf_checkpoint(raw_checkpoint, products, tmp_path):
    path, hf = raw_checkpoint
    assert wrap_config(path).moe.layers == [1] and wrap_config(path).inputs.image_size == 448
    dense = MoonModel.from_pretrained(path, overrides={"moe.mode": "off", "inputs.image_size": 56}).eval()
    assert dense.backbone.config.text_config.hidden_size == 64
    hf_state = hf.model.state_dict()
    assert all(torch.equal(hf_state[k], v) for k, v in dense.backbone.state_dict().items())
    inputs = dense.processor.products(products[:3])
    with torch.no_grad():
        emb = dense(**inputs).embeddings
    assert torch.allclose(emb, _stock_embeddings(dense, inputs), atol=ATOL)
    guided = MoonModel.from_pretrained(path, overrides={"inputs.image_size": 56})
    assert guided.moe_layers == [1]
    guided.save_pretrained(tmp_path / "saved")
    again = MoonModel.from_pretrained(tmp_path / "saved")
    assert np.array_equal(guided.encode_products(products[:3], show_progress=False),
                          again.encode_products(products[:3], show_progress=False))


def test_wrong_family_for_checkpoint(raw_checkpoint):
    path, _ = raw_checkpoint
    with pytest.raises(ConfigError, match="qwen2_vl"):
        MoonModel.from_config("moon-qwen2.5-vl-3b", overrides={"backbone.checkpoint": str(path)})


def test_lowercase_backbone_embeds_case_variants_alike_after_reload(build_model, products, tmp_path):
    model = build_model(**{"backbone.lowercase": True})
    title = products[0].title.title()
    upper = products[0].model_copy(update={"title": title})
    lower = products[0].model_copy(update={"title": title.lower()})
    queries = [title, title.lower()]
    emb = model.encode_queries(queries, show_progress=False)
    assert np.abs(emb[0] - emb[1]).max() < ATOL
    prod = model.encode_products([upper, lower], show_progress=False)
    assert np.abs(prod[0] - prod[1]).max() < ATOL
    model.save_pretrained(tmp_path / "m")
    again = load_embedder(tmp_path / "m")
    assert np.abs(again.encode_queries([title.upper()], show_progress=False)[0] - emb[0]).max() < ATOL
    cased = build_model()
    cased_emb = cased.encode_queries(queries, show_progress=False)
    assert np.abs(cased_emb[0] - cased_emb[1]).max() > 1e-3
