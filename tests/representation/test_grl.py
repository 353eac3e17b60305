"""Gradient reversal (Ganin & Lempitsky 2015, eqs. 7–8) and the paper's schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advml.errors import UserError
from advml.representation.grl import (
    SCHEDULE_NAME,
    GradientReversal,
    grad_reverse,
    grl_lambda,
    lr_annealing,
)


@pytest.mark.parametrize("scale", [0.0, 0.3, 1.0, 7.5])
def test_gradient_is_flipped_and_scaled_exactly(scale):
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 4, dtype=torch.float64)
    out = grad_reverse(x, scale)
    assert torch.equal(out, x)  # identity forward
    (out * weight).sum().backward()
    assert torch.equal(x.grad, weight * (-scale))


def test_only_layers_before_the_reversal_see_the_flip():
    torch.manual_seed(0)
    before, after = nn.Linear(3, 3), nn.Linear(3, 1)
    x = torch.randn(8, 3)

    def grads(reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        before.zero_grad()
        after.zero_grad()
        h = before(x)
        after(GradientReversal(0.5)(h) if reverse else h).sum().backward()
        return before.weight.grad.clone(), after.weight.grad.clone()

    plain_before, plain_after = grads(False)
    flipped_before, flipped_after = grads(True)
    assert torch.equal(flipped_after, plain_after)  # the adversary descends its own loss
    assert torch.allclose(flipped_before, -0.5 * plain_before)  # the features ascend it


def test_bad_scale():
    with pytest.raises(UserError, match="scale"):
        grad_reverse(torch.zeros(1), -1.0)
    with pytest.raises(UserError, match="scale"):
        grad_reverse(torch.zeros(1), float("nan"))
    assert "scale=0.25" in repr(GradientReversal(0.25))


def test_schedules_match_the_paper():
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1, abs=0)
    assert grl_lambda(0.1) == pytest.approx(2 / (1 + math.exp(-1)) - 1, abs=0)
    values = [grl_lambda(p / 10) for p in range(11)]
    assert values == sorted(values) and values[-1] < 1
    assert lr_annealing(0.0) == 1.0
    assert lr_annealing(1.0) == pytest.approx(11**-0.75, abs=0)
    assert lr_annealing(0.5, alpha=2, beta=1) == pytest.approx(0.5, abs=0)
    assert lr_annealing(2.0) == lr_annealing(1.0) and grl_lambda(-1) == 0.0  # clamped
    with pytest.raises(UserError, match="progress"):
        grl_lambda(float("nan"))


def test_schedule_is_registered_with_the_trainer():
    from advml.training.schedules import get_schedule

    schedule = get_schedule(SCHEDULE_NAME)
    for p in (0.0, 0.1, 0.5, 1.0):
        assert schedule(p) == pytest.approx(lr_annealing(p))
