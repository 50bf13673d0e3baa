import pytest
import torch

from moon.model.config import ProjectionConfig
from moon.model.head import EmbeddingHead


def test_projection_and_matryoshka_are_normalised():
    head = EmbeddingHead(32, ProjectionConfig(dim=16, matryoshka_dims=[4, 8, 16]))
    full, prefixes = head(torch.randn(3, 32))
    assert full.shape == (3, 16) and head.dim == 16
    assert sorted(prefixes) == [4, 8, 16]
    for d, emb in prefixes.items():
        assert emb.shape == (3, d)
        assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.allclose(prefixes[4], torch.nn.functional.normalize(full[:, :4], dim=-1), atol=1e-6)
    assert torch.equal(prefixes[16], full)


def test_no_projection_keeps_hidden_size():
    head = EmbeddingHead(32, ProjectionConfig())
    x = torch.randn(2, 32)
    full, prefixes = head(x)
    assert prefixes == {} and torch.allclose(full, torch.nn.functional.normalize(x, dim=-1))


@pytest.mark.parametrize("dims", [[8, 4], [4, 4], [64], [0]])
def test_bad_matryoshka_dims(dims):
    with pytest.raises(ValueError, match="matryoshka_dims"):
        EmbeddingHead(32, ProjectionConfig(matryoshka_dims=dims))
