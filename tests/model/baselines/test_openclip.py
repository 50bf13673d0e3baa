from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from moon.data.records import FULL_VIEW, IMAGE_VIEW, ProductView, QueryKind, QueryRecord
from moon.model.baselines.clip_tokenizer import OpenAIBpeTokenizer
from moon.model.baselines.openclip import OPENCLIP_CONFIGS, OpenClipEmbedder, resolve_config
from moon.model.registry import load_embedder

SMALL = {
    "clip.embed_dim": 32,
    "clip.vision_cfg": {"image_size": 32, "patch_size": 8, "layers": 1, "width": 64, "head_width": 32},
    "clip.text_cfg": {"context_length": 16, "vocab_size": 300, "width": 64, "heads": 2, "layers": 1},
    "max_images": 2,
    "matryoshka_dims": [8],
}
TITLE_ONLY = ProductView(images=False, crops=False, category=False, attributes=False)


@pytest.fixture
def products(make_products):
    return make_products(4, seed=7)


@pytest.fixture
def model(products):
    corpus = [p.title for p in products] + [" > ".join(p.category) for p in products]
    return OpenClipEmbedder.from_config("openclip-tiny", tokenizer_corpus=corpus, overrides=SMALL, seed=0).eval()


def test_named_configs_are_the_reference_sizes():
    cfg = resolve_config("openclip-tiny")
    assert cfg.clip["vision_cfg"]["layers"] == 6 and cfg.clip["vision_cfg"]["width"] == 256
    assert cfg.clip["text_cfg"]["layers"] == 4 and cfg.image_size == 112
    assert set(OPENCLIP_CONFIGS) >= {"openclip-tiny", "openclip-tiny-openai-bpe"}


def test_openai_bpe_vocabulary_ships_with_open_clip():
    import open_clip

    assert (Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz").is_file()
    tok = OpenAIBpeTokenizer()
    ids = tok(["red mug", "a much longer title " * 10], context_length=12)
    assert ids.shape == (2, 12) and tok.vocab_size == 49408
    assert ids[0].argmax().item() == 3 and ids[0, 3].item() == tok.eos_id  # <sot> red mug <eot>
    assert ids[1, -1].item() == tok.eos_id  # truncated texts still end with <eot>


def test_processor_handles_mixed_query_kinds(model, products):
    img = products[0].images[0]
    queries = [QueryRecord(query_id="t", kind=QueryKind.TEXT, text="red mug", positive_id="x"),
               QueryRecord(query_id="i", kind=QueryKind.IMAGE, image=img, positive_id="x"),
               QueryRecord(query_id="p", kind=QueryKind.PRODUCT, image=img, text="mug", positive_id="x"),
               "bare text"]
    inputs = model.processor.queries(queries)
    assert inputs["pixel_values"].shape == (2, 3, 32, 32)
    assert inputs["image_owner"].tolist() == [1, 2]
    assert inputs["text_owner"].tolist() == [0, 2, 3]
    # cut to the longest text ("bare text": start, 2+ tokens, end), not padded to context_length 16
    longest = int((inputs["input_ids"] != model.processor.tokenizer.pad_id).sum(1).max())
    assert inputs["input_ids"].shape == (3, longest) and 4 <= longest < 16 and int(inputs["n_items"]) == 4
    out = model.encode_queries(queries, show_progress=False)
    assert out.shape == (4, 32)
    assert torch.allclose(torch.from_numpy(out).norm(dim=1), torch.ones(4), atol=1e-5)


def test_fusion_rule_and_single_tower_views(model, products):
    p = products[0]
    inputs = model.processor.products([p], FULL_VIEW)
    assert inputs["image_owner"].tolist() == [0] * min(2, len(p.images))
    with torch.no_grad():
        img = F.normalize(model.clip.encode_image(inputs["pixel_values"]), dim=-1)
        img = F.normalize(img.sum(0, keepdim=True), dim=-1)
        txt = F.normalize(model.clip.encode_text(inputs["input_ids"]), dim=-1)
        full = model(**inputs)
        image_only = model(**model.processor.products([p], IMAGE_VIEW)).embeddings
        title_only = model(**model.processor.products([p], TITLE_ONLY)).embeddings
    torch.testing.assert_close(full.embeddings, F.normalize(img + txt, dim=-1))
    torch.testing.assert_close(image_only, img)
    assert not torch.allclose(title_only, txt)  # title alone differs from title+category+attributes
    torch.testing.assert_close(full.matryoshka[8], F.normalize(full.embeddings[:, :8], dim=-1))


def test_text_batches_cut_to_their_longest_text_embed_as_padded_ones(model):
    texts = ["red mug", "blue mug", "mug"]
    full = model.processor.tokenizer(texts, model.config.context_length)
    cut = model.processor.queries(texts)["input_ids"]
    assert cut.shape[1] < full.shape[1]
    assert torch.equal(cut, full[:, :cut.shape[1]]) and (full[:, cut.shape[1]:] == model.processor.tokenizer.pad_id).all()
    with torch.no_grad():
        torch.testing.assert_close(model.clip.encode_text(cut), model.clip.encode_text(full), atol=1e-5, rtol=1e-5)
    model.train()
    loss = model.clip.encode_text(cut).pow(2).sum()
    grads = torch.autograd.grad(loss, list(model.clip.text.parameters()))
    model.zero_grad()
    full_loss = model.clip.encode_text(full).pow(2).sum()
    full_grads = torch.autograd.grad(full_loss, list(model.clip.text.parameters()))
    for a, b in zip(grads, full_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_save_and_load_round_trip_exactly(model, products, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "embedder.json").read_text())["architecture"] == "open_clip"
    loaded = load_embedder(tmp_path / "m")
    assert isinstance(loaded, OpenClipEmbedder)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    a = model.encode_products(products, show_progress=False)
    b = loaded.encode_products(products, show_progress=False)
    assert (a == b).all()
    assert loaded.config_dict()["parameters"] == model.config_dict()["parameters"]


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="unknown open_clip config 'nope'"):
        resolve_config("nope")
    with pytest.raises(ValueError, match=r"vision_cfg: unknown open_clip keys \['depth'\]"):
        resolve_config("openclip-tiny", {"clip.vision_cfg.depth": 3})
    with pytest.raises(ValueError, match="matryoshka_dims"):
        resolve_config("openclip-tiny", {"matryoshka_dims": [512]})
    with pytest.raises(ValueError, match="pass tokenizer_corpus"):
        OpenClipEmbedder.from_config("openclip-tiny")
