"""EAD (Chen et al. 2018): the shrinkage-thresholding operator, sparsity against C&W, decision
rules, budgets.

Measured on the digits fixture (first 100 test images, eps = inf, 5 values of c x 300 steps for
every attack): success 100 %; median L1 / L2 / changed pixels: C&W 2.27 / 0.41 / 64; EAD with
beta = 0.01: EN rule 1.62 / 0.47 / 20, L1 rule 1.36 / 0.62 / 12; EAD's L1-threat default
(beta = 0.1, L1 rule) 1.16 / 0.85 / 5. All 360 images, defaults: L1 eps = 2 breaks 89.2 % (FAB
90.3 %, FAB-T 92.5 %, PGD-40 83.6 %; beta = 0.01 with the EN rule 81.9 %), eps = inf median L1
1.15.
"""

from __future__ import annotations

import pytest
import torch
from attack_toys import toy_batch, toy_mlp

from advml.attacks.cw import cw
from advml.attacks.ead import ead, shrink
from advml.errors import UserError
from advml.threats import L0, L1, L2


def test_shrink_is_the_box_constrained_soft_threshold():
    """S_beta(z) = argmin_{low <= u <= high} (u - z)^2 / 2 + beta |u - x|, per feature."""
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(200, generator=gen, dtype=torch.float64) * 1.6 - 0.3
    x = torch.rand(200, generator=gen, dtype=torch.float64)
    x[:20] = 0.0
    x[20:40] = 1.0
    beta = 0.1
    out = shrink(z, x, beta, 0.0, 1.0)
    grid = torch.linspace(0, 1, 20_001, dtype=torch.float64)
    objective = 0.5 * (grid[None] - z[:, None]) ** 2 + beta * (grid[None] - x[:, None]).abs()
    best = objective.min(dim=1).values
    at_out = 0.5 * (out - z) ** 2 + beta * (out - x).abs()
    assert (at_out <= best + 1e-12).all()
    assert ((out >= 0) & (out <= 1)).all()
    assert torch.equal(out[(z - x).abs() <= beta], x[(z - x).abs() <= beta])


@pytest.fixture(scope="module")
def sparse_vs_dense(digits_model, digits):
    x, y = digits[0][:100], digits[1][:100]
    options = {"binary_steps": 5, "steps": 300}
    threads = torch.get_num_threads()  # module fixtures run outside conftest's one-thread fixture
    torch.set_num_threads(1)
    try:
        return x, {
            "cw": cw(digits_model, x, y, L2(float("inf")), **options),
            "en": ead(digits_model, x, y, L2(float("inf")), **options),  # beta 0.01, EN
            "l1": ead(digits_model, x, y, L1(float("inf")), beta=0.01, decision="l1", **options),
            "default-l1": ead(digits_model, x, y, L1(float("inf")), **options),  # beta 0.1, L1
        }
    finally:
        torch.set_num_threads(threads)


def summary(result, x):
    delta = (result.x_adv - x).flatten(1)
    return delta.abs().sum(1).median(), (delta != 0).sum(1).float().median()


def test_ead_is_sparser_than_cw(sparse_vs_dense):
    x, results = sparse_vs_dense
    assert all(r.success.all() for r in results.values())
    cw_l1, cw_l0 = summary(results["cw"], x)
    en_l1, en_l0 = summary(results["en"], x)
    assert en_l1 < 0.8 * cw_l1
    assert en_l0 < 0.5 * cw_l0
    assert L2(float("inf")).contains(results["en"].x_adv, x).all()


def test_l1_rule_and_larger_beta_give_smaller_l1(sparse_vs_dense):
    x, results = sparse_vs_dense
    en_l1, en_l0 = summary(results["en"], x)
    l1_l1, _ = summary(results["l1"], x)
    sparse_l1, sparse_l0 = summary(results["default-l1"], x)
    assert sparse_l1 < l1_l1 < en_l1
    assert sparse_l0 < en_l0
    torch.testing.assert_close(results["l1"].norm, L1(float("inf")).norm(results["l1"].x_adv - x))
    torch.testing.assert_close(results["en"].norm, L2(float("inf")).norm(results["en"].x_adv - x))


@pytest.mark.parametrize("fista", [True, False])
def test_budgets_and_targets(digits_model, digits, fista):
    x, y = digits[0][:30], digits[1][:30]
    options = {"binary_steps": 4, "steps": 200, "fista": fista}
    for threat in (L1(1.5), L2(0.5)):
        result = ead(digits_model, x, y, threat, **options)
        assert threat.contains(result.x_adv, x).all()
        assert result.success_rate > 0.3
    target = (y + 2) % 10
    result = ead(digits_model, x, target, L1(float("inf")), targeted=True, **options)
    assert torch.equal(result.success, result.logits.argmax(1) == target)
    assert result.success.all()


def test_bad_hyperparameters():
    model = toy_mlp()
    x, y = toy_batch()
    for kwargs in (
        {"decision": "l2"},
        {"beta": -0.1},
        {"lr": 0.0},
        {"steps": 0},
        {"initial_const": float("inf")},
    ):
        with pytest.raises(UserError):
            ead(model, x, y, L1(0.3), **kwargs)
    with pytest.raises(UserError, match="does not support the l0"):
        ead(model, x, y, L0(2))
