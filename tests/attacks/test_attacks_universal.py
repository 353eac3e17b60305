"""Universal adversarial perturbations: one v inside the ball fools most held-out digits, far
more than random noise of the same norm; the registered form adds it and checks the threat.

Measured on the digits fixture (v fitted on the first 400 training digits, 4 passes, fooling
rate = the prediction changes, on the 360 test digits):

* DeepFool variant (the paper), L2 ξ = 1.5: 73.9 % (train 69.0 %), 1.2 s; random directions
  of the same norm: 1.7–8.7 %; L∞ ξ = 0.15: 24.7 % vs 5.8 % for random signs;
* SGD variant, L2 ξ = 1.5: 85.8 %; L∞ ξ = 0.15: 39.2 %, in under 0.1 s.
"""

from __future__ import annotations

import pytest
import torch
from attack_toys import toy_batch, toy_mlp
from torch import nn

from advml.attacks.universal import (
    apply_universal,
    fooling_rate,
    universal,
    universal_perturbation,
)
from advml.data import load
from advml.errors import UserError
from advml.threats import L0, L1, L2, Linf

FAST = {"max_passes": 2, "batch_size": 4, "deepfool_steps": 5}


@pytest.fixture(scope="module")
def digits_train():
    x, y = load("digits", "train")
    return x[:400], y[:400]


def noise_fooling(model, x, threat, draws=5):
    rates = []
    for seed in range(draws):
        gen = torch.Generator().manual_seed(seed)
        if threat.name == "linf":
            v = threat.eps * (torch.randint(0, 2, x.shape[1:], generator=gen).float() * 2 - 1)
        else:
            v = torch.randn(x.shape[1:], generator=gen)
            v = v / v.norm() * threat.eps
        rates.append(fooling_rate(model, x, v))
    return sum(rates) / draws


@pytest.mark.parametrize(
    ("threat", "method", "floor", "gap"),
    [(L2(1.5), "deepfool", 0.5, 0.4), (Linf(0.15), "sgd", 0.25, 0.15)],  # 0.739, 0.392
)
def test_one_perturbation_fools_held_out_digits(
    digits_model, digits, digits_train, threat, method, floor, gap
):
    x, _ = digits
    v = universal_perturbation(
        digits_model, digits_train[0], None, threat, method=method, max_passes=4
    )
    assert v.shape == (1, 8, 8)
    assert float(threat.norm(v.unsqueeze(0))) <= threat.eps * (1 + 1e-5)
    rate = fooling_rate(digits_model, x, v)
    noise = noise_fooling(digits_model, x, threat)
    assert rate >= floor and rate >= noise + gap, (rate, noise)


def test_registered_form_adds_a_given_perturbation():
    model = toy_mlp()
    x, y = toy_batch()
    v = torch.tensor([0.05, -0.1])
    result = universal(model, x, y, L2(0.3), perturbation=v)
    assert torch.equal(result.x_adv, apply_universal(x, v, L2(0.3)))
    torch.testing.assert_close(result.x_adv, (x + v).clamp(0, 1))
    assert L2(0.3).contains(result.x_adv, x).all() and result.attack == "universal"
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)
    assert (result.queries == 2).all()
    # smaller per-sample radii: projected onto ball ∩ box, still inside
    eps = torch.linspace(0, 0.2, 12)
    small = universal(model, x, y, L2(eps), perturbation=v)
    assert L2(eps).contains(small.x_adv, x).all() and small.norm[0] == 0


@pytest.mark.parametrize("threat", [Linf(0.1), L2(0.3)], ids=repr)
@pytest.mark.parametrize("method", ["deepfool", "sgd"])
def test_registered_form_fits_on_the_batch(threat, method):
    model = toy_mlp()
    x, y = toy_batch(n=20)
    result = universal(model, x, y, threat, method=method, **FAST)
    assert threat.contains(result.x_adv, x).all()
    delta = result.x_adv - x
    # one v for all: where no input is clipped, every input moved by the same amount
    free = ((x + delta) > 0) & ((x + delta) < 1)
    rows = free.all(dim=1)
    if rows.sum() > 1:
        assert torch.allclose(delta[rows], delta[rows][:1].expand_as(delta[rows]), atol=1e-6)
    again = universal(model, x, y, threat, method=method, **FAST)
    assert torch.equal(again.x_adv, result.x_adv)
    assert (result.queries > 2).all()
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) != y)


def test_never_worse_than_no_perturbation_on_the_fit_set():
    model = toy_mlp()
    x, y = toy_batch(n=30)
    v = universal_perturbation(model, x, y, L2(0.3), **FAST)
    with torch.no_grad():
        clean = float((model(x).argmax(1) != y).float().mean())
    assert fooling_rate(model, x, v, y) >= clean  # the best v per pass, the zero v included


def test_l1_with_sgd_and_float64_and_model_state():
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.Linear(8, 4))
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = toy_batch(dtype=torch.float32)
    v = universal_perturbation(model, x, y, L1(0.5), **FAST)  # L1: the SGD variant
    assert float(L1(0.5).norm(v.unsqueeze(0))) <= 0.5 + 1e-6
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(t, state[k]) for k, t in model.state_dict().items())
    model64 = toy_mlp(dtype=torch.float64)
    x64, y64 = toy_batch(dtype=torch.float64)
    out = universal(model64, x64, y64, Linf(0.1), **FAST)
    assert out.x_adv.dtype == torch.float64 and Linf(0.1).contains(out.x_adv, x64).all()
    empty = universal(
        model64, torch.zeros(0, 2, dtype=torch.float64), torch.zeros(0, dtype=torch.long), Linf(0.1)
    )
    assert empty.x_adv.shape == (0, 2)


def test_labels_default_to_predictions():
    model = toy_mlp()
    x, _ = toy_batch(n=20)
    with torch.no_grad():
        pred = model(x).argmax(1)
    v = torch.tensor([0.2, 0.2])
    assert fooling_rate(model, x, v) == fooling_rate(model, x, v, pred)
    a = universal_perturbation(model, x, None, L2(0.3), **FAST)
    b = universal_perturbation(model, x, pred, L2(0.3), **FAST)
    assert torch.equal(a, b)


def test_errors():
    model = toy_mlp()
    x, y = toy_batch()
    with pytest.raises(UserError, match="one radius"):
        universal_perturbation(model, x, y, L2(torch.full((12,), 0.3)))
    with pytest.raises(UserError, match="method='sgd'"):
        universal_perturbation(model, x, y, L1(0.5), method="deepfool")
    with pytest.raises(UserError, match="method"):
        universal_perturbation(model, x, y, L2(0.3), method="lbfgs")
    with pytest.raises(UserError, match="delta"):
        universal_perturbation(model, x, y, L2(0.3), delta=2.0)
    with pytest.raises(UserError, match="shape"):
        universal(model, x, y, L2(0.3), perturbation=torch.zeros(3))
    with pytest.raises(UserError, match="either a perturbation"):
        universal(model, x, y, L2(0.3), perturbation=torch.zeros(2), max_passes=2)
    with pytest.raises(UserError, match="unknown options"):
        universal(model, x, y, L2(0.3), passes=2)
    with pytest.raises(UserError, match="does not support the l0"):
        universal(model, x, y, L0(2))
