"""Expectation over Transformation: the wrapper, the attack's contract, and the point of it:
EOT examples survive random transforms (and randomized models) far more often than plain ones.

Measured on the digits fixture (first 200 test images, L∞ eps = 0.15, PGD-40, 8 transforms per
step; survival = mean over 64 fresh transforms of "still adversarial"):

* rotation ±15°, shift ±1 px, brightness ±0.1, noise σ 0.05: plain PGD 0.670, EOT 0.885
  (+21.6 points). The ±1 px shift alone makes the clean MLP err on ~40 % of digits, which
  inflates both numbers;
* the same with shifts of ±0.5 px: plain 0.516, EOT 0.875 (+35.9 points);
* a model adding Gaussian noise σ = 0.2 to its input, eps = 0.1: inputs broken under a
  majority of the model's noise draws: plain PGD 8.9 %, EOT (8 draws) 72 %.
"""

from __future__ import annotations

import functools

import pytest
import torch
from attack_toys import toy_batch, toy_mlp
from torch import nn

from advml import attacks
from advml import transforms as T
from advml.attacks import AttackResult
from advml.attacks.eot import EOTModel, EOTResult, eot, eot_model, expected_success
from advml.errors import UserError
from advml.threats import L1, L2, Linf, make

FAST = {"steps": 5, "samples": 2, "eval_samples": 4}


class Noisy(nn.Module):
    """A randomized defense: Gaussian noise on the input, from its own generator."""

    def __init__(self, model: nn.Module, sigma: float, seed: int = 0):
        super().__init__()
        self.model, self.sigma = model, sigma
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x):
        noise = torch.randn(x.shape, generator=self.gen, dtype=x.dtype)
        return self.model(x + self.sigma * noise)


class Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.model(x)


# ---- the wrapper ------------------------------------------------------------------------------


def test_wrapper_without_transforms_is_the_model():
    model = toy_mlp()
    x, _ = toy_batch()
    counting = Counting(model)
    wrapped = eot_model(counting, None, samples=3)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), model(x))
    assert counting.rows == [3 * x.shape[0]]  # all copies in one batch
    assert isinstance(wrapped, EOTModel) and "samples=3" in repr(wrapped)


def test_wrapper_averages_logits_or_probabilities():
    model = toy_mlp(dim=2 * 4 * 4)
    flat = nn.Sequential(nn.Flatten(), model)
    x = torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    t = T.physical(rotation=20, translation=0.5)
    for average in ("logits", "probs"):
        wrapped = EOTModel(flat, t, samples=4, average=average, seed=7)
        copies = t.sample(x, wrapped_source(x, 7), samples=4)
        z = flat(copies).reshape(3, 4, -1)
        expected = (
            z.mean(1) if average == "logits" else torch.log(torch.softmax(z, dim=2).mean(dim=1))
        )
        torch.testing.assert_close(wrapped(x), expected, atol=1e-5, rtol=1e-5)


def wrapped_source(x, seed):
    from advml.attacks.rng import KeyedRNG

    return KeyedRNG.for_inputs(x, seed).stream(0)


def test_mean_logits_equal_mean_log_probabilities_up_to_a_constant():
    """The documented reason why averaging logits is averaging log-probabilities."""
    z = torch.randn(5, 8, 10, dtype=torch.float64)
    a = torch.log_softmax(z.mean(1), dim=1)
    b = torch.log_softmax(torch.log_softmax(z, dim=2).mean(1), dim=1)
    torch.testing.assert_close(a, b)


def test_wrapper_draws_fresh_transforms_for_new_inputs_only():
    model = nn.Sequential(nn.Flatten(), toy_mlp(dim=16))
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    wrapped = EOTModel(model, T.GaussianNoise(0.2), samples=2)
    with torch.no_grad():
        assert torch.equal(wrapped(x), wrapped(x))  # keyed by the input's values
        assert not torch.equal(wrapped(x), wrapped(x + 1e-3))
        fresh = EOTModel(model, T.GaussianNoise(0.2), samples=2, seed=None)
        assert not torch.equal(fresh(x), fresh(x))  # global generator: fresh each pass


def test_any_attack_runs_on_the_wrapper():
    model = toy_mlp()
    x, y = toy_batch()
    wrapped = eot_model(model, None, 2)
    for name in ("fgsm", "apgd", "mifgsm", "deepfool"):
        result = attacks.get(name)(wrapped, x, y, Linf(0.1))
        assert Linf(0.1).contains(result.x_adv, x).all()


# ---- contract -----------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_result_inside_threat_and_success_as_majority(norm):
    model = toy_mlp()
    x, y = toy_batch()
    threat = make(norm, {"linf": 0.1, "l2": 0.3, "l1": 0.5}[norm])
    result = eot(model, x, y, threat, **FAST)
    assert isinstance(result, EOTResult) and isinstance(result, AttackResult)
    assert result.attack == "eot" and "expected_success" in repr(result)
    assert threat.contains(result.x_adv, x).all()
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
    # no transforms, deterministic model: the majority is the plain verdict
    assert torch.equal(result.success, pred != y)
    assert torch.equal(result.expected_success, (pred != y).float())
    assert result.eval_samples == 4 and result.logits.shape == (12, 4)
    # clean pass + final check + inner queries x samples + the 4 evaluation draws
    assert (result.queries > 2 + 4).all()


def test_expected_success_under_transforms():
    model = nn.Sequential(nn.Flatten(), toy_mlp(dim=16))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(20, 1, 4, 4, generator=gen)
    y = torch.randint(0, 4, (20,), generator=gen)
    t = T.physical(rotation=30, translation=1, noise=0.1)
    result = eot(model, x, y, Linf(0.2), transforms=t, steps=10, eval_samples=16)
    assert ((result.expected_success >= 0) & (result.expected_success <= 1)).all()
    assert torch.equal(result.success, result.expected_success > 0.5)
    fraction, logits = expected_success(model, result.x_adv, y, transforms=t, samples=16)
    torch.testing.assert_close(fraction, result.expected_success)
    torch.testing.assert_close(logits, result.logits)
    assert Linf(0.2).contains(result.x_adv, x).all()


def test_deterministic_and_batch_size_invariant_with_image_transforms():
    model = nn.Sequential(nn.Flatten(), toy_mlp(dim=16, dtype=torch.float64))
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(10, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (10,), generator=gen)
    run = functools.partial(eot, transforms=T.physical(translation=0.5), **FAST)
    whole = run(model, x, y, L2(0.3))
    again = run(model, x, y, L2(0.3))
    assert torch.equal(whole.x_adv, again.x_adv)
    parts = [run(model, x[:4], y[:4], L2(0.3)), run(model, x[4:], y[4:], L2(0.3))]
    torch.testing.assert_close(whole.x_adv, torch.cat([p.x_adv for p in parts]), rtol=0, atol=1e-12)
    assert torch.equal(whole.expected_success, torch.cat([p.expected_success for p in parts]))
    other = run(model, x, y, L2(0.3), seed=1)
    assert not torch.equal(other.x_adv, whole.x_adv)
    g1 = run(model, x, y, L2(0.3), seed=None, generator=torch.Generator().manual_seed(3))
    g2 = run(model, x, y, L2(0.3), seed=None, generator=torch.Generator().manual_seed(3))
    assert torch.equal(g1.x_adv, g2.x_adv)


def test_model_state_untouched_and_float64():
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 4))
    model.train()
    model[0].bias.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    x, y = toy_batch()
    eot(model, x, y, Linf(0.1), **FAST)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    assert all(p.grad is None for p in model.parameters())
    model64 = toy_mlp(dtype=torch.float64)
    x64, y64 = toy_batch(dtype=torch.float64)
    result = eot(model64, x64, y64, L1(0.5), **FAST)
    assert result.x_adv.dtype == torch.float64 and L1(0.5).contains(result.x_adv, x64).all()


def test_per_sample_eps_empty_batch_and_targeted():
    model = toy_mlp()
    x, y = toy_batch()
    eps = torch.linspace(0, 0.2, 12)
    result = eot(model, x, y, Linf(eps), **FAST)
    assert Linf(eps).contains(result.x_adv, x).all() and result.norm[0] == 0
    empty = eot(model, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), Linf(0.1), **FAST)
    assert empty.x_adv.shape == (0, 2) and empty.expected_success.shape == (0,)
    target = (y + 1) % 4
    hit = eot(model, x, target, Linf(0.3), targeted=True, **FAST)
    with torch.no_grad():
        assert torch.equal(hit.success, model(hit.x_adv).argmax(1) == target)


def test_errors():
    model = toy_mlp()
    x, y = toy_batch()
    with pytest.raises(UserError, match="does not support the l1"):
        eot(model, x, y, L1(0.5), attack="deepfool")
    with pytest.raises(UserError, match="no targeted variant"):
        eot(model, x, y, Linf(0.1), attack="deepfool", targeted=True)
    with pytest.raises(UserError, match="unknown attack"):
        eot(model, x, y, Linf(0.1), attack="nope")
    with pytest.raises(UserError, match="cannot be eot"):
        eot(model, x, y, Linf(0.1), attack="eot")
    with pytest.raises(UserError, match="samples"):
        eot(model, x, y, Linf(0.1), samples=0)
    with pytest.raises(UserError, match="average"):
        eot(model, x, y, Linf(0.1), average="median")
    with pytest.raises(UserError, match="transforms must be"):
        eot(model, x, y, Linf(0.1), transforms="rotate")
    with pytest.raises(UserError, match="either seed or generator"):
        eot(model, x, y, Linf(0.1), generator=torch.Generator())
    with pytest.raises(UserError, match=r"\(N, C, H, W\)"):
        eot(model, x, y, Linf(0.1), transforms=T.Rotation(10))


def test_inner_attack_options_pass_through():
    model = toy_mlp()
    x, y = toy_batch()
    a = eot(
        model,
        x,
        y,
        Linf(0.1),
        attack=functools.partial(attacks.pgd, steps=3),
        **{"samples": 2, "eval_samples": 2},
    )
    b = eot(model, x, y, Linf(0.1), attack="pgd", steps=3, samples=2, eval_samples=2)
    assert torch.equal(a.x_adv, b.x_adv)
    stopped = eot(model, x, y, Linf(0.1), early_stop=True, **FAST)
    assert (stopped.queries <= eot(model, x, y, Linf(0.1), **FAST).queries).all()


# ---- what EOT is for ----------------------------------------------------------------------


def survival(model, x_adv, y, t):
    fraction, _ = expected_success(model, x_adv, y, transforms=t, samples=64, seed=123)
    return float(fraction.mean())


@pytest.mark.parametrize(
    ("shift", "margin"),
    [(1.0, 0.12), (0.5, 0.25)],  # measured +0.216 and +0.359
)
def test_eot_examples_survive_transforms(digits_model, digits, shift, margin):
    x, y = digits[0][:200], digits[1][:200]
    t = T.physical(rotation=15, translation=shift, brightness=0.1, noise=0.05)
    threat = Linf(0.15)
    plain = attacks.pgd(digits_model, x, y, threat)
    robust = eot(digits_model, x, y, threat, transforms=t, samples=8)
    assert threat.contains(robust.x_adv, x).all()
    s_plain, s_eot = (
        survival(digits_model, plain.x_adv, y, t),
        survival(digits_model, robust.x_adv, y, t),
    )
    assert s_eot >= s_plain + margin, (s_plain, s_eot)
    assert robust.expected_success_rate > 0.8


def test_eot_breaks_a_randomized_model(digits_model, digits):
    x, y = digits[0][:200], digits[1][:200]
    noisy = Noisy(digits_model, sigma=0.2)
    threat = Linf(0.1)
    plain = attacks.pgd(noisy, x, y, threat)
    robust = eot(noisy, x, y, threat, samples=8)
    f_plain, _ = expected_success(noisy, plain.x_adv, y, samples=64)
    f_eot, _ = expected_success(noisy, robust.x_adv, y, samples=64)
    majority_plain = float((f_plain > 0.5).float().mean())
    majority_eot = float((f_eot > 0.5).float().mean())
    assert majority_eot >= majority_plain + 0.4, (majority_plain, majority_eot)  # 0.09 -> 0.72
    assert abs(robust.success_rate - majority_eot) < 0.15  # its own verdict agrees
