"""Each loss term against a known answer."""

from __future__ import annotations

import math

import pytest
import torch

from training.methods.losses import (
    dice_loss,
    feature_distillation,
    info_nce,
    orthogonality,
    output_distillation,
    ramp,
    soft_target_kl,
    task_loss,
    weighted_cross_entropy,
)


def test_info_nce_is_low_for_identical_pairs_and_high_for_shuffled():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 16, generator=g)
    same = info_nce(a, a.clone())
    shuffled = info_nce(a, a[torch.randperm(64, generator=g)])
    assert same < 0.5
    assert shuffled > math.log(64) - 1  # chance level is log(batch)
    assert shuffled > 10 * same


def test_info_nce_is_symmetric_and_scale_invariant():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    assert torch.isclose(info_nce(a, b), info_nce(b, a))
    assert torch.isclose(info_nce(a, b), info_nce(3 * a, 0.5 * b))


def test_orthogonality_is_zero_for_orthogonal_and_one_for_parallel():
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    b = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, -1.0]])
    assert orthogonality(a, b).item() == pytest.approx(0.0)
    assert orthogonality(a, -3 * a).item() == pytest.approx(1.0)


def test_distillation_is_zero_for_equal_inputs_and_positive_otherwise():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(10, 5, generator=g), torch.randn(10, 5, generator=g)
    assert feature_distillation(x, x.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert soft_target_kl(x, x.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert output_distillation(x[:, :1], x[:, :1].clone(), "regression").item() == 0.0
    assert feature_distillation(x, y) > 0 and soft_target_kl(x, y) > 0


def test_distillation_sends_no_gradient_to_the_teacher():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    (feature_distillation(s, t) + soft_target_kl(s, t)).backward()
    assert s.grad is not None and t.grad is None


def test_task_loss_and_ramp():
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert task_loss(logits, torch.tensor([0, 1]), "classification").item() == pytest.approx(0.0, abs=1e-6)
    assert task_loss(torch.ones(3, 1), torch.zeros(3), "regression").item() == pytest.approx(1.0)
    assert [ramp(e, warmup=2, length=2) for e in range(5)] == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_weighted_cross_entropy_lets_a_rare_class_count_as_much_as_a_common_one():
    logits = torch.zeros(4, 3)
    logits[:, 0] = 2.0  # every sample predicted class 0
    balanced = torch.tensor([0, 0, 1, 1])
    assert weighted_cross_entropy(logits, balanced).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, balanced).item()
    )
    rare = torch.tensor([0, 0, 0, 1])  # the one wrong sample weighs half the loss, not a quarter
    plain = torch.nn.functional.cross_entropy(logits, rare).item()
    assert weighted_cross_entropy(logits, rare).item() > 1.5 * plain


def test_dice_is_near_zero_when_right_and_near_one_when_wrong():
    target = torch.tensor([0, 1, 2, 1])
    right = 20 * torch.nn.functional.one_hot(target, 4).float()
    assert dice_loss(right, target).item() == pytest.approx(0.0, abs=1e-3)
    # all wrong: 1 - mean over the 3 present classes of eps / (|p| + |y| + eps), eps = 1 (class 3 absent)
    assert dice_loss(right.roll(1, dims=1), target).item() == pytest.approx(1 - (1 / 2 + 1 / 4 + 1 / 4) / 3)
