"""The attack suite on a small model trained on real MNIST (a session fixture): every attack
beats random noise of the same budget, succeeds more as the budget grows, and gradient-free
attacks break the same model behind gradient-masking input quantization."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from advml import attacks
from advml.data import load
from advml.threats import make
from advml.training import TrainConfig, Trainer

#: attack -> (threat, budgets, fast settings). Minimum-norm attacks are judged at the same
#: budgets: success means an adversarial example inside the ball.
SUITE = {
    "fgsm": ("linf", (0.05, 0.1, 0.2), {}),
    "bim": ("linf", (0.05, 0.1, 0.2), {"steps": 10}),
    "pgd": ("linf", (0.05, 0.1, 0.2), {"steps": 20}),
    "mifgsm": ("linf", (0.05, 0.1, 0.2), {"steps": 10}),
    "apgd-ce": ("linf", (0.05, 0.1, 0.2), {"steps": 20}),
    "apgd-t": ("linf", (0.05, 0.1, 0.2), {"steps": 20, "n_targets": 3}),
    "fab": ("linf", (0.05, 0.1, 0.2), {"steps": 20}),
    "deepfool": ("l2", (1.0, 2.0, 3.0), {}),
    "square": ("linf", (0.05, 0.1, 0.2), {"n_queries": 300}),
    "spsa": ("linf", (0.05, 0.1, 0.2), {"steps": 40, "nb_samples": 64, "lr": 0.02}),
    "hopskipjump": ("l2", (1.0, 2.0, 3.0), {"steps": 8}),
}


@pytest.fixture(scope="module")
def mnist_model(data_root):
    x, y = load("mnist", "train", root=data_root)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    config = TrainConfig(epochs=2, batch_size=100, lr=2e-3, device="cpu", progress=False)
    Trainer(model, config=config).fit((x[:10000], y[:10000]))
    model.eval()
    return model


@pytest.fixture(scope="module")
def mnist_test(data_root, mnist_model):
    x, y = load("mnist", "test", root=data_root)
    x, y = x[:200], y[:200]
    with torch.no_grad():
        correct = mnist_model(x).argmax(1) == y
    assert correct.float().mean() > 0.9
    return x[correct], y[correct]


def noise_success(model, x, y, threat, seed=0):
    gen = torch.Generator().manual_seed(seed)
    delta = torch.randn(x.shape, generator=gen)
    if threat.name == "linf":
        delta = delta.sign() * threat.eps
    else:
        delta = delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * threat.eps
    with torch.no_grad():
        return (model((x + delta).clamp(0, 1)).argmax(1) != y).float().mean().item()


@pytest.mark.parametrize("name", sorted(SUITE))
def test_attack_beats_noise_and_grows_with_budget(name, mnist_model, mnist_test):
    norm, budgets, settings = SUITE[name]
    x, y = mnist_test
    if name == "hopskipjump":  # thousands of queries per sample: a subset keeps CI fast
        x, y = x[:64], y[:64]
    rates = []
    for eps in budgets:
        threat = make(norm, eps)
        result = attacks.get(name)(mnist_model, x, y, threat, **settings)
        assert threat.contains(result.x_adv, x).all()
        with torch.no_grad():
            fooled = mnist_model(result.x_adv).argmax(1) != y
        assert torch.equal(fooled, result.success)
        rates.append(result.success.float().mean().item())
        assert rates[-1] > noise_success(mnist_model, x, y, threat) + 0.1, (name, eps, rates)
    assert all(b >= a - 0.02 for a, b in itertools.pairwise(rates)), (name, rates)
    assert rates[-1] > 0.8, (name, rates)


class Quantized(nn.Module):
    """Input quantization to 4 levels: gradients are zero almost everywhere (masking)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 3) / 3)


def test_gradient_free_attacks_break_a_gradient_masked_model(mnist_model, mnist_test):
    x, y = mnist_test
    masked = Quantized(mnist_model).eval()
    with torch.no_grad():
        keep = masked(x).argmax(1) == y
    x, y = x[keep][:80], y[keep][:80]
    threat = make("linf", 0.2)
    white = attacks.pgd(masked, x, y, threat, steps=20).success.float().mean().item()
    square = attacks.square(masked, x, y, threat, n_queries=500).success.float().mean().item()
    assert white < 0.2, white  # PGD sees zero gradients
    assert square > white + 0.4, (square, white)
