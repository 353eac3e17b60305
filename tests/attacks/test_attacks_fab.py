"""FAB: the exact hyperplane step, minimal distances on affine models, strength on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize
from torch import nn

from advml import attacks
from advml.attacks.fab import hyperplane_step
from advml.threats import L1, L2, Linf


def reference_step(pt, w, b, p, low=0.0, high=1.0):
    """min ||delta||_p s.t. <w, pt + delta> + b = 0 and the box, by LP (p = 1, inf) or SLSQP."""
    d = len(pt)
    lo, hi = low - pt, high - pt
    rhs = -(w @ pt + b)
    if p == 2:
        r = minimize(
            lambda t: t @ t,
            np.zeros(d),
            jac=lambda t: 2 * t,
            bounds=list(zip(lo, hi, strict=True)),
            constraints=[{"type": "eq", "fun": lambda t: w @ t - rhs, "jac": lambda t: w}],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        ok = r.success and abs(w @ r.x - rhs) < 1e-8
        return np.linalg.norm(r.x) if ok else None
    if p == 1:
        bounds = [(0, max(h, 0)) for h in hi] + [(0, max(-v, 0)) for v in lo]
        r = linprog(np.ones(2 * d), A_eq=np.concatenate([w, -w])[None], b_eq=[rhs], bounds=bounds)
        return r.fun if r.status == 0 else None
    a_ub = np.vstack(
        [np.hstack([np.eye(d), -np.ones((d, 1))]), np.hstack([-np.eye(d), -np.ones((d, 1))])]
    )
    c = np.zeros(d + 1)
    c[-1] = 1
    bounds = [*zip(lo, hi, strict=True), (0, None)]
    r = linprog(
        c,
        A_ub=a_ub,
        b_ub=np.zeros(2 * d),
        A_eq=np.concatenate([w, [0]])[None],
        b_eq=[rhs],
        bounds=bounds,
    )
    return r.fun if r.status == 0 else None


@pytest.mark.parametrize("p", [1.0, 2.0, float("inf")])
def test_hyperplane_step_is_the_smallest(p):
    rng = np.random.default_rng(0)
    norm = {
        1.0: lambda v: np.abs(v).sum(),
        2.0: np.linalg.norm,
        float("inf"): lambda v: np.abs(v).max(),
    }[p]
    checked = 0
    for _ in range(80):
        d = int(rng.integers(1, 6))
        pt = rng.uniform(0, 1, d)
        pt[rng.random(d) < 0.2] = 1.0
        w = rng.normal(size=d)
        w[rng.random(d) < 0.15] = 0.0
        b = float(rng.normal() * rng.choice([0.1, 1.0, 3.0]))
        delta = hyperplane_step(
            torch.tensor(pt)[None],
            torch.tensor(w)[None],
            torch.tensor([b], dtype=torch.float64),
            0.0,
            1.0,
            p,
        )[0].numpy()
        z = pt + delta
        assert ((z >= 0) & (z <= 1)).all()
        best = reference_step(pt, w, b, p)
        if best is None:  # unreachable inside the box: every feature moves to its bound
            assert abs(w @ z + b) > 0
            continue
        checked += 1
        assert abs(w @ z + b) < 1e-9
        assert norm(delta) <= best + 1e-9
    assert checked > 40


@pytest.mark.parametrize(
    ("threat", "dual"),
    [(L2(float("inf")), 2), (Linf(float("inf")), 1), (L1(float("inf")), float("inf"))],
)
def test_fab_on_an_affine_classifier_is_nearly_minimal(threat, dual):
    """For f(x) = Wx + b with two classes the minimal distance is |f_1 - f_0| / ||w_1 - w_0||_q."""
    model = nn.Linear(6, 2).double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, 6, generator=gen, dtype=torch.float64))
    x = 0.5 + 0.02 * torch.randn(8, 6, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
        y = logits.argmax(1)
    w = model.weight[1] - model.weight[0]
    gap = (logits[:, 1] - logits[:, 0]).abs()
    distance = gap / torch.linalg.vector_norm(w, ord=dual)
    result = attacks.fab(model, x, y, threat, steps=50)
    assert result.success.all()
    assert (result.norm >= distance * (1 - 1e-9)).all()
    assert (result.norm <= distance * 1.06 + 1e-9).all()


def test_fab_is_as_strong_as_apgd_on_digits(digits_model, digits):
    x, y = digits
    threat = Linf(0.1)
    fab = attacks.fab(digits_model, x, y, threat)
    apgd = attacks.apgd_ce(digits_model, x, y, threat)
    assert 1 - fab.success_rate <= 1 - apgd.success_rate + 0.02
    assert threat.contains(fab.x_adv, x).all()


def test_fab_minimum_norm_matches_deepfool_on_digits(digits_model, digits):
    x, y = digits
    threat = L2(float("inf"))
    fab = attacks.fab(digits_model, x, y, threat, steps=50)
    deepfool = attacks.deepfool(digits_model, x, y, threat)
    both = fab.success & deepfool.success & (fab.norm > 0)
    assert both.float().mean() > 0.9
    assert fab.norm[both].mean() <= deepfool.norm[both].mean() * 1.02


def test_fab_t_is_untargeted(digits_model, digits):
    x, y = digits
    result = attacks.fab_t(digits_model, x[:50], y[:50], L2(0.5), n_targets=2, steps=20)
    assert torch.equal(result.success, result.logits.argmax(1) != y[:50])
    assert result.success.any()


def test_fab_targeted(digits_model, digits):
    x, y = digits
    target = (y[:40] + 3) % 10
    result = attacks.fab(digits_model, x[:40], target, L2(float("inf")), targeted=True, steps=50)
    assert torch.equal(result.success, result.logits.argmax(1) == target)
    assert result.success_rate > 0.9
