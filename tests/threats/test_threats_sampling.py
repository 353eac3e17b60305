"""Random starts: inside the set, uniform in the ball (not only on its surface), reproducible."""

from __future__ import annotations

import math

import pytest
import torch

from advml.attacks.rng import KeyedRNG
from advml.errors import UserError
from advml.threats import L0, L1, L2, Linf

N = 20000


def wide(cls, eps, dim):
    """A ball far from the box's faces, so that the box does not cut it."""
    threat = cls(eps, low=-10.0, high=10.0)
    return threat, torch.zeros(N, dim, dtype=torch.float64)


@pytest.mark.parametrize("cls", [L2, L1])
@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_radius_distribution_is_uniform_in_the_ball(cls, dim):
    """For a uniform point of a d-dimensional ball, P(||delta|| <= r eps) = r^d."""
    threat, x = wide(cls, 1.0, dim)
    delta = threat.random_start(x, torch.Generator().manual_seed(0)) - x
    norms = threat.norm(delta)
    assert (norms <= 1.0 + 1e-12).all()
    for r in (0.3, 0.6, 0.9):
        expected = r**dim
        sd = math.sqrt(expected * (1 - expected) / N)
        assert abs((norms <= r).double().mean().item() - expected) < 4 * sd + 1e-3


@pytest.mark.parametrize("cls", [L2, L1])
def test_directions_are_symmetric(cls):
    threat, x = wide(cls, 1.0, 3)
    delta = threat.random_start(x, torch.Generator().manual_seed(1)) - x
    assert delta.mean(0).abs().max() < 0.02
    positive = (delta > 0).double().mean(0)
    assert ((positive - 0.5).abs() < 0.02).all()


def test_l1_marginal_matches_the_cross_polytope():
    """In d dimensions the first coordinate of a uniform point of the L1 ball satisfies
    P(|delta_1| > t) = (1 - t)^d."""
    threat, x = wide(L1, 1.0, 3)
    delta = threat.random_start(x, torch.Generator().manual_seed(2)) - x
    for t in (0.1, 0.3, 0.6):
        assert abs((delta[:, 0].abs() > t).double().mean().item() - (1 - t) ** 3) < 0.015


def test_linf_is_uniform_on_the_intersection():
    x = torch.tensor([[0.02, 0.5, 0.97]], dtype=torch.float64).repeat(N, 1)
    threat = Linf(0.1)
    z = threat.random_start(x, torch.Generator().manual_seed(3))
    lo = torch.tensor([0.0, 0.4, 0.87], dtype=torch.float64)
    hi = torch.tensor([0.12, 0.6, 1.0], dtype=torch.float64)
    assert ((z >= lo) & (z <= hi)).all()
    torch.testing.assert_close(z.mean(0), (lo + hi) / 2, rtol=0, atol=0.003)
    torch.testing.assert_close(z.var(0), (hi - lo) ** 2 / 12, rtol=0.05, atol=0)
    # no mass piles up on the box's faces (as clipping a uniform point of the ball would do)
    assert (z[:, 0] == 0).double().mean() < 0.001


@pytest.mark.parametrize("threat", [Linf(0.3), L2(1.0), L1(2.0), L0(3), L2(0.5, -1, 2)])
def test_random_start_inside(threat):
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(64, 1, 8, 8, generator=gen) * (threat.high - threat.low) + threat.low
    z = threat.random_start(x, gen)
    assert z.shape == x.shape and z.dtype == x.dtype
    assert threat.contains(z, x).all()
    assert not torch.equal(z, x)


def test_l0_changes_k_features():
    x = torch.full((500, 20), 0.5, dtype=torch.float64)
    z = L0(4).random_start(x, torch.Generator().manual_seed(5))
    assert ((z != x).sum(1) == 4).all()
    changed = (z != x).double().mean(0)  # every feature equally likely
    assert (changed - 0.2).abs().max() < 0.07


def test_per_sample_eps():
    x = torch.full((3, 100), 0.5, dtype=torch.float64)
    eps = torch.tensor([0.0, 0.1, 0.4])
    for threat in (Linf(eps), L2(eps), L1(eps)):
        z = threat.random_start(x, torch.Generator().manual_seed(6))
        assert torch.equal(z[0], x[0])
        norms = threat.norm(z - x)
        assert (norms <= eps.double() + 1e-12).all() and (norms[1:] > 0).all()


def test_reproducible_with_a_generator():
    x = torch.rand(5, 10)
    for threat in (Linf(0.1), L2(0.5), L1(1.0), L0(2)):
        a = threat.random_start(x, torch.Generator().manual_seed(7))
        b = threat.random_start(x, torch.Generator().manual_seed(7))
        c = threat.random_start(x, torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_keyed_source_is_batch_invariant():
    """With a per-sample keyed source, a sample's start does not depend on its batch."""
    x = torch.rand(10, 1, 4, 4)
    threat = L2(0.5)
    whole = threat.random_start(x, KeyedRNG.for_inputs(x, seed=3))
    first = threat.random_start(x[:3], KeyedRNG.for_inputs(x[:3], seed=3))
    rest = threat.random_start(x[3:], KeyedRNG.for_inputs(x[3:], seed=3))
    assert torch.equal(whole, torch.cat([first, rest]))


def test_unbounded_random_start_is_refused():
    x = torch.zeros(2, 3)
    for threat in (L2(float("inf")), L1(float("inf")), Linf(float("inf"), -math.inf, math.inf)):
        with pytest.raises(UserError, match="random start"):
            threat.random_start(x)
    z = Linf(float("inf")).random_start(x)  # the whole box: uniform in it
    assert ((z >= 0) & (z <= 1)).all()


def test_bad_generator():
    with pytest.raises(UserError, match="generator"):
        Linf(0.1).random_start(torch.zeros(2, 3), generator="seed")  # type: ignore[arg-type]
