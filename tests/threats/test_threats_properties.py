"""Property tests (hypothesis): projections land inside, are idempotent and non-expansive,
and never lose to the closest of many feasible points."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advml.threats import L0, L1, L2, Linf

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def problems(draw):
    n = draw(st.integers(1, 4))
    d = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["linf", "l2", "l1", "l0"]))
    low = draw(st.sampled_from([0.0, -1.0, -3.5]))
    high = low + draw(st.sampled_from([1.0, 0.25, 4.0]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(n, d, generator=gen, dtype=dtype)
    # put some features exactly on the box's faces
    faces = torch.rand(n, d, generator=gen) < 0.2
    x = torch.where(faces, torch.full_like(x, low), x)
    scale = draw(st.sampled_from([0.01, 0.3, 3.0, 100.0]))
    v = x + scale * torch.randn(n, d, generator=gen, dtype=dtype)
    per_sample = draw(st.booleans())
    if kind == "l0":
        k = torch.randint(0, d + 1, (n,), generator=gen) if per_sample else draw(st.integers(0, d))
        return L0(k, low, high), x, v, gen
    eps = draw(st.sampled_from([0.0, 1e-3, 0.1, 0.7, 5.0]))
    if per_sample:
        eps = torch.rand(n, generator=gen, dtype=torch.float64) * eps
    cls = {"linf": Linf, "l2": L2, "l1": L1}[kind]
    return cls(eps, low, high), x, v, gen


@SETTINGS
@given(problems())
def test_projection_inside_and_idempotent(problem):
    threat, x, v, _ = problem
    z = threat.project(v, x)
    assert z.dtype == x.dtype and z.shape == x.shape
    assert threat.contains(z, x).all()
    again = threat.project(z, x)
    tol = 1e-5 if x.dtype == torch.float32 else 1e-12
    assert ((again - z).abs() <= tol * (1 + z.abs())).all()


@SETTINGS
@given(problems())
def test_projection_beats_feasible_points(problem):
    threat, x, v, gen = problem
    z = threat.project(v, x)
    ours = ((z - v) ** 2).sum(1)
    tol = 1e-4 if x.dtype == torch.float32 else 1e-10
    for _ in range(10):
        w = threat.random_start(x, gen)
        assert (ours <= ((w - v) ** 2).sum(1) * (1 + tol) + tol).all()
    assert (ours <= ((x - v) ** 2).sum(1) * (1 + tol) + tol).all()


@SETTINGS
@given(problems(), st.integers(0, 2**31 - 1))
def test_projection_is_non_expansive(problem, seed):
    """Projections onto convex sets are 1-Lipschitz (L0 is not convex: skipped)."""
    threat, x, v, _ = problem
    if threat.name == "l0":
        return
    gen = torch.Generator().manual_seed(seed)
    w = v + torch.randn(v.shape, generator=gen, dtype=v.dtype)
    a, b = threat.project(v, x), threat.project(w, x)
    tol = 1e-4 if x.dtype == torch.float32 else 1e-10
    assert ((a - b).norm(dim=1) <= (v - w).norm(dim=1) * (1 + tol) + tol).all()


@SETTINGS
@given(problems())
def test_random_start_inside(problem):
    threat, x, _, gen = problem
    z = threat.random_start(x, gen)
    assert threat.contains(z, x).all()
