"""Projections are exact: the nearest point of ball ∩ box, checked against a brute-force
solver (SLSQP) on small vectors, subset enumeration for L0, and the variational inequality
of convex projections on large ones."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from advml.threats import L0, L1, L2, Linf

BOXES = [(0.0, 1.0), (-1.0, 2.0)]


def slsqp_projection(v: np.ndarray, x: np.ndarray, eps: float, p: int, low: float, high: float):
    """Nearest point to v in {z : ||z - x||_p <= eps, low <= z <= high} by a generic solver."""
    d = len(v)
    if p == 2:
        result = minimize(
            lambda z: np.sum((z - v) ** 2),
            x.copy(),
            jac=lambda z: 2 * (z - v),
            bounds=[(low, high)] * d,
            constraints=[
                {
                    "type": "ineq",
                    "fun": lambda z: eps**2 - np.sum((z - x) ** 2),
                    "jac": lambda z: -2 * (z - x),
                }
            ],
            method="SLSQP",
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        return result.x
    # L1: z = x + a - b with a, b >= 0 and sum(a + b) <= eps (a smooth QP)
    eye = np.eye(d)
    result = minimize(
        lambda w: np.sum((x + w[:d] - w[d:] - v) ** 2),
        np.zeros(2 * d),
        jac=lambda w: np.concatenate([2 * (x + w[:d] - w[d:] - v), -2 * (x + w[:d] - w[d:] - v)]),
        bounds=[(0, None)] * (2 * d),
        constraints=[
            {"type": "ineq", "fun": lambda w: eps - w.sum(), "jac": lambda w: -np.ones(2 * d)},
            {
                "type": "ineq",
                "fun": lambda w: x + w[:d] - w[d:] - low,
                "jac": lambda w: np.hstack([eye, -eye]),
            },
            {
                "type": "ineq",
                "fun": lambda w: high - x - w[:d] + w[d:],
                "jac": lambda w: np.hstack([-eye, eye]),
            },
        ],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return x + result.x[:d] - result.x[d:]


@pytest.mark.parametrize(("cls", "p"), [(L2, 2), (L1, 1)])
@pytest.mark.parametrize("box", BOXES)
def test_projection_is_nearest_against_slsqp(cls, p, box):
    rng = np.random.default_rng(0)
    low, high = box
    for _ in range(60):
        d = int(rng.integers(1, 7))
        x = rng.uniform(low, high, size=d)
        x[rng.random(d) < 0.2] = low  # some features on the box's faces
        v = x + rng.normal(size=d) * rng.choice([0.1, 0.5, 2.0])
        eps = float(rng.choice([0.0, 0.05, 0.3, 1.0, 3.0]))
        threat = cls(eps, low, high)
        xt, vt = torch.tensor(x)[None], torch.tensor(v)[None]
        z = threat.project(vt, xt)
        assert threat.contains(z, xt).all()
        reference = slsqp_projection(v, x, eps, p, low, high)
        ours = float(((z[0] - vt[0]) ** 2).sum())
        theirs = float(np.sum((reference - v) ** 2))
        assert ours <= theirs + 1e-9, (d, eps, x, v)


def test_l2_projection_is_not_rescale_then_clip():
    """The classic "rescale onto the sphere, then clip" answer is farther than the projection."""
    x = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    v = torch.tensor([[-1.0, 0.6]], dtype=torch.float64)
    threat = L2(0.3)
    z = threat.project(v, x)
    naive = (x + (v - x) * 0.3 / (v - x).norm()).clamp(0, 1)
    assert (z - v).norm() < (naive - v).norm() - 1e-3
    # the blocked coordinate gives its budget to the free one, which reaches v exactly
    torch.testing.assert_close(z, torch.tensor([[0.0, 0.6]], dtype=torch.float64))


def test_l1_projection_is_not_project_then_clip():
    x = torch.tensor([[0.0, 0.5, 0.5]], dtype=torch.float64)
    v = torch.tensor([[-1.0, 0.9, 0.5]], dtype=torch.float64)
    threat = L1(0.3)
    z = threat.project(v, x)
    # Duchi's projection of (v - x) = (-1, 0.4, 0) on the L1 ball of radius 0.3 is
    # (-0.3, 0, 0) (threshold 0.7); clipping then leaves x unchanged: distance^2 = 1.16.
    assert float(((z - v) ** 2).sum()) < 1.16 - 1e-3
    torch.testing.assert_close(z, torch.tensor([[0.0, 0.8, 0.5]], dtype=torch.float64))


def test_linf_projection_is_the_clamp():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(20, 7, generator=gen)
    v = x + torch.randn(20, 7, generator=gen)
    eps = torch.rand(20, generator=gen) * 0.3
    z = Linf(eps).project(v, x)
    expected = torch.min(torch.max(v, x - eps[:, None]), x + eps[:, None]).clamp(0, 1)
    assert torch.equal(z, expected)


@pytest.mark.parametrize("box", BOXES)
def test_l0_projection_against_enumeration(box):
    rng = np.random.default_rng(1)
    low, high = box
    for _ in range(40):
        d = int(rng.integers(1, 6))
        k = int(rng.integers(0, d + 1))
        x = rng.uniform(low, high, size=d)
        v = x + rng.normal(size=d)
        best = np.inf
        clipped = np.clip(v, low, high)
        for r in range(k + 1):
            for subset in itertools.combinations(range(d), r):
                z = x.copy()
                z[list(subset)] = clipped[list(subset)]
                best = min(best, float(np.sum((z - v) ** 2)))
        threat = L0(k, low, high)
        xt, vt = torch.tensor(x)[None], torch.tensor(v)[None]
        z = threat.project(vt, xt)
        assert threat.contains(z, xt).all()
        assert float(((z - vt) ** 2).sum()) <= best + 1e-12


@pytest.mark.parametrize(
    "threat", [Linf(0.1), L2(0.5), L1(2.0), L0(5), L2(3.0, -1, 2), L1(0.7, -1, 2)]
)
def test_idempotent_and_inside_large(threat):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(16, 3, 32, 32, generator=gen) * (threat.high - threat.low) + threat.low
    x[:, 0, :4] = threat.low  # faces of the box
    v = x + torch.randn(x.shape, generator=gen) * 0.3
    z = threat.project(v, x)
    assert threat.contains(z, x).all()
    again = threat.project(z, x)
    torch.testing.assert_close(again, z, rtol=0, atol=1e-6)


@pytest.mark.parametrize("threat", [L2(0.5), L1(3.0), Linf(0.05)])
def test_variational_inequality(threat):
    """z = P(v) iff <v - z, w - z> <= 0 for every w in the set: checked on random w."""
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(8, 50, generator=gen, dtype=torch.float64)
    v = x + torch.randn(8, 50, generator=gen, dtype=torch.float64) * 0.5
    z = threat.project(v, x)
    for _ in range(20):
        w = threat.random_start(x, gen)
        w = w + (x - w) * torch.rand(8, 1, generator=gen, dtype=torch.float64)  # interior too
        assert threat.contains(w, x).all()
        assert (((v - z) * (w - z)).sum(dim=1) <= 1e-9).all()


@pytest.mark.parametrize("cls", [L2, L1, Linf])
def test_per_sample_eps_equals_one_by_one(cls):
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(6, 10, generator=gen, dtype=torch.float64)
    v = x + torch.randn(6, 10, generator=gen, dtype=torch.float64)
    eps = torch.tensor([0.0, 0.1, 0.5, 1.0, 2.0, float("inf")], dtype=torch.float64)
    together = cls(eps).project(v, x)
    for i in range(6):
        alone = cls(float(eps[i])).project(v[i : i + 1], x[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, rtol=0, atol=1e-12)
    assert torch.equal(together[0], x[0])  # eps = 0
    assert torch.equal(together[5], v[5].clamp(0, 1))  # eps = inf: the box alone


def test_projection_of_points_inside_is_identity():
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(10, 20, generator=gen)
    for threat in (L2(1.0), L1(3.0), Linf(0.2)):
        w = threat.random_start(x, gen)
        assert torch.equal(threat.project(w, x), w)


def test_project_shape_mismatch():
    from advml.errors import UserError

    with pytest.raises(UserError, match="shape"):
        L2(0.1).project(torch.zeros(2, 3), torch.zeros(2, 4))
