"""Cases with known answers: FGSM on softmax regression, reachable targets on a linear model,
and a loss landscape where the last iterate is not the best one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advml import attacks
from advml.attacks import losses
from advml.threats import L2, Linf


def softmax_regression(dim=5, classes=3, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(dim, classes).to(dtype)
    with torch.no_grad():
        model.weight.copy_(torch.randn(classes, dim, generator=gen, dtype=dtype))
        model.bias.copy_(torch.randn(classes, generator=gen, dtype=dtype))
    return model


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_on_softmax_regression_matches_the_formula(targeted):
    """grad_x CE(Wx + b, y) = W^T (softmax(Wx + b) - e_y), so FGSM is explicit."""
    model = softmax_regression()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(50, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=gen)
    eps = 0.1
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    grad = (p - nn.functional.one_hot(y, 3).double()) @ model.weight.detach()
    direction = -grad.sign() if targeted else grad.sign()
    expected = (x + eps * direction).clamp(0, 1)
    result = attacks.fgsm(model, x, y, Linf(eps), targeted=targeted, early_stop=False)
    # CE is convex in x and the step has a non-negative inner product with the gradient, so
    # the step never lowers the objective: the best iterate is the step (unless it is the
    # clean point again, where every coordinate was already at the box).
    moved = (expected != x).any(dim=1)
    clean_success = (p.argmax(1) == y) if targeted else (p.argmax(1) != y)
    step_success = result.success
    use = moved & ~(clean_success & ~step_success)
    torch.testing.assert_close(result.x_adv[use], expected[use], rtol=0, atol=1e-15)
    assert use.sum() > 40


def test_fgm_l2_on_softmax_regression():
    model = softmax_regression()
    x = torch.full((4, 5), 0.5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    grad = (p - nn.functional.one_hot(y, 3).double()) @ model.weight.detach()
    eps = 0.2  # small enough that the box is not reached from the centre
    expected = x + eps * grad / grad.norm(dim=1, keepdim=True)
    result = attacks.fgm(model, x, y, L2(eps), early_stop=False)
    torch.testing.assert_close(result.x_adv, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.norm, torch.full((4,), eps, dtype=torch.float64))


def quadrant_model():
    """Four classes on [0, 1]^2: class k wins in the k-th cone around the centre."""
    model = nn.Linear(2, 4)
    with torch.no_grad():
        model.weight.copy_(10 * torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]))
        model.bias.copy_(-(model.weight @ torch.tensor([0.5, 0.5])))
    return model


TARGETED = [
    ("bim", {"steps": 10}),
    ("mifgsm", {"steps": 10}),
    ("pgd", {"steps": 20}),
    ("apgd", {"steps": 20}),
    ("apgd-ce", {"steps": 20}),
    ("apgd-dlr", {"steps": 20}),
    ("apgd", {"steps": 20, "loss": "margin"}),
]


@pytest.mark.parametrize(("name", "options"), TARGETED)
def test_targeted_attacks_reach_a_reachable_target(name, options):
    model = quadrant_model()
    x = torch.tensor([[0.55, 0.5], [0.5, 0.56], [0.45, 0.52], [0.5, 0.44]]).repeat(4, 1)
    with torch.no_grad():
        clean = model(x).argmax(1)
    target = (clean + torch.arange(16) % 3 + 1) % 4  # every other class, never the clean one
    assert (target != clean).all()
    result = attacks.get(name)(model, x, target, Linf(0.2), targeted=True, **options)
    assert result.success.all(), result.success
    with torch.no_grad():
        assert torch.equal(model(result.x_adv).argmax(1), target)


@pytest.mark.parametrize("name", ["fgsm", "fgm"])
def test_single_step_targeted(name):
    model = quadrant_model()
    x = torch.tensor([[0.55, 0.5]])  # class 0 (right); the step (-eps, +eps) lands in class 2
    result = attacks.get(name)(model, x, torch.tensor([2]), Linf(0.2), targeted=True)
    torch.testing.assert_close(result.x_adv, torch.tensor([[0.35, 0.7]]))
    assert result.success.item()


def test_targeted_loss_is_the_targets():
    model = quadrant_model()
    x = torch.tensor([[0.55, 0.5]])
    target = torch.tensor([1])
    result = attacks.pgd(model, x, target, Linf(0.2), targeted=True, steps=10)
    with torch.no_grad():
        expected = losses.ce(model(result.x_adv), target, targeted=True)
    torch.testing.assert_close(result.loss, expected)


class Band(nn.Module):
    """1-D: logit gap z1 - z0 = top - 400 (x - 0.625)^2, peaking at x = 0.625."""

    def __init__(self, top: float):
        super().__init__()
        self.top = top

    def forward(self, x):
        gap = self.top - 400 * (x[:, :1] - 0.625) ** 2
        return torch.cat([torch.zeros_like(gap), gap], dim=1)


@pytest.mark.parametrize("name", ["bim", "mifgsm"])
def test_returns_the_successful_iterate_not_the_last(name):
    """Steps of 0.12 from 0.5: 0.5 -> 0.62 (inside the band: class 1) -> 0.74 (outside)."""
    model = Band(top=1.0)
    x, y = torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([0])
    options = {"steps": 2, "step_size": 0.12, "early_stop": False}
    if name == "mifgsm":
        options["momentum"] = 0.0
    result = attacks.get(name)(model.double(), x, y, Linf(0.5), **options)
    assert result.success.item()
    torch.testing.assert_close(result.x_adv, torch.tensor([[0.62]], dtype=torch.float64))


def test_returns_the_highest_loss_iterate_when_nothing_succeeds():
    model = Band(top=-1.0)  # class 0 everywhere
    x, y = torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([0])
    result = attacks.bim(model, x, y, Linf(0.5), steps=2, step_size=0.12)
    assert not result.success.item()
    torch.testing.assert_close(result.x_adv, torch.tensor([[0.62]], dtype=torch.float64))
    with torch.no_grad():
        last = losses.ce(model(torch.tensor([[0.74]], dtype=torch.float64)), y)
    assert result.loss.item() > last.item()


def test_illc_targets_the_least_likely_class():
    model = quadrant_model()
    x = torch.tensor([[0.6, 0.52]])  # class 0; least likely: class 1 (the opposite cone)
    with torch.no_grad():
        assert model(x).argmin(1).item() == 1
    result = attacks.illc(model, x, torch.tensor([0]), Linf(0.3), steps=10, early_stop=False)
    with torch.no_grad():
        assert model(result.x_adv).argmax(1).item() == 1
    assert result.success.item()


def test_deepfool_on_a_linear_binary_boundary_is_minimal():
    """For an affine classifier DeepFool's first step lands on the boundary (plus overshoot)."""
    model = nn.Linear(3, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [-1.0, 0.0, 1.0]]))
        model.bias.zero_()
    x = torch.tensor([[0.6, 0.5, 0.4]], dtype=torch.float64)  # class 0
    w = model.weight[1] - model.weight[0]
    f = (model(x)[0, 1] - model(x)[0, 0]).item()
    distance = abs(f) / w.norm().item()
    result = attacks.deepfool(model, x, torch.tensor([0]), L2(float("inf")), overshoot=0.02)
    assert result.success.item()
    assert distance <= result.norm.item() <= distance * 1.03
