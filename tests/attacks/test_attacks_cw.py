"""Carlini & Wagner L2, and the suite's contract for every optimization-based attack (C&W, EAD,
L-BFGS, JSMA): inside the threat model, determinism, batch-size invariance, model state, float64,
per-sample radii, empty batches.

Measured on the digits fixture (360 test images, minimum-norm L2, eps = inf): success 100 % for
C&W, DeepFool and FAB; median L2 of successes C&W 0.4223 (mean 0.4255), DeepFool 0.4223 (mean
0.4268), FAB 0.4250 (mean 0.4285). The paper's f_6 (``normalize=False``) has median 0.4395 and
up to 1.6x DeepFool's distance: it heads for the runner-up class's boundary.
"""

from __future__ import annotations

import pytest
import torch
from attack_toys import toy_batch, toy_mlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import advml.attacks.ead
import advml.attacks.jsma
import advml.attacks.lbfgs  # noqa: F401  (the imports register the attacks)
from advml import attacks
from advml.attacks.base import AttackResult
from advml.attacks.cw import cw, cw_l2
from advml.attacks.deepfool import deepfool
from advml.attacks.fab import fab
from advml.attacks.optimization import ConstSearch
from advml.errors import UserError
from advml.threats import L0, L1, L2, make

# fast settings for the contract checks (the suite's attack_toys.FAST should get the same)
MINE = {
    "cw": {"binary_steps": 3, "steps": 30},
    "cw-l2": {"binary_steps": 3, "steps": 30},
    "ead": {"binary_steps": 3, "steps": 30},
    "lbfgs": {"binary_steps": 3, "steps": 10},
    "jsma": {},
}
EPS = {"l2": 0.3, "l1": 0.5, "l0": 1}
CASES = [(name, norm) for name in MINE for norm in sorted(attacks.info(name).norms)]


def run(name, model, x, y, threat, **extra):
    return attacks.get(name)(model, x, y, threat, **{**MINE[name], **extra})


def test_registered():
    assert set(MINE) <= set(attacks.names())
    assert attacks.get("cw") is cw and attacks.get("cw_l2") is cw_l2
    for name in MINE:
        info = attacks.info(name)
        assert info.minimum_norm and info.targeted and info.kind == "gradient" and info.paper
    assert attacks.info("ead").norms == {"l1", "l2"} and attacks.info("jsma").norms == {"l0"}


FIELD_CASES = [(*case, eps) for case in CASES for eps in ("finite", "inf")]


@pytest.mark.parametrize(
    ("name", "norm", "eps"), [c for c in FIELD_CASES if c[1:] != ("l0", "inf")]
)
def test_result_fields_and_threat(name, norm, eps):
    model = toy_mlp()
    x, y = toy_batch()
    threat = make(norm, EPS[norm] if eps == "finite" else float("inf"))
    result = run(name, model, x, y, threat)
    assert isinstance(result, AttackResult) and result.attack == name
    n = x.shape[0]
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert result.success.shape == (n,) and result.success.dtype == torch.bool
    assert result.loss.shape == (n,) and torch.isfinite(result.loss).all()
    assert result.queries.dtype == torch.long and (result.queries >= 1).all()
    assert threat.contains(result.x_adv, x).all()
    assert ((result.x_adv >= 0) & (result.x_adv <= 1)).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
    assert torch.equal(result.success, pred != y)
    torch.testing.assert_close(result.norm, threat.norm(result.x_adv - x))


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_deterministic_and_batch_size_invariant(name, norm):
    model = toy_mlp(dtype=torch.float64)
    x, y = toy_batch(n=10, dtype=torch.float64)
    threat = make(norm, EPS[norm])
    whole = run(name, model, x, y, threat)
    again = run(name, model, x, y, threat)
    assert torch.equal(whole.x_adv, again.x_adv) and torch.equal(whole.queries, again.queries)
    first, second = run(name, model, x[:4], y[:4], threat), run(name, model, x[4:], y[4:], threat)
    torch.testing.assert_close(
        whole.x_adv, torch.cat([first.x_adv, second.x_adv]), rtol=0, atol=1e-12
    )
    assert torch.equal(whole.queries, torch.cat([first.queries, second.queries]))
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    shuffled = run(name, model, x[perm], y[perm], threat)
    torch.testing.assert_close(shuffled.x_adv, whole.x_adv[perm], rtol=0, atol=1e-12)


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


@pytest.mark.parametrize("name", MINE)
def test_model_state_untouched(name):
    model = Mixed().train()
    model.drop.eval()
    model.fc1.bias.requires_grad_(False)
    model.bn.running_mean.add_(0.3)
    modes = {k: m.training for k, m in model.named_modules()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = toy_batch()
    norm = sorted(attacks.info(name).norms)[-1]
    run(name, model, x, y, make(norm, EPS[norm]))
    assert {k: m.training for k, m in model.named_modules()} == modes
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_float64_and_per_sample_eps(name, norm):
    model = toy_mlp(dtype=torch.float64)
    x, y = toy_batch(dtype=torch.float64)
    if norm == "l0":
        eps = torch.arange(x.shape[0]) % 3
    else:
        eps = torch.linspace(0.0, 2 * EPS[norm], x.shape[0], dtype=torch.float64)
    threat = make(norm, eps)
    result = run(name, model, x, y, threat)
    assert result.x_adv.dtype == torch.float64
    assert threat.contains(result.x_adv, x).all()
    assert result.norm[0] == 0  # eps = 0: nothing may change
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    assert bool(result.success[0]) == bool(clean_wrong[0])
    assert (result.success | ~clean_wrong).all()


@pytest.mark.parametrize("name", MINE)
def test_half_precision(name):
    model = toy_mlp(dim=5).to(torch.bfloat16)
    x, y = toy_batch(dim=5)
    x = x.to(torch.bfloat16)
    norm = sorted(attacks.info(name).norms)[-1]
    threat = make(norm, EPS[norm])
    result = run(name, model, x, y, threat)
    assert result.x_adv.dtype == torch.bfloat16 and threat.contains(result.x_adv, x).all()
    assert result.success.any()


@pytest.mark.parametrize("name", MINE)
def test_empty_batch_no_grad_and_input_untouched(name):
    norm = sorted(attacks.info(name).norms)[0]
    threat = make(norm, EPS[norm])
    empty = run(name, toy_mlp(), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), threat)
    assert empty.x_adv.shape == (0, 2) and empty.success.shape == (0,)
    model = toy_mlp()
    x, y = toy_batch()
    expected = run(name, model, x, y, threat)
    x.requires_grad_(True)
    before = x.detach().clone()
    with torch.no_grad():
        result = run(name, model, x, y, threat)
    assert torch.equal(result.x_adv, expected.x_adv) and not result.x_adv.requires_grad
    assert torch.equal(x.detach(), before)


@st.composite
def cases(draw):
    name = draw(st.sampled_from(sorted(MINE)))
    norm = draw(st.sampled_from(sorted(attacks.info(name).norms)))
    dim = draw(st.integers(1, 6))
    classes = draw(st.integers(2, 5))
    n = draw(st.integers(1, 5))
    if norm == "l0":
        eps = draw(st.integers(0, 4))
    else:
        eps = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5, 2.0, float("inf")]))
    targeted = draw(st.booleans())
    seed = draw(st.integers(0, 2**20))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return name, norm, dim, classes, n, eps, targeted, seed, dtype


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_inside_and_truthful(case):
    """Random toy models, inputs on the box's faces, radii and targets: the result is inside
    the threat model, success is what the model says, and never worse than the clean input."""
    name, norm, dim, classes, n, eps, targeted, seed, dtype = case
    gen = torch.Generator().manual_seed(seed)
    model = toy_mlp(dim, classes, seed=seed, dtype=dtype)
    x = torch.rand(n, dim, generator=gen, dtype=dtype)
    x[torch.rand(n, dim, generator=gen) < 0.3] = 1.0
    x[torch.rand(n, dim, generator=gen) < 0.2] = 0.0
    y = torch.randint(0, classes, (n,), generator=gen)
    threat = make(norm, eps)
    result = attacks.get(name)(model, x, y, threat, targeted=targeted, **MINE[name])
    assert threat.contains(result.x_adv, x).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
        clean = model(x).argmax(1)
    assert torch.equal(result.success, pred == y if targeted else pred != y)
    clean_success = clean == y if targeted else clean != y
    assert (result.success | ~clean_success).all()
    assert torch.equal(result.x_adv[clean_success], x[clean_success])


# ---- C&W specifics ------------------------------------------------------------------------


def test_const_search_rule():
    """x10 until the first success, then bisection between the bounds (per sample)."""
    search = ConstSearch(3, 1.0, torch.float64, torch.device("cpu"))
    sid = torch.arange(3)
    search.update(sid, torch.tensor([True, False, False]))
    assert search.const.tolist() == [0.5, 10.0, 10.0]
    search.update(sid, torch.tensor([False, True, False]))
    assert search.const.tolist() == [0.75, 5.5, 100.0]
    assert search.lower.tolist() == [0.5, 1.0, 10.0] and search.upper[1] == 10.0
    search.update(torch.tensor([2]), torch.tensor([True]))  # only sample 2 moves
    assert search.const.tolist() == [0.75, 5.5, 55.0]
    # settling: a successful run that shortened the best success by <= 0.1 % ends the search
    before = torch.tensor([1.0, 1.0, float("inf")], dtype=torch.float64)
    after = torch.tensor([0.9995, 0.9, 0.5], dtype=torch.float64)
    search.update(sid, torch.tensor([True, True, True]), before, after)
    assert search.settled.tolist() == [True, False, False]
    search.update(sid, torch.tensor([False, False, False]), after, after)  # failures never do
    assert search.settled.tolist() == [True, False, False]


def linear_binary(dim=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(dim, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, dim, generator=gen, dtype=torch.float64))
        w = model.weight[1] - model.weight[0]
        # the boundary passes 0.15 from the centre of the box
        model.bias.copy_(torch.stack([torch.zeros(()), -0.5 * w.sum() + 0.15 * w.norm()]))
    x = 0.5 + 0.03 * torch.randn(12, dim, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    w = model.weight[1] - model.weight[0]
    b = model.bias[1] - model.bias[0]
    distance = ((x @ w + b).abs() / w.norm()).detach()
    return model, x, y, distance


@pytest.mark.parametrize("normalize", [True, False])
def test_linear_classifier_exact_distance(normalize):
    """Two classes, f(x) = w.x + b: the minimal L2 distance is |w.x + b| / ||w|| (the box is
    not reached here); C&W gets within 0.5 % of it, and DeepFool (exact on affine models,
    up to its 2 % overshoot) agrees."""
    model, x, y, distance = linear_binary()
    assert ((x + distance.max()) < 1).all() and ((x - distance.max()) > 0).all()
    result = cw(model, x, y, L2(float("inf")), normalize=normalize, steps=100, binary_steps=5)
    assert result.success.all()
    assert (result.norm >= distance * (1 - 1e-9)).all()
    assert (result.norm <= distance * 1.005).all(), (result.norm / distance).max()
    reference = deepfool(model, x, y, L2(float("inf")))
    assert (reference.norm <= distance * 1.021).all()
    assert (result.norm <= reference.norm * 1.005).all()


def test_binary_search_lowers_the_norm(digits_model, digits):
    """One large c overshoots (Adam's steps are dominated by the loss); the search from the same
    c finds much smaller perturbations."""
    x, y = digits[0][:40], digits[1][:40]
    options = {"initial_const": 100.0, "steps": 300}
    single = cw(digits_model, x, y, L2(float("inf")), binary_steps=1, **options)
    search = cw(digits_model, x, y, L2(float("inf")), binary_steps=5, **options)
    assert single.success.all() and search.success.all()
    assert (search.norm <= single.norm + 1e-6).all()
    assert search.norm.median() < 0.9 * single.norm.median()


@pytest.fixture(scope="module")
def min_norm_l2(digits_model, digits):
    """C&W (defaults), DeepFool and FAB with eps = inf on the digits test set."""
    x, y = digits
    threat = L2(float("inf"))
    threads = torch.get_num_threads()  # module fixtures run outside conftest's one-thread fixture
    torch.set_num_threads(1)
    try:
        return {
            "cw": cw(digits_model, x, y, threat),
            "deepfool": deepfool(digits_model, x, y, threat),
            "fab": fab(digits_model, x, y, threat),
        }
    finally:
        torch.set_num_threads(threads)


def test_cw_is_the_strongest_minimum_norm_l2_attack_on_digits(min_norm_l2, digits):
    x, _ = digits
    cw_result = min_norm_l2["cw"]
    assert cw_result.success.all()  # eps = inf: every sample is broken
    assert L2(float("inf")).contains(cw_result.x_adv, x).all()
    for other in ("deepfool", "fab"):
        ref = min_norm_l2[other]
        both = cw_result.success & ref.success & (ref.norm > 0)
        assert both.float().mean() > 0.9
        assert cw_result.norm[both].median() <= ref.norm[both].median(), other
        assert cw_result.norm[both].mean() <= ref.norm[both].mean(), other


def test_finite_eps_success_matches_the_minimum_norm(min_norm_l2, digits_model, digits):
    """With a finite eps C&W stops at the first success inside the ball; its robust accuracy is
    (up to the search's path) what the minimum norms predict, and nothing leaves the ball."""
    x, y = digits[0][:90], digits[1][:90]
    eps = 0.45
    result = cw(digits_model, x, y, L2(eps))
    assert L2(eps).contains(result.x_adv, x).all()
    assert (result.norm <= eps * (1 + 1e-6)).all()
    predicted = (min_norm_l2["cw"].norm[:90] <= eps).float().mean().item()
    assert abs(result.success_rate - predicted) <= 0.03
    assert result.success_rate >= (min_norm_l2["deepfool"].norm[:90] <= eps).float().mean() - 0.01
    assert 0.3 < result.success_rate < 0.9  # a radius where the comparison means something


def test_targeted_reaches_reachable_targets(digits_model, digits):
    x, y = digits[0][:30], digits[1][:30]
    target = (y + 3) % 10
    options = {"binary_steps": 4, "steps": 300}
    result = cw(digits_model, x, target, L2(float("inf")), targeted=True, **options)
    assert torch.equal(result.success, result.logits.argmax(1) == target)
    assert result.success.all()


def test_confidence_kappa(digits_model, digits):
    x, y = digits[0][:20], digits[1][:20]
    plain = cw(digits_model, x, y, L2(float("inf")), binary_steps=4, steps=200)
    sure = cw(digits_model, x, y, L2(float("inf")), binary_steps=4, steps=200, kappa=5.0)
    assert sure.success.all() and (sure.loss >= 5.0).all()  # loss = logit margin
    assert sure.norm.median() > plain.norm.median()


def test_no_success_outside_the_ball_is_returned():
    """A radius too small for any success: the clean input (or a failing point inside the
    ball) comes back, never the adversarial found outside."""
    model, x, y, distance = linear_binary()
    eps = float(distance.min()) * 0.5
    result = cw(model, x, y, L2(eps), steps=100, binary_steps=3)
    assert not result.success.any()
    assert (result.norm <= eps * (1 + 1e-9)).all()


def test_bad_hyperparameters():
    model = toy_mlp()
    x, y = toy_batch()
    for kwargs in (
        {"steps": 0},
        {"binary_steps": 1.5},
        {"lr": 0.0},
        {"lr": float("nan")},
        {"initial_const": -1.0},
        {"kappa": -0.1},
        {"candidates": 1},
    ):
        with pytest.raises(UserError):
            cw(model, x, y, L2(0.3), **kwargs)
    with pytest.raises(UserError, match="does not support the l1"):
        cw(model, x, y, L1(0.3))
    with pytest.raises(UserError, match="does not support the l0"):
        cw_l2(model, x, y, L0(2))
