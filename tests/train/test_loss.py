from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from moon.train.loss import (InfoNCELoss, IntraProductLoss, MatryoshkaLoss, Temperature, false_negative_mask,
                             id_tensor, stable_id)


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_stable_ids_are_deterministic_and_distinct():
    assert stable_id("p1") == stable_id("p1") != stable_id("p2")
    assert id_tensor(["a", "b", "a"]).tolist()[0] == id_tensor(["a"]).item()
    assert 0 <= stable_id("x") < 2 ** 63


def test_false_negative_mask_hides_duplicates_and_group_mates_but_not_the_label():
    pos_ids, pos_groups = torch.tensor([1, 2]), torch.tensor([10, 20])
    cand_ids = torch.tensor([1, 2, 1, 3, 4])
    cand_groups = torch.tensor([10, 20, 10, 10, 30])
    mask = false_negative_mask(pos_ids, pos_groups, cand_ids, cand_groups, torch.tensor([0, 1]))
    assert mask.tolist() == [[False, False, True, True, False],
                             [False, False, False, False, False]]


def test_false_negative_mask_hides_other_answers_of_the_query_text():
    pos_ids, pos_groups = torch.tensor([1, 2]), torch.tensor([10, 20])
    cand_ids = torch.tensor([1, 2, 7, 5, 9])
    cand_groups = torch.tensor([10, 20, 70, 50, 90])
    # query 0's text is also answered by products 9 and 5 (unsorted); query 1's row is padding only
    answers = torch.tensor([[9, 5], [2, 2]])
    mask = false_negative_mask(pos_ids, pos_groups, cand_ids, cand_groups, torch.tensor([0, 1]), answers)
    assert mask.tolist() == [[False, False, False, True, True],
                             [False, False, False, False, False]]
    empty = false_negative_mask(pos_ids, pos_groups, cand_ids, cand_groups, torch.tensor([0, 1]),
                                torch.zeros(2, 0, dtype=torch.long))
    assert not empty.any()


def test_infonce_matches_manual_cross_entropy_and_ignores_masked_columns():
    q, c = _unit(3, 8, 0), _unit(5, 8, 1)
    temp = Temperature(0.1, learnable=False)
    loss_fn = InfoNCELoss(temp)
    labels = torch.tensor([0, 1, 2])
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 4] = True
    loss, per_query = loss_fn(q, c, labels, mask)
    logits = 10.0 * q @ c.T
    manual0 = -(logits[0, 0] - torch.logsumexp(logits[0, :4], 0))
    assert per_query[0].item() == pytest.approx(manual0.item(), rel=1e-5)
    assert loss.item() == pytest.approx(per_query.mean().item())
    c_changed = c.clone()
    c_changed[4] = q[0]  # a masked column may be anything: row 0 must not change
    _, again = loss_fn(q, c_changed, labels, mask)
    assert again[0].item() == pytest.approx(per_query[0].item(), rel=1e-6)
    assert again[1].item() != pytest.approx(per_query[1].item(), rel=1e-6)


def test_weighted_mean_uses_query_weights():
    q, c = _unit(2, 4, 2), _unit(2, 4, 3)
    loss_fn = InfoNCELoss(Temperature(0.5, learnable=False))
    mask = torch.zeros(2, 2, dtype=torch.bool)
    _, per_query = loss_fn(q, c, torch.arange(2), mask)
    weighted, _ = loss_fn(q, c, torch.arange(2), mask, torch.tensor([3.0, 1.0]))
    assert weighted.item() == pytest.approx((3 * per_query[0] + per_query[1]).item() / 4, rel=1e-6)


def test_temperature_learnable_fixed_and_capped():
    learn = Temperature(0.05, learnable=True)
    fixed = Temperature(0.05, learnable=False)
    assert [n for n, _ in learn.named_parameters()] == ["log_scale"]
    assert list(fixed.parameters()) == [] and "log_scale" in dict(fixed.named_buffers())
    assert learn().item() == pytest.approx(20.0, rel=1e-5)
    with torch.no_grad():
        learn.log_scale.fill_(math.log(1e6))
    assert learn().item() == pytest.approx(100.0, rel=1e-5)


def test_matryoshka_adds_prefix_terms():
    q, c = _unit(4, 16, 4), _unit(6, 16, 5)
    base = InfoNCELoss(Temperature(0.1, learnable=False))
    labels, mask = torch.arange(4), torch.zeros(4, 6, dtype=torch.bool)
    full, _ = base(q, c, labels, mask)
    prefix, _ = base(F.normalize(q[:, :4], dim=-1), F.normalize(c[:, :4], dim=-1), labels, mask)
    total, _ = MatryoshkaLoss(base, [4], [0.5])(q, c, labels, mask)
    assert total.item() == pytest.approx(full.item() + 0.5 * prefix.item(), rel=1e-6)


def test_intra_product_loss_is_symmetric_and_masks_group_mates():
    img, txt = _unit(3, 8, 6), _unit(3, 8, 7)
    txt[1] = img[0]  # product 1's title looks exactly like product 0's image
    loss_fn = IntraProductLoss(Temperature(0.1, learnable=False))
    distinct, variants = torch.tensor([1, 2, 3]), torch.tensor([1, 1, 3])
    assert loss_fn(img, txt, distinct).item() == pytest.approx(loss_fn(txt, img, distinct).item(), rel=1e-6)
    assert loss_fn(img, txt, variants).item() < loss_fn(img, txt, distinct).item()


def test_intra_extra_titles_are_image_to_title_negatives_only():
    img, txt, extra = _unit(3, 8, 6), _unit(3, 8, 7), _unit(2, 8, 8)
    groups, extra_groups = torch.tensor([1, 2, 3]), torch.tensor([4, 2])  # extra title 1 is product 1's variant
    loss = IntraProductLoss(Temperature(0.1, learnable=False))(img, txt, groups, extra, extra_groups)
    logits = 10.0 * img @ torch.cat([txt, extra]).T
    allowed = [[0, 1, 2, 3, 4], [0, 1, 2, 3], [0, 1, 2, 3, 4]]
    i2t = torch.stack([-(logits[i, i] - torch.logsumexp(logits[i, cols], 0)) for i, cols in enumerate(allowed)])
    t2i = F.cross_entropy(logits[:, :3].T, torch.arange(3))
    assert loss.item() == pytest.approx(((i2t.mean() + t2i) / 2).item(), rel=1e-5)


def test_intra_extra_images_are_title_to_image_negatives_only():
    img, txt, extra = _unit(3, 8, 6), _unit(3, 8, 7), _unit(2, 8, 8)
    groups, extra_groups = torch.tensor([1, 2, 3]), torch.tensor([2, 5])  # extra image 0 is product 1's variant
    loss = IntraProductLoss(Temperature(0.1, learnable=False))(img, txt, groups, extra_groups=extra_groups,
                                                                extra_images=extra)
    logits = 10.0 * txt @ torch.cat([img, extra]).T
    allowed = [[0, 1, 2, 3, 4], [0, 1, 2, 4], [0, 1, 2, 3, 4]]
    t2i = torch.stack([-(logits[i, i] - torch.logsumexp(logits[i, cols], 0)) for i, cols in enumerate(allowed)])
    i2t = F.cross_entropy(logits[:, :3].T, torch.arange(3))
    assert loss.item() == pytest.approx(((i2t + t2i.mean()) / 2).item(), rel=1e-5)
