"""Bad inputs give one clear UserError (or ModelOutputError) naming the problem."""

from __future__ import annotations

import pytest
import torch
from attack_toys import toy_batch, toy_mlp
from torch import nn

from advml import attacks
from advml.attacks import ModelOutputError, ThreatViolation
from advml.attacks.base import Problem
from advml.errors import AdvmlError, UserError
from advml.threats import L0, L1, L2, Linf


@pytest.fixture
def setup():
    return toy_mlp(), *toy_batch()


def test_length_mismatch(setup):
    model, x, y = setup
    with pytest.raises(UserError, match=r"y \(labels\) must have shape \(12,\)"):
        attacks.pgd(model, x, y[:5], Linf(0.1))


def test_labels_out_of_range(setup):
    model, x, y = setup
    with pytest.raises(UserError, match=r"class indices in \[0, 4\)"):
        attacks.pgd(model, x, y + 10, Linf(0.1))
    with pytest.raises(UserError, match="targets must be class indices"):
        attacks.pgd(model, x, y - 10, Linf(0.1), targeted=True)


def test_label_dtype(setup):
    model, x, y = setup
    with pytest.raises(UserError, match="integer class indices"):
        attacks.fgsm(model, x, y.float(), Linf(0.1))
    result = attacks.fgsm(model, x, y.tolist(), Linf(0.1))  # a list of ints is fine
    assert result.success.shape == (12,)


def test_x_checks(setup):
    model, x, y = setup
    with pytest.raises(UserError, match="outside the threat's box"):
        attacks.pgd(model, x + 1.5, y, Linf(0.1))
    with pytest.raises(UserError, match="NaN or inf"):
        attacks.pgd(model, x * float("nan"), y, Linf(0.1))
    with pytest.raises(UserError, match="floating-point"):
        attacks.pgd(model, (x * 10).long(), y, Linf(0.1))
    with pytest.raises(UserError, match="shape"):
        attacks.pgd(model, x[0], y[:1], Linf(0.1))
    with pytest.raises(UserError, match=r"torch\.Tensor"):
        attacks.pgd(model, x.numpy(), y, Linf(0.1))


def test_non_finite_model_outputs(setup):
    _, x, y = setup

    class Inf(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 3), float("inf"))

    with pytest.raises(ModelOutputError, match="NaN/inf logits") as info:
        attacks.fgsm(Inf(), x, y % 3, Linf(0.1))
    assert isinstance(info.value, UserError)


def test_bad_logit_shapes(setup):
    _, x, y = setup
    with pytest.raises(ModelOutputError, match=r"shape \(N, C\)"):
        attacks.fgsm(nn.Flatten(0), x, y, Linf(0.1))
    with pytest.raises(ModelOutputError, match="C >= 2"):
        attacks.fgsm(nn.Linear(2, 1), x, y * 0, Linf(0.1))


def test_non_differentiable_model(setup):
    _, x, y = setup

    class Argmax(nn.Module):
        def forward(self, x):
            return nn.functional.one_hot((x[:, 0] > 0.5).long(), 4).float()

    with pytest.raises(ModelOutputError, match="differentiabl"):
        attacks.fgsm(Argmax(), x, y, Linf(0.1))


def test_unsupported_threat_and_targeting(setup):
    model, x, y = setup
    with pytest.raises(UserError, match="does not support the l2 threat model"):
        attacks.fgsm(model, x, y, L2(0.1))
    with pytest.raises(UserError, match="does not support the l1"):
        attacks.apgd(model, x, y, L1(0.1))
    with pytest.raises(UserError, match="does not support the l0"):
        attacks.pgd(model, x, y, L0(2))
    with pytest.raises(UserError, match="no targeted variant"):
        attacks.deepfool(model, x, y, L2(0.1), targeted=True)
    with pytest.raises(UserError, match="threat must be"):
        attacks.pgd(model, x, y, 0.1)
    with pytest.raises(UserError, match=r"nn\.Module"):
        attacks.pgd(lambda t: t, x, y, Linf(0.1))


def test_bad_hyperparameters(setup):
    model, x, y = setup
    for kwargs in ({"steps": 0}, {"steps": 2.5}, {"restarts": 0}, {"step_size": -1.0}):
        with pytest.raises(UserError):
            attacks.pgd(model, x, y, Linf(0.1), **kwargs)
    with pytest.raises(UserError, match="rho"):
        attacks.apgd(model, x, y, Linf(0.1), rho=2.0)
    with pytest.raises(TypeError):
        attacks.apgd_ce(model, x, y, Linf(0.1), loss="dlr")
    with pytest.raises(UserError, match="unknown loss"):
        attacks.pgd(model, x, y, Linf(0.1), loss="hinge")
    with pytest.raises(UserError, match="infinite eps"):
        attacks.pgd(model, x, y, Linf(float("inf")))
    with pytest.raises(UserError, match="finite eps"):
        attacks.apgd(model, x, y, L2(float("inf")))
    with pytest.raises(UserError, match="momentum"):
        attacks.mifgsm(model, x, y, Linf(0.1), momentum=-1.0)
    with pytest.raises(UserError, match="overshoot"):
        attacks.deepfool(model, x, y, L2(0.1), overshoot=float("nan"))


def test_apgd_t_needs_four_classes_for_dlr():
    model = toy_mlp(classes=3)
    x, y = toy_batch(classes=3)
    with pytest.raises(UserError, match="4 classes"):
        attacks.apgd_t(model, x, y, Linf(0.1), steps=3)
    attacks.apgd_t(model, x, y, Linf(0.1), steps=3, loss="margin")


def test_inference_mode(setup):
    model, x, y = setup
    with torch.inference_mode(), pytest.raises(UserError, match="inference_mode"):
        attacks.pgd(model, x, y, Linf(0.1))


def test_device_or_dtype_mismatch(setup):
    model, x, y = setup
    with pytest.raises(UserError, match=r"parameters are torch\.float32"):
        attacks.fgsm(model, x.double(), y, Linf(0.1))


def test_output_check_raises_instead_of_clipping(setup):
    """A (deliberately) broken attack that leaves the ball is caught by the final check."""
    model, x, y = setup
    problem = Problem("pgd", model, x, y, Linf(0.1), False)
    with pytest.raises(ThreatViolation, match="outside Linf") as info:
        problem.finish((x + 0.2).clamp(0, 1))
    assert isinstance(info.value, AdvmlError) and not isinstance(info.value, UserError)
    with pytest.raises(ThreatViolation, match="out-of-box: 12"):
        problem.finish(x + 2.0)
