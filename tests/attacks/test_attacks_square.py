"""Square Attack (score-based): the attack contract, exact query counts and the budget, the
paper's schedule and bumps, and its strength on the digits fixture, including a model whose
gradients are masked.

Measured on the digits fixture (360 test images, robust accuracy): L∞ 0.1: APGD-CE 28.1 %,
Square 29.7 % (1000 queries), 28.9 % (5000); L∞ 0.15: APGD-CE 3.6 %, Square 3.9 % (1000),
3.3 % (5000); L2 0.5: APGD-CE 35.8 %, Square 46.7 % (5000). Behind input quantization
``round(16 x) / 16`` (gradient zero almost everywhere, clean accuracy unchanged) at L∞ 0.1:
PGD 95.8 %, Square 13.3 % (1000 queries).
"""

from __future__ import annotations

import pytest
import torch
from attack_toys import toy_batch, toy_mlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advml import attacks
from advml.attacks.square import p_schedule, pseudo_gaussian_bump, square
from advml.errors import UserError
from advml.threats import L2, Linf, make

FAST = {"n_queries": 40}
EPS = {"linf": 0.1, "l2": 0.3}
NORMS = ["linf", "l2"]


class Counting(nn.Module):
    """Counts the rows the model is asked about."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.model(x)


class Quantized(nn.Module):
    """``model(round(levels x) / levels)``: its input gradient is zero almost everywhere."""

    def __init__(self, model: nn.Module, levels: int = 16) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)


class Mixed(nn.Module):
    """BatchNorm + dropout, one frozen parameter, one submodule already in eval mode."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


def robust(result) -> float:
    return 1.0 - result.success_rate


# ---- contract ------------------------------------------------------------------------------


def test_registered():
    info = attacks.registry.info("square")
    assert info.kind == "score" and info.targeted and not info.minimum_norm
    assert info.norms == {"linf", "l2"} and "Andriushchenko" in info.paper


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("shape", [(2,), (1, 8, 8), (3, 5, 6), (2, 7)])
def test_result_inside_threat_and_truthful(norm, shape):
    torch.manual_seed(0)
    d = torch.Size(shape).numel()
    model = nn.Sequential(nn.Flatten(), toy_mlp(d, 4))
    x = torch.rand(10, *shape)
    y = torch.randint(0, 4, (10,))
    threat = make(norm, EPS[norm])
    result = square(model, x, y, threat, **FAST)
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert threat.contains(result.x_adv, x).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
    assert torch.equal(result.success, pred != y)
    assert torch.allclose(result.norm, threat.norm(result.x_adv - x))
    assert result.queries.dtype == torch.long and (result.queries <= FAST["n_queries"]).all()
    assert result.attack == "square"


@pytest.mark.parametrize("norm", NORMS)
def test_deterministic_and_seeded(norm):
    model = toy_mlp(30)
    x, y = toy_batch(dim=30)
    threat = make(norm, EPS[norm])
    a, b = square(model, x, y, threat, **FAST), square(model, x, y, threat, **FAST)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    c = square(model, x, y, threat, seed=1, **FAST)
    assert not torch.equal(a.x_adv, c.x_adv)
    g1 = square(model, x, y, threat, seed=None, generator=torch.Generator().manual_seed(3), **FAST)
    g2 = square(model, x, y, threat, seed=None, generator=torch.Generator().manual_seed(3), **FAST)
    assert torch.equal(g1.x_adv, g2.x_adv)


@pytest.mark.parametrize("norm", NORMS)
def test_batch_size_and_order_invariant(norm):
    model = nn.Sequential(nn.Flatten(), toy_mlp(16, dtype=torch.float64))
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(10, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (10,), generator=gen)
    threat = make(norm, EPS[norm])
    whole = square(model, x, y, threat, **FAST)
    first, second = (
        square(model, x[:4], y[:4], threat, **FAST),
        square(model, x[4:], y[4:], threat, **FAST),
    )
    torch.testing.assert_close(
        whole.x_adv, torch.cat([first.x_adv, second.x_adv]), rtol=0, atol=1e-12
    )
    assert torch.equal(whole.queries, torch.cat([first.queries, second.queries]))
    perm = torch.randperm(10, generator=gen)
    shuffled = square(model, x[perm], y[perm], threat, **FAST)
    torch.testing.assert_close(shuffled.x_adv, whole.x_adv[perm], rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_model_state_untouched(norm):
    model = Mixed()
    model.train()
    model.drop.eval()
    model.fc1.bias.requires_grad_(False)
    modes = {k: m.training for k, m in model.named_modules()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = toy_batch()
    square(model, x, y, make(norm, EPS[norm]), **FAST)
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
    result = square(model, x, y, threat, **FAST)
    assert result.x_adv.dtype == torch.float64
    assert threat.contains(result.x_adv, x).all()
    assert torch.equal(result.x_adv[0], x[0]) and result.queries[0] == 1  # eps = 0: not searched
    empty = square(model, x[:0], y[:0], threat.with_eps(0.1), **FAST)
    assert empty.x_adv.shape == (0, 2)


def test_score_based_runs_without_autograd():
    """Only forward passes: it works under inference mode, which forbids any gradient."""
    model = toy_mlp()
    x, y = toy_batch()
    expected = square(model, x, y, Linf(0.1), **FAST)
    with torch.inference_mode():
        result = square(model, x, y, Linf(0.1), **FAST)
    assert torch.equal(result.x_adv, expected.x_adv)


def test_targeted():
    model = toy_mlp()
    x, y = toy_batch(n=30)
    target = (y + 1) % 4
    result = square(model, x, target, Linf(0.3), targeted=True, n_queries=200)
    with torch.no_grad():
        assert torch.equal(result.success, model(result.x_adv).argmax(1) == target)
    assert result.success.float().mean() > 0.3


def test_l2_update_survives_a_vanishing_perturbation():
    """At a face of the box the clipped perturbation can vanish and the new bump can cancel
    the old one exactly: the update falls back to ``x`` instead of dividing by zero (this
    configuration gave NaN before)."""
    model = nn.Sequential(nn.Flatten(), toy_mlp(1, 3, seed=65213))
    x = torch.ones(3, 1)
    y = torch.tensor([2, 0, 0])
    threat = L2(torch.tensor([3.9529, 4.7093, 6.1451]))
    result = square(model, x, y, threat, targeted=True, n_queries=56, seed=65213)
    assert torch.isfinite(result.x_adv).all() and threat.contains(result.x_adv, x).all()


# ---- queries -------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
def test_query_counts_are_exact_per_sample(norm):
    """``result.queries`` is what the model saw: per sample (alone) and in total (batched)."""
    base = toy_mlp(3)
    x, y = toy_batch(n=8, dim=3)
    threat = make(norm, EPS[norm])
    counted = Counting(base)
    whole = square(counted, x, y, threat, n_queries=30)
    assert counted.rows == int(whole.queries.sum())
    for i in range(x.shape[0]):
        single = Counting(base)
        alone = square(single, x[i : i + 1], y[i : i + 1], threat, n_queries=30)
        assert single.rows == int(alone.queries[0]) == int(whole.queries[i])


@pytest.mark.parametrize("n_queries", [2, 3, 4, 17, 100])
def test_budget_is_never_exceeded(n_queries):
    model = toy_mlp()
    x, y = toy_batch(n=20)
    result = square(model, x, y, Linf(0.05), n_queries=n_queries)
    assert (result.queries <= n_queries).all()
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    assert (result.queries[clean_wrong] == 1).all()  # not attacked: the clean pass only
    assert torch.equal(result.x_adv[clean_wrong], x[clean_wrong])
    full = square(model, x, y, Linf(0.05), n_queries=n_queries, early_stop=False)
    assert (full.queries == n_queries).all() or n_queries < 3


def test_successful_samples_stop_querying():
    model = toy_mlp()
    x, y = toy_batch(n=40)
    result = square(model, x, y, Linf(0.3), n_queries=300)
    with torch.no_grad():
        clean_right = model(x).argmax(1) == y
    broken = result.success & clean_right
    assert broken.any()
    assert (result.queries[broken] < 300).all()


def test_errors():
    model = toy_mlp()
    x, y = toy_batch()
    with pytest.raises(UserError, match="n_queries"):
        square(model, x, y, Linf(0.1), n_queries=1)
    with pytest.raises(UserError, match="p_init"):
        square(model, x, y, Linf(0.1), p_init=0.0)
    with pytest.raises(UserError, match="finite eps"):
        square(model, x, y, L2(float("inf")))
    with pytest.raises(UserError, match="does not support the l1"):
        square(model, x, y, make("l1", 0.5))


# ---- pieces of the paper -------------------------------------------------------------------


def test_p_schedule_is_the_papers():
    assert p_schedule(0.8, 0, 10000) == 0.8
    assert p_schedule(0.8, 10, 10000) == 0.8 and p_schedule(0.8, 11, 10000) == 0.4
    assert p_schedule(0.8, 51, 10000) == 0.2 and p_schedule(0.8, 201, 10000) == 0.1
    assert p_schedule(0.8, 9999, 10000) == 0.8 / 512
    # rescaled: the same fractions of a 1000-query run
    assert p_schedule(0.8, 1, 1000) == 0.8 and p_schedule(0.8, 2, 1000) == 0.4
    assert p_schedule(0.8, 6, 1000) == 0.2


def test_bump_is_concentric_and_unit():
    bump = pseudo_gaussian_bump(5, 5, torch.float64)
    assert bump.norm().item() == pytest.approx(1.0)
    assert bump.argmax().item() == 12  # the centre
    ring = 1 / 4 + 1 / 9
    assert (bump[2, 2] / bump[0, 0]).item() == pytest.approx((1 + ring) / (1 / 9))
    assert torch.equal(bump, bump.T) and torch.equal(bump, bump.flip(0))


# ---- hypothesis ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    norm=st.sampled_from(NORMS),
    dim=st.integers(1, 6),
    classes=st.integers(2, 5),
    n=st.integers(1, 5),
    eps=st.sampled_from([0.0, 0.01, 0.1, 0.5, 2.0]),
    per_sample=st.booleans(),
    targeted=st.booleans(),
    n_queries=st.integers(2, 30),
    seed=st.integers(0, 2**20),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_property_inside_truthful_within_budget(
    norm, dim, classes, n, eps, per_sample, targeted, n_queries, seed, dtype
):
    gen = torch.Generator().manual_seed(seed)
    model = toy_mlp(dim, classes, seed=seed, dtype=dtype)
    x = torch.rand(n, dim, generator=gen, dtype=dtype)
    x[torch.rand(n, dim, generator=gen) < 0.2] = 1.0
    y = torch.randint(0, classes, (n,), generator=gen)
    radius = torch.rand(n, generator=gen, dtype=torch.float64) * eps if per_sample else eps
    threat = make(norm, radius)
    result = square(model, x, y, threat, targeted=targeted, n_queries=n_queries, seed=seed)
    assert threat.contains(result.x_adv, x).all()
    assert (result.queries <= n_queries).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
        clean = model(x).argmax(1)
    assert torch.equal(result.success, pred == y if targeted else pred != y)
    assert (result.success | ~(clean == y if targeted else clean != y)).all()


# ---- the digits fixture --------------------------------------------------------------------


@pytest.mark.parametrize(("eps", "slack"), [(0.1, 0.03), (0.15, 0.02)])
def test_close_to_apgd_on_digits(digits_model, digits, eps, slack):
    x, y = digits
    threat = Linf(eps)
    apgd = robust(attacks.apgd_ce(digits_model, x, y, threat))
    result = square(digits_model, x, y, threat, n_queries=1000)
    assert threat.contains(result.x_adv, x).all()
    assert robust(result) <= apgd + slack, (robust(result), apgd)
    assert (result.queries <= 1000).all()


def test_l2_beats_noise_on_digits(digits_model, digits):
    x, y = digits
    result = square(digits_model, x, y, L2(0.5), n_queries=1000)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    noise = noise / noise.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1) * 0.5
    with torch.no_grad():
        noise_acc = (digits_model((x + noise).clamp(0, 1)).argmax(1) == y).float().mean().item()
    assert robust(result) < noise_acc - 0.3


def test_breaks_a_gradient_masked_model(digits_model, digits):
    """Input quantization zeroes the gradient: PGD sees nothing, Square does not care."""
    x, y = digits
    masked = Quantized(digits_model, 16)
    with torch.no_grad():
        assert (masked(x).argmax(1) == y).float().mean() > 0.95  # digits are multiples of 1/16
    xr = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(masked(xr), y)
    (grad,) = torch.autograd.grad(loss, xr)
    assert torch.count_nonzero(grad) == 0
    threat = Linf(0.1)
    pgd = robust(attacks.pgd(masked, x, y, threat))
    result = robust(square(masked, x, y, threat, n_queries=1000))
    assert pgd > 0.9
    assert result < pgd - 0.6, (result, pgd)
