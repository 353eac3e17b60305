"""APGD specifics: the checkpoint schedule and the step-size rule doing its job."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advml import attacks
from advml.attacks.apgd import checkpoints
from advml.threats import L2, Linf


def test_checkpoints_follow_the_paper():
    """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): for N = 100
    the checkpoints are 22, 41, 57, 70, 80, 87, 93, 99."""
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1) == []
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert all(0 < w < 1000 for w in checkpoints(1000))


class Peak(nn.Module):
    """Class 0 always wins; the loss of class 0 peaks at x = 0.6 (1-D)."""

    def forward(self, x):
        z1 = -100 * (x[:, :1] - 0.6) ** 2 - 5
        return torch.cat([torch.zeros_like(z1), z1], dim=1)


@pytest.mark.parametrize("threat", [Linf(0.3), L2(0.3)])
def test_step_halving_converges_to_an_interior_maximum(threat):
    """eta_0 = 2 eps = 0.6 overshoots the peak; halving at the checkpoints homes in on it."""
    x = torch.tensor([[0.5]], dtype=torch.float64)
    result = attacks.apgd(Peak(), x, torch.tensor([0]), threat, steps=100, random_start=False)
    assert not result.success.item()
    assert abs(result.x_adv.item() - 0.6) < 0.01


def test_linear_objective_reaches_the_optimum_of_ball_and_box():
    """max <w, z> over the L2 ball ∩ box is the limit of projections of x + t w."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1, 20, generator=gen, dtype=torch.float64)
    model = nn.Linear(20, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.cat([torch.zeros_like(w), w]))
        model.bias.copy_(torch.tensor([1e3, 0.0], dtype=torch.float64))  # class 0 always wins
    x = torch.rand(1, 20, generator=gen, dtype=torch.float64)
    threat = L2(1.0)
    best = threat.project(x + 1e6 * w, x)
    optimum = (w * best).sum().item()
    result = attacks.apgd(model, x, torch.tensor([0]), threat, loss="margin", steps=50)
    reached = (w * result.x_adv).sum().item()
    start = (w * x).sum().item()
    assert reached >= optimum - 1e-3 * (optimum - start)


def test_restarts_never_hurt(digits_model, digits):
    x, y = digits
    one = attacks.apgd(digits_model, x, y, Linf(0.08), steps=20)
    three = attacks.apgd(digits_model, x, y, Linf(0.08), steps=20, restarts=3)
    assert (three.success | ~one.success).all()  # every sample broken once stays broken


def test_apgd_t_reports_untargeted_success(digits_model, digits):
    x, y = digits
    result = attacks.apgd_t(digits_model, x[:60], y[:60], Linf(0.1), n_targets=2, steps=20)
    assert torch.equal(result.success, result.logits.argmax(1) != y[:60])
    assert result.success.any()


def test_apgd_targeted(digits_model, digits):
    x, y = digits
    target = (y[:40] + 1) % 10
    result = attacks.apgd_dlr(digits_model, x[:40], target, Linf(0.2), targeted=True, steps=30)
    assert torch.equal(result.success, result.logits.argmax(1) == target)
    assert result.success_rate > 0.8
