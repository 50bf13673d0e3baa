import pytest
import torch

from moon.model.pooling import pool


def test_mean_and_last_ignore_padding():
    hidden = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.allclose(pool(hidden, mask, "mean")[0], hidden[0, :3].mean(0))
    assert torch.allclose(pool(hidden, mask, "mean")[1], hidden[1].mean(0))
    assert torch.equal(pool(hidden, mask, "last"), torch.stack([hidden[0, 2], hidden[1, 4]]))
    changed = hidden.clone()
    changed[0, 3:] = 100.0
    for mode in ("mean", "last"):
        assert torch.equal(pool(changed, mask, mode), pool(hidden, mask, mode))
    with pytest.raises(ValueError, match="no tokens"):
        pool(hidden, torch.zeros(2, 5), "last")


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


@pytest.mark.parametrize("pooling, causal", [("mean", True), ("last", True), ("bidirectional-mean", False)])
def test_attention_direction_follows_pooling(build_model, products, pooling, causal):
    model = build_model(pooling=pooling)
    before, after = _first_token_state(model, products)
    # causal: the first token cannot see the title that comes after it
    assert torch.equal(before, after) == causal
    out = model(**model.processor.products(products[:2]))
    assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(2), atol=1e-5)
