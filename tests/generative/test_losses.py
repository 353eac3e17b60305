"""GAN losses and discriminator regularisers against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from advml.errors import UserError
from advml.generative.losses import (
    LOSSES,
    apply_spectral_norm,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    interpolate,
    r1_penalty,
)
from advml.generative.packing import PackedDiscriminator

REAL = torch.tensor([0.0, 1.0])
FAKE = torch.tensor([0.0, -1.0])
SP1 = math.log1p(math.exp(-1.0))  # softplus(-1)
SPM1 = math.log1p(math.exp(1.0))  # softplus(1)
LOG2 = math.log(2.0)


@pytest.mark.parametrize(
    ("name", "d_value", "g_value"),
    [
        # D: -log sigma(r) - log(1 - sigma(f)); G minimax: log(1 - sigma(f)); G NS: -log sigma(f)
        ("minimax", LOG2 + SP1, -(LOG2 + SP1) / 2),
        ("nonsaturating", LOG2 + SP1, (LOG2 + SPM1) / 2),
        # D: relu(1 - r) -> [1, 0], relu(1 + f) -> [1, 0]; G: -f
        ("hinge", 1.0, 0.5),
        # D: E f - E r = -0.5 - 0.5; G: -E f
        ("wgan-gp", -1.0, 0.5),
        # D: ((r-1)^2 -> [1, 0]) / 2 + (f^2 -> [0, 1]) / 2 averaged; G: (f-1)^2 -> [1, 4]
        ("lsgan", 0.5, 1.25),
    ],
)
def test_losses_match_hand_values(name, d_value, g_value):
    assert discriminator_loss(name, REAL, FAKE).item() == pytest.approx(d_value, abs=1e-6)
    assert generator_loss(name, FAKE).item() == pytest.approx(g_value, abs=1e-6)


def test_minimax_generator_saturates_where_nonsaturating_does_not():
    """Goodfellow et al. 2014, sec. 3: when D confidently rejects the fakes (f << 0), the
    gradient of log(1 - D(G(z))) vanishes but that of -log D(G(z)) does not."""
    f = torch.tensor([-10.0], requires_grad=True)
    (g_minimax,) = torch.autograd.grad(generator_loss("minimax", f), f)
    (g_ns,) = torch.autograd.grad(generator_loss("nonsaturating", f), f)
    assert abs(g_minimax.item()) < 1e-4
    assert abs(g_ns.item()) > 0.99


def test_unknown_loss_is_a_user_error():
    with pytest.raises(UserError, match="unknown GAN loss 'wgan'"):
        discriminator_loss("wgan", REAL, FAKE)
    assert set(LOSSES) == {"minimax", "nonsaturating", "hinge", "wgan-gp", "lsgan"}


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = <w, x> with ||w|| = 5: the penalty is 10 * (5 - 1)^2 = 160 everywhere.
    w = torch.tensor([3.0, 4.0])
    x = torch.randn(6, 2, requires_grad=True)
    assert gradient_penalty(x @ w, x, 10.0).item() == pytest.approx(160.0)
    w = torch.tensor([0.6, 0.8])  # unit norm: no penalty
    assert gradient_penalty(x @ w, x, 10.0).item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_takes_the_norm_per_pack():
    # a packed critic scores two 2-D points at once with w = (1, 0, 0, 1): per-pack norm
    # sqrt(2); a per-point norm would give 1 and no penalty
    linear = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))

    class Critic(nn.Module):
        def forward(self, x, y=None):
            return linear(x).squeeze(1), None

    x = torch.randn(8, 2, requires_grad=True)
    scores, _ = PackedDiscriminator(Critic(), 2)(x)
    assert scores.shape == (4,)
    expected = (math.sqrt(2.0) - 1.0) ** 2
    assert gradient_penalty(scores, x, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_r1_penalty_of_a_quadratic_critic():
    # D(x) = ||x||^2, grad = 2x: squared norms 4 and 16, mean 10, times gamma / 2 = 0.5
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    assert r1_penalty((x**2).sum(1), x, gamma=1.0).item() == pytest.approx(5.0)
    # and it is differentiable in the parameters (create_graph)
    scale = torch.tensor(2.0, requires_grad=True)
    r1_penalty(scale * (x**2).sum(1), x, gamma=1.0).backward()
    assert scale.grad.item() == pytest.approx(2 * 2.0 * 10.0 / 2)  # d/ds (s^2 * 10 / 2)


def test_interpolates_lie_on_the_segments():
    real, fake = torch.zeros(100, 3, 2, 2), torch.ones(100, 3, 2, 2)
    mixed = interpolate(real, fake, torch.Generator().manual_seed(0))
    per_sample = mixed.flatten(1)
    assert torch.all(per_sample == per_sample[:, :1])  # one eps per sample
    assert float(mixed.min()) >= 0.0 and float(mixed.max()) <= 1.0
    assert per_sample[:, 0].std() > 0.2  # eps varies across samples


def test_spectral_norm_normalises_every_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Conv1d(1, 4, 3), nn.Linear(14, 1))
    with torch.no_grad():
        for layer in (net[0], net[3]):
            layer.weight.mul_(10.0)
    apply_spectral_norm(net)
    apply_spectral_norm(net)  # idempotent
    layers = [net[0], net[2], net[3]]
    assert all(hasattr(layer, "parametrizations") for layer in layers)
    assert all(len(layer.parametrizations.weight) == 1 for layer in layers)
    for _ in range(30):  # power iterations run in training mode
        for layer in (net[0], net[3]):
            layer(torch.zeros(1, layer.in_features))
    for layer in (net[0], net[3]):
        sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3)
