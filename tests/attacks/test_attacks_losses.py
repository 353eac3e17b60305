"""Per-sample losses: values on hand-made logits, signs, invariances."""

from __future__ import annotations

import pytest
import torch

from advml.attacks import losses
from advml.errors import UserError

Z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 5.0, 1.0]])
Y = torch.tensor([0, 1])


def test_ce():
    expected = -torch.log_softmax(Z, 1).gather(1, Y[:, None]).squeeze(1)
    torch.testing.assert_close(losses.ce(Z, Y), expected)
    torch.testing.assert_close(losses.ce(Z, Y, targeted=True), -expected)


def test_margin_sign_is_success():
    torch.testing.assert_close(losses.margin(Z, Y), torch.tensor([1.0 - 3.0, 5.0 - 2.0]))
    torch.testing.assert_close(
        losses.margin(Z, torch.tensor([2, 2]), targeted=True), torch.tensor([-3.0, 3.0])
    )


def test_dlr_values():
    # sample 0: y = 0 is top: -(3 - 1) / (3 - 0); sample 1: y = 1: -(2 - 5) / (5 - 1)
    torch.testing.assert_close(losses.dlr(Z, Y), torch.tensor([-2.0 / 3.0, 3.0 / 4.0]))


def test_dlr_targeted_values():
    t = torch.tensor([1, 3])
    # with true labels: -(z_y - z_t) / (pi1 - (pi3 + pi4) / 2)
    expected = torch.tensor(
        [-(3.0 - 1.0) / (3.0 - (0.0 - 1.0) / 2), -(2.0 - 1.0) / (5.0 - (1.0 + 0.0) / 2)]
    )
    torch.testing.assert_close(losses.dlr_targeted(Z, t, Y), expected)
    # without: the strongest competitor of the target plays z_y
    expected = torch.tensor([-(3.0 - 1.0) / 3.5, -(5.0 - 1.0) / 4.5])
    torch.testing.assert_close(losses.dlr_targeted(Z, t), expected)
    torch.testing.assert_close(losses.dlr(Z, t, targeted=True), expected)


def test_dlr_is_shift_and_scale_invariant():
    z = torch.randn(20, 10, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (20,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(losses.dlr(3.0 * z + 7.0, y), losses.dlr(z, y), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        losses.dlr_targeted(3.0 * z - 2.0, y), losses.dlr_targeted(z, y), rtol=1e-4, atol=1e-5
    )


def test_dlr_needs_classes():
    with pytest.raises(UserError, match="3 classes"):
        losses.dlr(torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(UserError, match="4 classes"):
        losses.dlr_targeted(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_half_precision_logits_are_promoted():
    out = losses.ce(Z.half(), Y)
    assert out.dtype == torch.float32
    assert losses.margin(Z.double(), Y).dtype == torch.float64


def test_get_loss():
    assert losses.get_loss("CE") is losses.ce and losses.get_loss("cw") is losses.margin
    custom = lambda z, y, t: z.sum(1)  # noqa: E731
    assert losses.get_loss(custom) is custom
    with pytest.raises(UserError, match="unknown loss"):
        losses.get_loss("hinge")
