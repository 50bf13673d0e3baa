import json

import numpy as np
import torch

from moon.model.encoder import MoonModel

LORA = {"lora.enabled": True, "lora.r": 4}


def test_lora_trains_only_adapters_and_starts_at_the_base(build_model, products):
    base = build_model()
    lora = build_model(**LORA)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert any("language_model" in n and "lora_A" in n for n in trainable)
    assert any("visual" in n and "lora_B" in n for n in trainable)
    assert any(".router." in n for n in trainable)
    assert all("lora_" in n or ".router." in n or n.startswith("head.") for n in trainable)
    assert not lora.backbone.get_input_embeddings().weight.requires_grad
    inputs = base.processor.products(products[:3])
    with torch.no_grad():
        assert torch.allclose(base(**inputs).embeddings, lora(**inputs).embeddings, atol=1e-6)
    off = build_model(**{"lora.enabled": False})
    assert all(p.requires_grad for p in off.parameters())


def _train_step(model: MoonModel, products) -> None:
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    out = model(**model.processor.products(products[:4]))
    out.embeddings[:, :8].sum().backward()
    opt.step()
    model.eval()


def test_lora_save_unmerged_and_merged(build_model, products, tmp_path):
    products = products[:4]
    model = build_model(**LORA)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = model.encode_products(products, show_progress=False)
    _train_step(model, products)
    after = model.encode_products(products, show_progress=False)
    assert np.abs(after - before).max() > 1e-4
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if n in frozen)

    model.save_pretrained(tmp_path / "adapters")
    reloaded = MoonModel.from_pretrained(tmp_path / "adapters")
    assert np.array_equal(reloaded.encode_products(products, show_progress=False), after)

    model.save_pretrained(tmp_path / "merged", merge_lora=True)
    saved = json.loads((tmp_path / "merged" / "moon_config.json").read_text())
    assert saved["lora"]["enabled"] is False
    merged = MoonModel.from_pretrained(tmp_path / "merged")
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert np.abs(merged.encode_products(products, show_progress=False) - after).max() < 1e-5
    assert model.config.lora.enabled  # the live model keeps its adapters


def test_lora_on_top_of_a_saved_plain_model(build_model, products, tmp_path):
    plain = build_model()
    plain.save_pretrained(tmp_path / "plain")
    model = MoonModel.from_pretrained(tmp_path / "plain", overrides=LORA)
    assert model.config.lora.enabled and any("lora_A" in n for n, _ in model.named_parameters())
    assert np.abs(model.encode_products(products[:2], show_progress=False)
                  - plain.encode_products(products[:2], show_progress=False)).max() < 1e-6
