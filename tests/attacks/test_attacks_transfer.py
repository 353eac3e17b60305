"""Transfer attacks: crafted on surrogates, reported on the target, which is asked twice per
sample (clean pass and final check); the blur transform; and on the digits fixture, that
inputs crafted on surrogates trained with other seeds break the target far more than random
noise of the same size, and that an ensemble of two transfers at least as well as one.

Measured on the digits fixture (robust accuracy of the target, 360 images; surrogates: the
same MLP trained with seeds 1, 2, 3): L∞ 0.1: noise 95.8 %; single surrogates 32.5 / 32.8 /
33.9 %, pairs 31.9 / 32.2 / 31.4 %, all three 32.2 % (white-box PGD-40: 28.3 %). L∞ 0.15:
noise 93.1 %; singles 6.4 / 7.5 / 5.8 %, pairs 6.4 / 6.1 / 5.0 %.
"""

from __future__ import annotations

import functools

import pytest
import torch
from attack_toys import toy_batch, toy_mlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import advml.attacks.square  # noqa: F401  (registers "square", used as a surrogate attack)
from advml import attacks
from advml.attacks.transfer import GaussianBlur, SurrogateEnsemble, transfer
from advml.data import load
from advml.errors import UserError
from advml.threats import L2, Linf, make

NORMS = ["linf", "l2", "l1"]
EPS = {"linf": 0.1, "l2": 0.3, "l1": 0.5}
INNER = {"steps": 5}


class Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.model(x)


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


def trained_mlp(seed: int) -> nn.Module:
    """The fixture's digits MLP, trained with another seed (an attacker's surrogate)."""
    x, y = load("digits", "train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped fixtures run before the one-thread fixture
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(200):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def surrogates():
    return [trained_mlp(1), trained_mlp(2)]


def robust(result) -> float:
    return 1.0 - result.success_rate


# ---- contract ------------------------------------------------------------------------------


def test_registered():
    info = attacks.registry.info("transfer")
    assert info.kind == "decision" and info.targeted and not info.minimum_norm
    assert info.norms == {"linf", "l2", "l1"} and "Papernot" in info.paper


@pytest.mark.parametrize("norm", NORMS)
def test_result_inside_threat_truthful_and_two_queries(norm):
    target = Counting(toy_mlp())
    x, y = toy_batch(n=20)
    threat = make(norm, EPS[norm])
    result = transfer(target, x, y, threat, surrogates=[toy_mlp(seed=5)], attack_kwargs=INNER)
    assert threat.contains(result.x_adv, x).all()
    with torch.no_grad():
        pred = target.model(result.x_adv).argmax(1)
    assert torch.equal(result.success, pred != y)
    assert (result.queries == 2).all() and target.rows == 2 * x.shape[0]
    assert torch.allclose(result.norm, threat.norm(result.x_adv - x))
    assert result.attack == "transfer"


def test_crafted_on_the_surrogate_not_the_target():
    """A surrogate identical to the target gives white-box PGD's inputs exactly."""
    model = toy_mlp()
    x, y = toy_batch(n=20)
    white = attacks.pgd(model, x, y, Linf(0.1), steps=5, early_stop=False)
    result = transfer(toy_mlp(), x, y, Linf(0.1), surrogates=model, attack_kwargs=INNER)
    with torch.no_grad():
        right = model(x).argmax(1) == y
    assert torch.equal(result.x_adv[right], white.x_adv[right])
    assert torch.equal(result.x_adv[~right], x[~right])  # already wrong: not attacked


def test_deterministic_batch_invariant_and_float64():
    target = toy_mlp(dtype=torch.float64)
    surrogate = toy_mlp(seed=5, dtype=torch.float64)
    x, y = toy_batch(n=10, dtype=torch.float64)
    run = functools.partial(transfer, surrogates=[surrogate], attack_kwargs=INNER)
    whole = run(target, x, y, L2(0.3))
    assert torch.equal(whole.x_adv, run(target, x, y, L2(0.3)).x_adv)
    parts = torch.cat(
        [run(target, x[:4], y[:4], L2(0.3)).x_adv, run(target, x[4:], y[4:], L2(0.3)).x_adv]
    )
    torch.testing.assert_close(whole.x_adv, parts, rtol=0, atol=1e-12)
    assert whole.x_adv.dtype == torch.float64


def test_float32_surrogate_serves_a_float64_target():
    target = toy_mlp(dtype=torch.float64)
    x, y = toy_batch(n=10, dtype=torch.float64)
    result = transfer(target, x, y, Linf(0.1), surrogates=[toy_mlp(seed=5)], attack_kwargs=INNER)
    assert result.x_adv.dtype == torch.float64 and Linf(0.1).contains(result.x_adv, x).all()


def test_target_and_surrogates_untouched():
    def prepared():
        model = Mixed()
        model.train()
        model.drop.eval()
        model.fc1.bias.requires_grad_(False)
        return model

    target, surrogate = prepared(), prepared()
    snapshots = []
    for model in (target, surrogate):
        snapshots.append(
            (
                {k: m.training for k, m in model.named_modules()},
                {k: p.requires_grad for k, p in model.named_parameters()},
                {k: v.clone() for k, v in model.state_dict().items()},
            )
        )
    x, y = toy_batch()
    transfer(target, x, y, Linf(0.1), surrogates=[surrogate], attack_kwargs=INNER)
    for model, (modes, flags, state) in zip((target, surrogate), snapshots, strict=True):
        assert {k: m.training for k, m in model.named_modules()} == modes
        assert {k: p.requires_grad for k, p in model.named_parameters()} == flags
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), key
        assert all(p.grad is None for p in model.parameters())


def test_targeted_and_other_inner_attacks():
    target, surrogate = toy_mlp(), toy_mlp(seed=0)  # same weights: transfers perfectly
    x, y = toy_batch(n=30)
    goal = (y + 1) % 4
    result = transfer(target, x, goal, Linf(0.3), targeted=True, surrogates=[surrogate])
    with torch.no_grad():
        assert torch.equal(result.success, target(result.x_adv).argmax(1) == goal)
    assert result.success.float().mean() > 0.3
    inner = [("apgd-ce", {"steps": 10}), (functools.partial(attacks.fgsm), {}),
             ("square", {"n_queries": 50})]  # fmt: skip
    for attack, options in inner:
        out = transfer(
            target, x, y, Linf(0.1), surrogates=surrogate, attack=attack, attack_kwargs=options
        )
        assert Linf(0.1).contains(out.x_adv, x).all() and (out.queries == 2).all()


def test_transform_changes_what_is_crafted():
    target = nn.Sequential(nn.Flatten(), toy_mlp(16))
    surrogate = nn.Sequential(nn.Flatten(), toy_mlp(16, seed=3))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 4, 4, generator=gen)
    y = torch.randint(0, 4, (12,), generator=gen)
    plain = transfer(target, x, y, Linf(0.1), surrogates=[surrogate], attack_kwargs=INNER)
    blurred = transfer(
        target, x, y, Linf(0.1), surrogates=[surrogate], transform=GaussianBlur(3, 1.0),
        attack_kwargs=INNER,
    )  # fmt: skip
    assert not torch.equal(plain.x_adv, blurred.x_adv)
    assert Linf(0.1).contains(blurred.x_adv, x).all()


def test_errors():
    model = toy_mlp()
    x, y = toy_batch()
    with pytest.raises(UserError, match="surrogates"):
        transfer(model, x, y, Linf(0.1))
    with pytest.raises(UserError, match="surrogates"):
        transfer(model, x, y, Linf(0.1), surrogates=[])
    with pytest.raises(UserError, match="same classes"):
        transfer(model, x, y, Linf(0.1), surrogates=[toy_mlp(classes=3)])
    with pytest.raises(UserError, match="unknown attack"):
        transfer(model, x, y, Linf(0.1), surrogates=[model], attack="nope")
    with pytest.raises(UserError, match="does not support the l1"):
        transfer(model, x, y, make("l1", 0.5), surrogates=[model], attack="apgd")
    with pytest.raises(UserError, match="recurse"):
        transfer(model, x, y, Linf(0.1), surrogates=[model], attack="transfer")
    with pytest.raises(UserError, match="transform"):
        transfer(model, x, y, Linf(0.1), surrogates=[model], transform=lambda z: z)


# ---- the blur and the ensemble -------------------------------------------------------------


def test_gaussian_blur():
    blur = GaussianBlur(5, 1.5)
    assert blur.kernel.sum().item() == pytest.approx(1.0)
    assert torch.equal(blur.kernel, blur.kernel.flip(0))
    const = torch.full((2, 3, 6, 7), 0.3)
    torch.testing.assert_close(blur(const), const)  # replicate padding keeps constants
    spike = torch.zeros(1, 1, 9, 9)
    spike[0, 0, 4, 4] = 1.0
    out = blur(spike)
    assert out.sum().item() == pytest.approx(1.0) and out[0, 0, 4, 4] == out.max()
    torch.testing.assert_close(out[0, 0], out[0, 0].T)  # separable and isotropic
    for shape in [(4, 10), (2, 3, 10)]:
        assert blur(torch.rand(shape)).shape == shape
    x = torch.rand(2, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GaussianBlur(3, 1.0), (x,))
    assert torch.equal(GaussianBlur(1, 1.0)(spike), spike)
    for bad in [{"kernel_size": 4}, {"kernel_size": 0}, {"sigma": 0.0}]:
        with pytest.raises(UserError):
            GaussianBlur(**{"kernel_size": 3, "sigma": 1.0, **bad})
    with pytest.raises(UserError, match="expects"):
        blur(torch.rand(1, 1, 2, 2, 2))


def test_ensemble_averages_logits():
    a, b = toy_mlp(seed=1), toy_mlp(seed=2)
    x, _ = toy_batch()
    with torch.no_grad():
        torch.testing.assert_close(SurrogateEnsemble([a, b])(x), (a(x) + b(x)) / 2)


# ---- hypothesis ----------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    norm=st.sampled_from(NORMS),
    dim=st.integers(1, 6),
    classes=st.integers(2, 5),
    n=st.integers(1, 5),
    eps=st.sampled_from([0.0, 0.01, 0.1, 0.5, 2.0]),
    per_sample=st.booleans(),
    targeted=st.booleans(),
    seed=st.integers(0, 2**20),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_property_inside_and_truthful(
    norm, dim, classes, n, eps, per_sample, targeted, seed, dtype
):
    gen = torch.Generator().manual_seed(seed)
    model = toy_mlp(dim, classes, seed=seed, dtype=dtype)
    surrogate = toy_mlp(dim, classes, seed=seed + 1, dtype=dtype)
    x = torch.rand(n, dim, generator=gen, dtype=dtype)
    x[torch.rand(n, dim, generator=gen) < 0.2] = 1.0
    y = torch.randint(0, classes, (n,), generator=gen)
    radius = torch.rand(n, generator=gen, dtype=torch.float64) * eps if per_sample else eps
    threat = make(norm, radius)
    result = transfer(
        model, x, y, threat, targeted=targeted, surrogates=[surrogate], attack_kwargs=INNER
    )
    assert threat.contains(result.x_adv, x).all() and (result.queries == 2).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
        clean = model(x).argmax(1)
    assert torch.equal(result.success, pred == y if targeted else pred != y)
    assert (result.success | ~(clean == y if targeted else clean != y)).all()


# ---- the digits fixture --------------------------------------------------------------------


def sign_noise_accuracy(model, x, y, eps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    delta = eps * (torch.randint(0, 2, x.shape, generator=gen).to(x.dtype) * 2 - 1)
    with torch.no_grad():
        return (model((x + delta).clamp(0, 1)).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("eps", [0.1, 0.15])
def test_transfers_from_other_seeds_on_digits(digits_model, digits, surrogates, eps):
    x, y = digits
    threat = Linf(eps)
    noise = sign_noise_accuracy(digits_model, x, y, eps)
    singles = [robust(transfer(digits_model, x, y, threat, surrogates=[s])) for s in surrogates]
    both = robust(transfer(digits_model, x, y, threat, surrogates=surrogates))
    assert max(singles) < noise - 0.5, (singles, noise)
    assert both <= sum(singles) / len(singles) + 1 / len(y), (both, singles)
