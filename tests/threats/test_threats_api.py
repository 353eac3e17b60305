"""The threat-model API: validation, immutability, repr, norms, membership, ascent directions."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
import torch

from advml.errors import UserError
from advml.threats import L0, L1, L2, Linf, ThreatModel, make


@pytest.mark.parametrize("cls", [Linf, L2, L1])
@pytest.mark.parametrize(
    ("eps", "message"),
    [
        (-0.1, "negative"),
        (float("nan"), "NaN"),
        (torch.tensor([0.1, -0.2]), "negative"),
        (torch.tensor([0.1, float("nan")]), "NaN"),
        (torch.zeros(2, 2), "shape"),
        ("big", "number"),
        (True, "bool"),
        (None, "number"),
    ],
)
def test_bad_eps(cls, eps, message):
    with pytest.raises(UserError, match=message):
        cls(eps)


@pytest.mark.parametrize("k", [-1, 1.5, "3", True, torch.tensor([1, -1]), torch.tensor([0.5])])
def test_bad_k(k):
    with pytest.raises(UserError):
        L0(k)


@pytest.mark.parametrize(("low", "high"), [(1.0, 0.0), (0.5, 0.5), (float("nan"), 1.0), ("a", 1)])
def test_bad_box(low, high):
    with pytest.raises(UserError):
        L2(0.1, low, high)


def test_bad_top_fraction():
    for frac in (0.0, -0.5, 1.5):
        with pytest.raises(UserError, match="top_fraction"):
            L1(1.0, top_fraction=frac)


def test_per_sample_eps_must_match_the_batch():
    threat = L2(torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(UserError, match="3 per-sample radii but the batch has 2"):
        threat.project(torch.zeros(2, 4), torch.zeros(2, 4))


def test_eps_forms():
    assert Linf(1).eps == 1.0 and isinstance(Linf(1).eps, float)
    assert Linf(torch.tensor(0.5)).eps == 0.5  # 0-d tensor -> float
    per = L2(torch.tensor([1, 2]))  # integer tensor -> float
    assert per.per_sample and per.eps.is_floating_point()
    assert Linf(math.inf).eps == math.inf


def test_eps_is_copied():
    eps = torch.tensor([0.1, 0.2])
    threat = Linf(eps)
    eps[0] = 5.0
    assert threat.eps[0].item() == pytest.approx(0.1)


def test_immutable_and_replace():
    threat = Linf(0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        threat.eps = 0.2  # type: ignore[misc]
    assert threat.with_eps(0.2).eps == 0.2 and threat.eps == 0.1
    assert L0(3).with_eps(5).k == 5
    with pytest.raises(UserError):
        threat.with_eps(-1.0)


def test_repr():
    assert repr(Linf(0.03)) == "Linf(eps=0.03, low=0, high=1)"
    assert repr(L2(0.5, -1, 1)) == "L2(eps=0.5, low=-1, high=1)"
    assert repr(L1(2.0)) == "L1(eps=2, low=0, high=1, top_fraction=0.05)"
    assert repr(L0(4)) == "L0(k=4, low=0, high=1)"
    assert (
        repr(L2(torch.tensor([0.1, 0.3]))) == "L2(eps=tensor(N=2, min=0.1, max=0.3), low=0, high=1)"
    )


def test_pickle_roundtrip():
    for threat in (
        Linf(0.1),
        L2(torch.tensor([0.1, 0.2])),
        L1(1.0, top_fraction=0.1),
        L0(3, -1, 1),
    ):
        copy = pickle.loads(pickle.dumps(threat))
        assert repr(copy) == repr(threat)


def test_names_and_make():
    assert [t.name for t in (Linf(1), L2(1), L1(1), L0(1))] == ["linf", "l2", "l1", "l0"]
    assert isinstance(make("Linf", 0.1), Linf) and isinstance(make("inf", 0.1), Linf)
    assert isinstance(make("l2", 0.1, -1, 1), L2) and make("l2", 0.1, -1, 1).low == -1
    with pytest.raises(UserError, match="unknown threat model"):
        make("l3", 0.1)
    assert all(isinstance(make(n, 1), ThreatModel) for n in ("linf", "l2", "l1", "l0"))


def test_eps_for_broadcasts():
    x = torch.zeros(3, 2, 4, 4, dtype=torch.float64)
    eps = L2(torch.tensor([0.1, 0.2, 0.3])).eps_for(x)
    assert eps.shape == (3, 1, 1, 1) and eps.dtype == torch.float64
    assert L2(0.5).eps_for(x).shape == (3, 1, 1, 1)


def test_norms():
    delta = torch.tensor([[3.0, -4.0, 0.0], [0.0, 0.0, 0.0]])
    assert Linf(1).norm(delta).tolist() == [4.0, 0.0]
    assert L2(1).norm(delta).tolist() == [5.0, 0.0]
    assert L1(1).norm(delta).tolist() == [7.0, 0.0]
    assert L0(1).norm(delta).tolist() == [2.0, 0.0]


def test_contains():
    x = torch.full((1, 4), 0.5)
    threat = L2(0.2)
    inside = x + torch.tensor([[0.2, 0.0, 0.0, 0.0]])
    assert threat.contains(inside, x).all()
    assert not threat.contains(x + torch.tensor([[0.21, 0.0, 0.0, 0.0]]), x).any()
    assert threat.contains(x + torch.tensor([[0.21, 0.0, 0.0, 0.0]]), x, atol=0.02).all()
    out_of_box = torch.tensor([[1.0 + 1e-7, 0.5, 0.5, 0.5]])
    assert not L2(10.0).contains(out_of_box, x).any()
    assert not L2(10.0).contains(torch.full((1, 4), float("nan")), x).any()
    assert not L0(1).contains(torch.tensor([[0.6, 0.6, 0.5, 0.5]]), x).any()
    assert L0(2).contains(torch.tensor([[0.6, 0.6, 0.5, 0.5]]), x).all()
    assert Linf(math.inf).contains(torch.rand(1, 4), x).all()


def test_contains_tolerance_is_small():
    x = torch.zeros(1, 3072)
    threat = L2(1.0)
    assert threat.default_atol(x).item() < 1e-4
    assert threat.default_atol(x.double()).item() < 1e-12


GRAD = torch.tensor([[0.5, -2.0, 0.0, 1.0, -0.1]])


def test_linf_direction_is_the_sign():
    assert torch.equal(Linf(1).ascent_direction(GRAD), GRAD.sign())


def test_l2_direction_is_unit():
    d = L2(1).ascent_direction(GRAD)
    torch.testing.assert_close(d, GRAD / GRAD.norm())
    assert torch.equal(L2(1).ascent_direction(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_l1_direction_is_sparse_and_unit():
    d = L1(1, top_fraction=0.4).ascent_direction(GRAD)  # ceil(0.4 * 5) = 2 features
    torch.testing.assert_close(d, torch.tensor([[0.0, -0.5, 0.0, 0.5, 0.0]]))
    # features at a bound whose gradient points outwards cannot move: skipped
    x_adv = torch.tensor([[0.5, 0.0, 0.5, 0.5, 0.5]])
    d = L1(1, top_fraction=0.4).ascent_direction(GRAD, x_adv)
    torch.testing.assert_close(d, torch.tensor([[0.5, 0.0, 0.0, 0.5, 0.0]]))


def test_l0_direction():
    d = L0(2).ascent_direction(GRAD)
    expected = torch.tensor([[0.0, -2.0, 0.0, 1.0, 0.0]])
    torch.testing.assert_close(d, expected / expected.norm())


@pytest.mark.parametrize(
    ("threat", "dual"),
    [
        (Linf(1), lambda g: g.abs().sum(1)),
        (L2(1), lambda g: g.norm(dim=1)),
        (L1(1, top_fraction=0.01), lambda g: g.abs().amax(1)),
    ],
)
def test_directions_are_steepest(threat, dual):
    """<g, d> over unit-norm d is maximized at the dual norm of g."""
    g = torch.randn(50, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = threat.ascent_direction(g)
    torch.testing.assert_close(threat.norm(d), torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close((g * d).sum(1), dual(g))
