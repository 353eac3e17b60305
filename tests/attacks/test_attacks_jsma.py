"""JSMA (Papernot et al. 2016): the batched pair search against a loop over pairs, budgets, and
targets on digits.

Measured on the digits fixture (360 test images, 64 pixels, target (y + 1) mod 10, theta = +1):
gamma = 0.2 (at most 12 pixels): 98.1 % of the targets reached, median 6 pixels changed;
gamma = 0.3: 99.7 %; theta = -1: 63.3 %; untargeted with k = 12: 95.3 %, median 4 pixels.
Each iteration is one forward and two backward passes; the 360 images take about 0.3 s.
"""

from __future__ import annotations

import math

import pytest
import torch
from attack_toys import toy_batch, toy_mlp

from advml.attacks.jsma import jsma, pair_search
from advml.errors import UserError
from advml.threats import L0, L2


def brute_force(alpha, beta, domain, new, room):
    """The pair of one row by looping over p < q."""
    d = alpha.shape[0]
    best, pick = -math.inf, None
    best_gain, pick_gain = -math.inf, None
    for p in range(d):
        for q in range(p + 1, d):
            if not (domain[p] and domain[q]) or int(new[p]) + int(new[q]) > room:
                continue
            a, b = alpha[p] + alpha[q], beta[p] + beta[q]
            if a > 0 and b < 0 and a * -b > best:
                best, pick = a * -b, (p, q)
            if a - b > best_gain:
                best_gain, pick_gain = a - b, (p, q)
    if pick is not None:
        return pick
    return pick_gain if best_gain > 0 else None


def test_pair_search_matches_the_loop():
    gen = torch.Generator().manual_seed(0)
    n, d = 60, 7
    alpha = torch.randn(n, d, generator=gen, dtype=torch.float64)
    beta = torch.randn(n, d, generator=gen, dtype=torch.float64)
    beta[:10] = alpha[:10].abs() + 0.1  # no pair with beta < 0: the fallback decides
    alpha[5:10] = -alpha[5:10].abs() - beta[5:10]  # ... or nothing gains: no pair
    domain = torch.rand(n, d, generator=gen) < 0.8
    new = torch.rand(n, d, generator=gen) < 0.7
    room = torch.randint(0, 4, (n,), generator=gen)
    p, q, ok = pair_search(alpha, beta, domain, new, room)
    small_chunk = pair_search(alpha, beta, domain, new, room, chunk=1)
    for got, again in zip((p, q, ok), small_chunk, strict=True):
        assert torch.equal(got, again)
    checked = 0
    for i in range(n):
        expected = brute_force(alpha[i], beta[i], domain[i], new[i], int(room[i]))
        assert bool(ok[i]) == (expected is not None), i
        if expected is not None:
            assert tuple(sorted((int(p[i]), int(q[i])))) == expected, i
            checked += 1
    assert 20 < checked < n


@pytest.mark.parametrize(("k", "gamma", "limit"), [(64, 0.2, 12), (8, 1.0, 8)])
def test_targeted_on_digits(digits_model, digits, k, gamma, limit):
    x, y = digits
    target = (y + 1) % 10
    threat = L0(k)
    result = jsma(digits_model, x, target, threat, targeted=True, gamma=gamma)
    assert threat.contains(result.x_adv, x).all()
    assert (result.norm <= limit).all()
    assert torch.equal(result.success, result.logits.argmax(1) == target)
    assert result.success_rate > (0.9 if limit == 12 else 0.75)
    changed = result.x_adv != x
    assert (result.x_adv[changed] == 1.0).all()  # theta = +1 sets pixels to the top of the box
    # one query per pair, plus the clean pass, the evaluation of the last pair and the check
    assert (result.queries <= 3 + limit // 2).all()
    won = result.success & (result.norm > 0)  # (one clean image is already the target)
    assert torch.equal(result.queries[won], 3 + result.norm[won].long() // 2)


def test_untargeted_and_decreasing(digits_model, digits):
    x, y = digits[0][:120], digits[1][:120]
    result = jsma(digits_model, x, y, L0(12))
    assert torch.equal(result.success, result.logits.argmax(1) != y)
    assert result.success_rate > 0.9
    down = jsma(digits_model, x, (y + 1) % 10, L0(12), targeted=True, theta=-0.5)
    assert L0(12).contains(down.x_adv, x).all()
    assert (down.x_adv <= x).all() and down.success.any()


def test_zero_budget_and_already_successful():
    model = toy_mlp(dim=5)
    x, y = toy_batch(dim=5)
    result = jsma(model, x, y, L0(0))
    assert torch.equal(result.x_adv, x)
    k = torch.tensor([0, 1, 2, 3] * 3)
    result = jsma(model, x, y, L0(k))
    assert (result.norm <= k).all()
    with torch.no_grad():
        wrong = model(x).argmax(1) != y
    assert torch.equal(result.x_adv[wrong], x[wrong]) and result.success[wrong].all()


def test_bad_hyperparameters():
    model = toy_mlp()
    x, y = toy_batch()
    for kwargs in ({"theta": 0.0}, {"theta": 1.5}, {"gamma": 0.0}, {"gamma": 2.0}, {"chunk": 0}):
        with pytest.raises(UserError):
            jsma(model, x, y, L0(2), **kwargs)
    with pytest.raises(UserError, match="does not support the l2"):
        jsma(model, x, y, L2(0.3))
