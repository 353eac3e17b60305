"""The contract every registered attack keeps: result inside the threat model, fields and
shapes, determinism, batch-size invariance, model state untouched, dtypes, queries."""

from __future__ import annotations

import pytest
import torch
from attack_toys import BATCH_DEPENDENT, EPS, FAST, extra_for, toy_batch, toy_mlp, toy_names
from torch import nn

from advml import attacks
from advml.attacks import AttackResult
from advml.threats import L1, L2, Linf, make

CASES = [
    (name, norm)
    for name in toy_names()
    for norm in ("linf", "l2", "l1")
    if norm in attacks.info(name).norms
]


def run(name, model, x, y, threat, **extra):
    needs = extra_for(name, x.shape[1], 4, dtype=x.dtype)
    return attacks.get(name)(model, x, y, threat, **{**FAST[name], **needs, **extra})


def test_every_registered_attack_has_fast_settings():
    assert set(attacks.names()) == set(FAST)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_result_fields_and_threat(name, norm):
    model = toy_mlp()
    x, y = toy_batch()
    threat = make(norm, EPS[norm])
    result = run(name, model, x, y, threat)
    assert isinstance(result, AttackResult)
    n = x.shape[0]
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert result.success.shape == (n,) and result.success.dtype == torch.bool
    assert result.loss.shape == (n,) and torch.isfinite(result.loss).all()
    assert result.norm.shape == (n,)
    assert result.queries.shape == (n,) and result.queries.dtype == torch.long
    assert (result.queries >= 1).all()  # the clean pass at least
    assert result.logits.shape == (n, 4)
    assert result.attack == name
    assert threat.contains(result.x_adv, x).all()
    assert (result.norm <= EPS[norm] * (1 + 1e-5) + 1e-6).all()
    assert ((result.x_adv >= 0) & (result.x_adv <= 1)).all()
    # success is what the model says at x_adv
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
    assert torch.equal(result.success, pred != y)
    assert torch.allclose(result.norm, threat.norm(result.x_adv - x))
    assert 0.0 <= result.success_rate <= 1.0
    assert name in repr(result)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_deterministic(name, norm):
    model = toy_mlp()
    x, y = toy_batch()
    threat = make(norm, EPS[norm])
    first = run(name, model, x, y, threat)
    second = run(name, model, x, y, threat)
    assert torch.equal(first.x_adv, second.x_adv)
    assert torch.equal(first.queries, second.queries)


@pytest.mark.parametrize(("name", "norm"), [c for c in CASES if c[0] not in BATCH_DEPENDENT])
def test_batch_size_invariant(name, norm):
    """Splitting the batch gives the same inputs, random starts included (keyed per sample)."""
    model = toy_mlp(dtype=torch.float64)
    x, y = toy_batch(n=10, dtype=torch.float64)
    threat = make(norm, EPS[norm])
    whole = run(name, model, x, y, threat)
    first, second = run(name, model, x[:4], y[:4], threat), run(name, model, x[4:], y[4:], threat)
    torch.testing.assert_close(
        whole.x_adv, torch.cat([first.x_adv, second.x_adv]), rtol=0, atol=1e-12
    )
    assert torch.equal(whole.success, torch.cat([first.success, second.success]))
    assert torch.equal(whole.queries, torch.cat([first.queries, second.queries]))
    # and the order of samples does not matter either
    perm = torch.randperm(10)
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


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_model_state_untouched(name, norm):
    model = Mixed()
    model.train()
    model.drop.eval()
    model.fc1.bias.requires_grad_(False)
    model.bn.running_mean.add_(0.3)
    modes = {k: m.training for k, m in model.named_modules()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = toy_batch()
    run(name, model, x, y, make(norm, EPS[norm]))
    assert {k: m.training for k, m in model.named_modules()} == modes
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_model_state_restored_on_error():
    class Failing(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            out = self.fc(x)
            return out if self.calls < 3 else out * float("nan")

    model = Failing().train()
    x, y = toy_batch()
    with pytest.raises(attacks.ModelOutputError, match="NaN"):
        attacks.pgd(model, x, y, Linf(0.1), steps=5)
    assert model.training and model.fc.training
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_float64(name, norm):
    model = toy_mlp(dtype=torch.float64)
    x, y = toy_batch(dtype=torch.float64)
    threat = make(norm, EPS[norm])
    result = run(name, model, x, y, threat)
    assert result.x_adv.dtype == torch.float64
    assert threat.contains(result.x_adv, x).all()


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_per_sample_eps(name, norm):
    model = toy_mlp()
    x, y = toy_batch()
    eps = torch.linspace(0.0, 2 * EPS[norm], x.shape[0])
    threat = make(norm, eps)
    result = run(name, model, x, y, threat)
    assert threat.contains(result.x_adv, x).all()
    assert (result.norm <= eps * (1 + 1e-5) + 1e-6).all()
    assert result.norm[0] == 0  # eps = 0: nothing may change
    with torch.no_grad():
        clean_wrong = model(x[:1]).argmax(1) != y[:1]
    assert bool(result.success[0]) == bool(clean_wrong)


@pytest.mark.parametrize("name", toy_names())
def test_empty_batch(name):
    norm = sorted(attacks.info(name).norms)[0]
    budget = 1 if norm == "l0" else 0.1  # L0 counts changed features
    result = run(
        name, toy_mlp(), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), make(norm, budget)
    )
    assert result.x_adv.shape == (0, 2) and result.success.shape == (0,)


def test_already_misclassified_samples_are_not_attacked():
    model = toy_mlp()
    x, y = toy_batch(n=30)
    with torch.no_grad():
        wrong = model(x).argmax(1) != y
    assert wrong.any() and (~wrong).any()
    result = attacks.pgd(model, x, y, Linf(0.1), steps=5)
    assert torch.equal(result.x_adv[wrong], x[wrong])
    assert (result.queries[wrong] == 1).all()  # the clean pass only: its logits are reused
    assert result.success[wrong].all()


def test_query_count_without_early_stop():
    model = toy_mlp()
    x, y = toy_batch()
    result = attacks.pgd(model, x, y, Linf(0.1), steps=5, restarts=3, early_stop=False)
    # clean + 3 restarts x (5 gradients + 1 evaluation of the last iterate); the final check
    # reuses the logits of the best iterate
    assert (result.queries == 1 + 3 * 6).all()
    result = attacks.fgsm(model, x, y, Linf(0.1), early_stop=False)
    assert (result.queries == 2).all()  # clean pass (reused for the gradient), x + step


def test_stacked_restarts_find_the_same_successes():
    """Stacked or one at a time, the restarts' trajectories are the same: the same samples
    break, and samples that resist keep the same best iterate (a broken sample may keep a
    different successful iterate: stacked restarts stop at the first success of any)."""
    model = toy_mlp(dtype=torch.float64)
    x, y = toy_batch(n=40, dtype=torch.float64)
    stacked = attacks.pgd(model, x, y, L2(0.3), steps=5, restarts=4)
    chunked = attacks.pgd(model, x, y, L2(0.3), steps=5, restarts=4, stack_restarts=1)
    assert torch.equal(stacked.success, chunked.success)
    assert stacked.success.any() and not stacked.success.all()
    kept = ~stacked.success
    torch.testing.assert_close(stacked.x_adv[kept], chunked.x_adv[kept], rtol=0, atol=1e-12)


def test_seed_and_generator():
    model = toy_mlp()
    x, y = toy_batch()
    a = attacks.pgd(model, x, y, Linf(0.1), steps=3, seed=1)
    b = attacks.pgd(model, x, y, Linf(0.1), steps=3, seed=2)
    c = attacks.pgd(model, x, y, Linf(0.1), steps=3, seed=1)
    assert torch.equal(a.x_adv, c.x_adv) and not torch.equal(a.x_adv, b.x_adv)
    g1 = attacks.pgd(
        model, x, y, L1(0.5), steps=3, seed=None, generator=torch.Generator().manual_seed(5)
    )
    g2 = attacks.pgd(
        model, x, y, L1(0.5), steps=3, seed=None, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(g1.x_adv, g2.x_adv)


def test_called_under_no_grad():
    model = toy_mlp()
    x, y = toy_batch()
    expected = attacks.pgd(model, x, y, Linf(0.1), steps=3)
    with torch.no_grad():
        result = attacks.pgd(model, x, y, Linf(0.1), steps=3)
    assert torch.equal(result.x_adv, expected.x_adv)


def test_x_is_not_modified_and_result_is_detached():
    model = toy_mlp()
    x, y = toy_batch()
    x.requires_grad_(True)
    before = x.detach().clone()
    result = attacks.apgd(model, x, y, L2(0.3), steps=5)
    assert torch.equal(x.detach(), before)
    assert not result.x_adv.requires_grad
