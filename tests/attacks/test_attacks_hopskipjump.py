"""HopSkipJumpAttack (decision-based, minimum norm): the attack contract, that only the
decision is used, exact query counts and the budget, convergence to the true distance on a
linear model, and on the digits fixture that its median L2 norm shrinks with the iterations
towards DeepFool's and FAB's.

Measured on the first 100 digits test images (minimum-norm, eps = inf): median L2 norm
DeepFool 0.401, FAB 0.400; HopSkipJump 0.572 (5 iterations, ~900 queries), 0.522 (10),
0.510 (20, ~6,200 queries), 0.505 (40, ~17,000 queries). L∞: FAB 0.076, HopSkipJump 0.094
(10), 0.089 (40). On a linear model it reaches the exact distance within 1 %.
"""

from __future__ import annotations

import math

import pytest
import torch
from attack_toys import toy_batch, toy_mlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advml import attacks
from advml.attacks.hopskipjump import MAX_HALVINGS, hopskipjump
from advml.errors import UserError
from advml.threats import L2, Linf, make

FAST = {"steps": 3, "init_evals": 10, "init_trials": 20}
EPS = {"linf": 0.1, "l2": 0.3}
NORMS = ["linf", "l2"]
INF = float("inf")


class Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.model(x)


class OneHot(nn.Module):
    """The same decisions as ``model`` with uninformative scores (a label-only oracle)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        return nn.functional.one_hot(logits.argmax(1), logits.shape[1]).to(x.dtype)


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


def linear_problem(n=20, d=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(d, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, d, generator=gen, dtype=torch.float64))
        model.bias.copy_(-0.5 * model.weight.sum(dim=1))  # the boundary passes through 0.5
    x = (0.5 + 0.05 * torch.randn(n, d, generator=gen, dtype=torch.float64)).clamp(0, 1)
    with torch.no_grad():
        logits = model(x)
    w = (model.weight[0] - model.weight[1]).detach()
    gap = (logits[:, 0] - logits[:, 1]).abs()
    return model.eval(), x, logits.argmax(1), gap / w.norm(), gap / w.abs().sum()


# ---- contract ------------------------------------------------------------------------------


def test_registered():
    info = attacks.registry.info("hopskipjump")
    assert info.kind == "decision" and info.minimum_norm and info.targeted
    assert info.norms == {"l2", "linf"} and "Chen" in info.paper


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("eps", [0.05, 0.3, INF])
def test_result_inside_threat_and_truthful(norm, eps):
    model = toy_mlp()
    x, y = toy_batch(n=16)
    threat = make(norm, eps)
    result = hopskipjump(model, x, y, threat, **FAST)
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert threat.contains(result.x_adv, x).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
    assert torch.equal(result.success, pred != y)
    assert torch.allclose(result.norm, threat.norm(result.x_adv - x))
    # a sample that fails comes back unchanged (no perturbation without success)
    assert torch.equal(result.x_adv[~result.success], x[~result.success])
    assert result.attack == "hopskipjump"


def test_uses_only_the_decision():
    """The same decisions with different scores give the very same attack."""
    model = toy_mlp(5)
    x, y = toy_batch(n=10, dim=5)
    for threat in (L2(INF), Linf(0.2)):
        a = hopskipjump(model, x, y, threat, **FAST)
        b = hopskipjump(OneHot(model), x, y, threat, **FAST)
        assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)


@pytest.mark.parametrize("norm", NORMS)
def test_deterministic_and_batch_invariant(norm):
    model = toy_mlp(5, dtype=torch.float64)
    x, y = toy_batch(n=10, dim=5, dtype=torch.float64)
    threat = make(norm, INF)
    whole = hopskipjump(model, x, y, threat, **FAST)
    again = hopskipjump(model, x, y, threat, **FAST)
    assert torch.equal(whole.x_adv, again.x_adv)
    other = hopskipjump(model, x, y, threat, seed=4, **FAST)
    assert not torch.equal(whole.x_adv, other.x_adv)
    first = hopskipjump(model, x[:4], y[:4], threat, **FAST)
    second = hopskipjump(model, x[4:], y[4:], threat, **FAST)
    torch.testing.assert_close(
        whole.x_adv, torch.cat([first.x_adv, second.x_adv]), rtol=0, atol=1e-12
    )
    assert torch.equal(whole.queries, torch.cat([first.queries, second.queries]))
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    shuffled = hopskipjump(model, x[perm], y[perm], threat, **FAST)
    torch.testing.assert_close(shuffled.x_adv, whole.x_adv[perm], rtol=0, atol=1e-12)
    chunked = hopskipjump(model, x, y, threat, max_batch=7, **FAST)
    torch.testing.assert_close(chunked.x_adv, whole.x_adv, rtol=0, atol=1e-12)


def test_model_state_untouched_and_no_autograd():
    model = Mixed()
    model.train()
    model.drop.eval()
    model.fc1.bias.requires_grad_(False)
    modes = {k: m.training for k, m in model.named_modules()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = toy_batch()
    expected = hopskipjump(model, x, y, L2(0.3), **FAST)
    with torch.inference_mode():
        result = hopskipjump(model, x, y, L2(0.3), **FAST)
    assert torch.equal(result.x_adv, expected.x_adv)
    assert {k: m.training for k, m in model.named_modules()} == modes
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("norm", NORMS)
def test_float64_per_sample_eps_and_empty(norm):
    model = toy_mlp(dtype=torch.float64)
    x, y = toy_batch(dtype=torch.float64)
    eps = torch.linspace(0.0, 2 * EPS[norm], x.shape[0])
    threat = make(norm, eps)
    result = hopskipjump(model, x, y, threat, **FAST)
    assert result.x_adv.dtype == torch.float64
    assert threat.contains(result.x_adv, x).all()
    assert torch.equal(result.x_adv[0], x[0]) and result.queries[0] == 2
    empty = hopskipjump(model, x[:0], y[:0], threat.with_eps(0.1), **FAST)
    assert empty.x_adv.shape == (0, 2)


def test_targeted_with_starting_points():
    model = toy_mlp()
    x, y = toy_batch(n=30)
    target = (y + 1) % 4
    # starting points: inputs the model puts in the target class
    pool = torch.rand(2000, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pool_pred = model(pool).argmax(1)
    has = torch.stack([(pool_pred == t).any() for t in target])
    start = torch.stack([pool[(pool_pred == t).nonzero()[0, 0]] if h else x[i]
                         for i, (t, h) in enumerate(zip(target, has, strict=True))])  # fmt: skip
    result = hopskipjump(model, x, target, L2(INF), targeted=True, starting_points=start, steps=5)
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) == target)
    assert result.success[has].all()


def test_errors():
    model = toy_mlp()
    x, y = toy_batch()
    with pytest.raises(UserError, match="gamma"):
        hopskipjump(model, x, y, L2(0.3), gamma=0)
    with pytest.raises(UserError, match="starting_points"):
        hopskipjump(model, x, y, L2(0.3), starting_points=x[:3])
    with pytest.raises(UserError, match="starting_points"):
        hopskipjump(model, x, y, L2(0.3), starting_points=x + 2)
    with pytest.raises(UserError, match="bounded box"):
        hopskipjump(model, x, y, L2(0.3, low=-INF, high=INF))
    with pytest.raises(UserError, match="does not support the l1"):
        hopskipjump(model, x, y, make("l1", 0.5))


# ---- queries -------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
def test_query_counts_are_exact_per_sample(norm):
    base = toy_mlp(3)
    x, y = toy_batch(n=8, dim=3)
    threat = make(norm, INF)
    counted = Counting(base)
    whole = hopskipjump(counted, x, y, threat, **FAST)
    assert counted.rows == int(whole.queries.sum())
    for i in range(x.shape[0]):
        single = Counting(base)
        alone = hopskipjump(single, x[i : i + 1], y[i : i + 1], threat, **FAST)
        assert single.rows == int(alone.queries[0]) == int(whole.queries[i])


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("budget", [2, 30, 150, 400, 1000])
def test_budget_is_never_exceeded(norm, budget):
    model = toy_mlp()
    x, y = toy_batch(n=16)
    for eps in (INF, EPS[norm]):
        result = hopskipjump(model, x, y, make(norm, eps), max_queries=budget, steps=10)
        assert (result.queries <= budget).all(), result.queries
    unlimited = hopskipjump(model, x, y, make(norm, INF), steps=10)
    assert unlimited.queries.max() > 400  # the budget did bind


def test_samples_inside_the_ball_stop_querying():
    model = toy_mlp()
    x, y = toy_batch(n=30)
    loose = hopskipjump(model, x, y, L2(2.0), steps=8)
    tight = hopskipjump(model, x, y, L2(INF), steps=8)
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    assert (loose.queries[clean_wrong] == 2).all()
    broken = loose.success & ~clean_wrong
    assert broken.any()
    assert (loose.queries[broken] < tight.queries[broken]).all()


# ---- convergence ---------------------------------------------------------------------------


def test_reaches_the_distance_to_a_linear_boundary():
    model, x, y, dist_l2, dist_linf = linear_problem()
    r = hopskipjump(model, x, y, L2(INF), steps=20)
    ratio = r.norm / dist_l2
    assert r.success.all() and (ratio >= 1 - 1e-6).all() and ratio.median() < 1.02, ratio
    r = hopskipjump(model, x, y, Linf(INF), steps=20)
    ratio = r.norm / dist_linf
    assert r.success.all() and (ratio >= 1 - 1e-6).all() and ratio.median() < 1.03, ratio


def test_finite_eps_projects_or_returns_x():
    """With eps below the distance to the boundary nothing can succeed: x comes back; with
    eps above it every sample succeeds inside the ball."""
    model, x, y, dist_l2, _ = linear_problem(n=10)
    small = hopskipjump(model, x, y, L2(0.5 * float(dist_l2.min())), steps=5)
    assert not small.success.any() and torch.equal(small.x_adv, x)
    large = hopskipjump(model, x, y, L2(1.5 * float(dist_l2.max())), steps=10)
    assert large.success.all()
    assert L2(1.5 * float(dist_l2.max())).contains(large.x_adv, x).all()


# ---- hypothesis ----------------------------------------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    norm=st.sampled_from(NORMS),
    dim=st.integers(1, 6),
    classes=st.integers(2, 5),
    n=st.integers(1, 5),
    eps=st.sampled_from([0.0, 0.01, 0.1, 0.5, 2.0, INF]),
    per_sample=st.booleans(),
    targeted=st.booleans(),
    budget=st.sampled_from([None, 5, 60, 300]),
    seed=st.integers(0, 2**20),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_property_inside_truthful_within_budget(
    norm, dim, classes, n, eps, per_sample, targeted, budget, seed, dtype
):
    gen = torch.Generator().manual_seed(seed)
    model = toy_mlp(dim, classes, seed=seed, dtype=dtype)
    x = torch.rand(n, dim, generator=gen, dtype=dtype)
    x[torch.rand(n, dim, generator=gen) < 0.2] = 1.0
    y = torch.randint(0, classes, (n,), generator=gen)
    radius = torch.rand(n, generator=gen, dtype=torch.float64) * eps if per_sample else eps
    threat = make(norm, radius)
    result = hopskipjump(
        model, x, y, threat, targeted=targeted, max_queries=budget, seed=seed, **FAST
    )
    assert threat.contains(result.x_adv, x).all()
    if budget is not None:
        assert (result.queries <= budget).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
        clean = model(x).argmax(1)
    assert torch.equal(result.success, pred == y if targeted else pred != y)
    assert (result.success | ~(clean == y if targeted else clean != y)).all()


# ---- the digits fixture --------------------------------------------------------------------


def test_median_l2_norm_shrinks_towards_deepfool_on_digits(digits_model, digits):
    x, y = digits
    x, y = x[:60], y[:60]
    threat = L2(INF)
    reference = min(
        attacks.deepfool(digits_model, x, y, threat).norm.median().item(),
        attacks.fab(digits_model, x, y, threat).norm.median().item(),
    )
    medians = []
    for steps in (2, 6, 20):
        result = hopskipjump(digits_model, x, y, threat, steps=steps)
        assert result.success.all()
        medians.append(result.norm.median().item())
    assert medians[0] > medians[1] > medians[2], medians
    assert medians[2] < 1.5 * reference, (medians, reference)


def test_linf_close_to_fab_on_digits(digits_model, digits):
    x, y = digits
    x, y = x[:40], y[:40]
    threat = Linf(INF)
    fab = attacks.fab(digits_model, x, y, threat).norm.median().item()
    result = hopskipjump(digits_model, x, y, threat, steps=10)
    assert result.success.all()
    assert result.norm.median().item() < 1.5 * fab


def test_halving_constant_is_documented():
    assert MAX_HALVINGS >= 10 and math.isfinite(MAX_HALVINGS)
