import pytest
import torch

from moon.data.records import QueryKind, QueryRecord


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_positions_match_hf_get_rope_index(build_model, products, family):
    model = build_model(family)
    text_query = QueryRecord(query_id="q", kind=QueryKind.TEXT, text="red mug", positive_id="p")
    image_query = QueryRecord(query_id="i", kind=QueryKind.IMAGE, image=products[1].images[0], positive_id="p")
    for inputs in (model.processor.products(products[:5]), model.processor.queries([text_query, image_query])):
        mm = (inputs["input_ids"] == model.image_token_id).int()
        expected, _ = model.backbone.get_rope_index(inputs["input_ids"], mm_token_type_ids=mm,
                                                    image_grid_thw=inputs["image_grid_thw"],
                                                    attention_mask=inputs["attention_mask"])
        assert torch.equal(inputs["position_ids"].transpose(0, 1), expected)
