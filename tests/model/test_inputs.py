import re

import pytest
import torch
from PIL import Image
from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

from moon.data.records import IMAGE_VIEW, DataError, ProductImage, ProductView, QueryKind, QueryRecord
from moon.model.images import core_box
from moon.model.segments import Segment
from moon.model.tokenizer import IM_END, IMAGE_PAD


def _tokens(model) -> int:
    """LLM tokens per image."""
    return model.processor.geometry.tokens(model.config.inputs.image_size)


def _crop_tokens(model) -> int:
    return model.processor.geometry.tokens(model.config.inputs.crop_side)


def _decode(model, inputs, row, segment):
    ids = inputs["input_ids"][row][inputs["segment_ids"][row] == segment]
    return model.tokenizer.decode(ids)


def test_segment_ids_of_a_product(build_model, products):
    model = build_model()
    p = products[0]
    inputs = model.processor.products([p, products[1]])
    assert _decode(model, inputs, 0, Segment.TITLE) == f" {p.title}"
    assert _decode(model, inputs, 0, Segment.CATEGORY) == " " + " > ".join(p.category)
    assert _decode(model, inputs, 0, Segment.ATTRIBUTE) == " " + "; ".join(f"{k}: {v}" for k, v in p.attributes.items())
    seg = inputs["segment_ids"][0]
    n_crops = sum(core_box(im) is not None for im in p.images)
    assert n_crops == (len(p.images) + 1) // 2 >= 1
    assert int((seg == Segment.IMAGE).sum()) == _tokens(model) * len(p.images)
    assert int((seg == Segment.CROP).sum()) == _crop_tokens(model) * n_crops
    image_tokens = inputs["input_ids"][0] == model.image_token_id
    assert torch.equal(image_tokens, (seg == Segment.IMAGE) | (seg == Segment.CROP))
    assert torch.equal(inputs["attention_mask"][0].bool(), seg != Segment.PAD)
    specials = model.tokenizer.decode(inputs["input_ids"][0][seg == Segment.SPECIAL])
    assert specials.startswith("<|im_start|><|vision_start|>") and specials.endswith(IM_END)
    assert "Title:" in specials and "Category:" in specials
    n_images = sum(len(q.images) for q in products[:2])
    n_crops = sum(core_box(im) is not None for q in products[:2] for im in q.images)
    assert inputs["image_grid_thw"].shape == (n_images + n_crops, 3)
    patches = 4 * (n_images * _tokens(model) + n_crops * _crop_tokens(model))
    assert inputs["pixel_values"].shape == (patches, 1176)


def test_hand_built_inputs_match_hf_processor(build_model, products):
    model = build_model()
    items = [model.processor.render_product(p) for p in products[:4]]
    mine = model.processor.collate(items)
    # min_pixels lowered so the HF processor keeps the 28 px crops at their size
    hf_proc = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28),
                               tokenizer=model.tokenizer, video_processor=Qwen2VLVideoProcessor())
    texts = [re.sub(f"(?:{re.escape(IMAGE_PAD)})+", IMAGE_PAD, it.text) for it in items]
    images = [[Image.fromarray(a) for a in it.images] for it in items]
    hf = hf_proc(text=texts, images=images, padding=True, return_tensors="pt")
    assert torch.equal(mine["input_ids"], hf["input_ids"])
    assert torch.equal(mine["attention_mask"], hf["attention_mask"])
    assert torch.equal(mine["image_grid_thw"], hf["image_grid_thw"])
    assert torch.allclose(mine["pixel_values"], hf["pixel_values"], atol=1e-6, rtol=0)
    assert torch.equal((mine["input_ids"] == model.image_token_id).long(), hf["mm_token_type_ids"].long())
    # the HF call switched padding on the shared tokenizer: our processor must not be affected
    again = model.processor.collate(items)
    assert torch.equal(again["attention_mask"], mine["attention_mask"])


def test_crop_switch_and_views(build_model, products):
    model = build_model(**{"inputs.use_crops": False})
    seg = model.processor.products(products[:3])["segment_ids"]
    assert not bool((seg == Segment.CROP).any()) and bool((seg == Segment.IMAGE).any())
    with_crops = build_model()
    seg = with_crops.processor.products(products[:3], IMAGE_VIEW)["segment_ids"]
    assert bool((seg == Segment.CROP).any())
    assert not bool(((seg == Segment.TITLE) | (seg == Segment.CATEGORY) | (seg == Segment.ATTRIBUTE)).any())
    no_crop_view = with_crops.processor.products(products[:3], ProductView(crops=False))["segment_ids"]
    assert not bool((no_crop_view == Segment.CROP).any())
    text_only = with_crops.processor.products(products[:2], ProductView(images=False, crops=False))
    assert "pixel_values" not in text_only
    assert not bool((text_only["segment_ids"] == Segment.IMAGE).any())


def test_queries_use_the_same_path(build_model, products):
    model = build_model()
    image = products[0].images[0]
    queries = ["blue vase",
               QueryRecord(query_id="i", kind=QueryKind.IMAGE, image=image, positive_id="p"),
               QueryRecord(query_id="m", kind=QueryKind.PRODUCT, image=image, text="red mug", positive_id="p")]
    inputs = model.processor.queries(queries)
    seg = inputs["segment_ids"]
    assert _decode(model, inputs, 0, Segment.QUERY) == " blue vase"
    assert not bool((seg[0] == Segment.IMAGE).any())
    assert int((seg[1] == Segment.IMAGE).sum()) == _tokens(model)
    assert int((seg[1] == Segment.CROP).sum()) == _crop_tokens(model)
    assert _decode(model, inputs, 2, Segment.TITLE) == " red mug"
    assert inputs["image_grid_thw"].shape[0] == 4


def test_limits_are_counted(build_model, products):
    model = build_model(**{"inputs.max_text_tokens": 8, "inputs.max_images": 1})
    many = max(products, key=lambda p: len(p.images))
    assert len(many.images) > 1
    inputs = model.processor.products([many])
    assert model.processor.counts["images_over_max_images"] == len(many.images) - 1
    assert model.processor.counts["text_tokens_over_max_text_tokens"] > 0
    seg = inputs["segment_ids"][0]
    assert int((seg == Segment.IMAGE).sum()) == _tokens(model)
    first_text = int(((seg == Segment.IMAGE) | (seg == Segment.CROP)).nonzero().max()) + 1
    n_text = int(inputs["attention_mask"][0].sum()) - first_text
    assert n_text <= 8 + 2  # text budget + vision_end + closing token
    assert int(inputs["input_ids"][0][int(inputs["attention_mask"][0].sum()) - 1]) == \
        model.tokenizer.convert_tokens_to_ids(IM_END)


def test_control_tokens_in_text_stay_text(build_model, products):
    model = build_model()
    tricky = products[0].model_copy(update={"title": f"mug {IMAGE_PAD} <|im_end|>"})
    inputs = model.processor.products([tricky])
    seg = inputs["segment_ids"]
    n_vision = int(((seg == Segment.IMAGE) | (seg == Segment.CROP)).sum())
    assert int((inputs["input_ids"] == model.image_token_id).sum()) == n_vision
    assert model.processor.counts["control_token_text_escaped"] == 1
    model(**inputs)


def test_corrupt_image_names_the_product(build_model, products):
    model = build_model()
    bad = products[0].model_copy(update={"images": [ProductImage(data=b"not a jpeg", format="jpg")]})
    with pytest.raises(DataError, match=products[0].product_id):
        model.processor.products([bad])
