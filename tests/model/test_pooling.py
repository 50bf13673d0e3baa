import pytest
import torch

from moon.model.pooling import pool
from moon.model.segments import Segment

S, I, C, T = Segment.SPECIAL, Segment.IMAGE, Segment.CROP, Segment.TITLE


def test_mean_and_last_ignore_padding():
    hidden = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    segments = mask * int(T)
    assert torch.allclose(pool(hidden, mask, segments, "mean")[0], hidden[0, :3].mean(0))
    assert torch.allclose(pool(hidden, mask, segments, "mean")[1], hidden[1].mean(0))
    assert torch.equal(pool(hidden, mask, segments, "last"), torch.stack([hidden[0, 2], hidden[1, 4]]))
    changed = hidden.clone()
    changed[0, 3:] = 100.0
    for mode in ("mean", "modality-mean", "last"):
        assert torch.equal(pool(changed, mask, segments, mode), pool(hidden, mask, segments, mode))
    with pytest.raises(ValueError, match="no tokens"):
        pool(hidden, torch.zeros(2, 5), segments, "last")


def test_modality_mean_gives_image_and_text_equal_weight():
    hidden = torch.randn(3, 6, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]])
    segments = torch.tensor([[S, I, I, C, T, 0], [S, I, I, I, I, T], [S, T, 0, 0, 0, 0]]) * mask
    pooled = pool(hidden, mask, segments, "modality-mean")
    # image and crop tokens form one side, special + title tokens the other
    assert torch.allclose(pooled[0], (hidden[0, 1:4].mean(0) + hidden[0, [0, 4]].mean(0)) / 2)
    assert torch.allclose(pooled[1], (hidden[1, 1:5].mean(0) + hidden[1, [0, 5]].mean(0)) / 2)
    # a text-only item (a query) is its plain mean, not halved by a missing image side
    assert torch.allclose(pooled[2], hidden[2, :2].mean(0))
    assert torch.allclose(pooled[2], pool(hidden, mask, segments, "mean")[2])
    # repeating the image tokens changes a plain mean but not the modality mean
    once = torch.stack([hidden[0, 0], hidden[0, 1], hidden[0, 4]])
    thrice = torch.stack([hidden[0, 0], hidden[0, 1], hidden[0, 1], hidden[0, 1], hidden[0, 4]])
    ones = torch.ones(1, 5, dtype=torch.long)
    seg_once, seg_thrice = torch.tensor([[S, I, T]]), torch.tensor([[S, I, I, I, T]])
    for mode, equal in (("modality-mean", True), ("mean", False)):
        a = pool(once.unsqueeze(0), ones[:, :3], seg_once, mode)
        b = pool(thrice.unsqueeze(0), ones, seg_thrice, mode)
        assert torch.allclose(a, b, atol=1e-6) == equal

def _first_token_state(model, products):
    """Hidden state of token 0 for a product, and for the same product with another title."""
    captured = []
    hook = model.backbone.language_model.norm.register_forward_hook(lambda m, i, o: captured.append(o[:, 0]))
    other = products[0].model_copy(update={"title": "completely different words here"})
    with torch.no_grad():
        model(**model.processor.products([products[0]]))
        model(**model.processor.products([other]))
    hook.remove()
    return captured


@pytest.mark.parametrize("pooling, causal", [("mean", True), ("modality-mean", True), ("last", True),
                                                  ("bidirectional-mean", False)])
def test_attention_direction_follows_pooling(build_model, products, pooling, causal):
    model = build_model(pooling=pooling)
    before, after = _first_token_state(model, products)
    # causal: the first token cannot see the title that comes after it
    assert torch.equal(before, after) == causal
    out = model(**model.processor.products(products[:2]))
    assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_modality_mean_image_share_weights_the_sides():
    hidden = torch.randn(2, 4, 3)
    mask = torch.ones(2, 4, dtype=torch.long)
    segments = torch.tensor([[S, I, C, T], [S, T, T, T]])
    pooled = pool(hidden, mask, segments, "modality-mean", image_share=0.25)
    image, text = hidden[0, 1:3].mean(0), hidden[0, [0, 3]].mean(0)
    assert torch.allclose(pooled[0], 0.25 * image + 0.75 * text)
    assert torch.allclose(pooled[1], hidden[1].mean(0))
