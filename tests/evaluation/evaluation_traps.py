"""Trap models for the evaluation tests (imported, not collected): each hides its weakness
from some attack, and an honest evaluation must neither be fooled nor stay silent."""

from __future__ import annotations

import torch
from torch import nn

from advml import attacks
from advml.threats import Linf


class Quantized(nn.Module):
    """Input quantization to ``levels`` steps: the gradient is exactly zero everywhere
    (gradient masking by a shattered gradient, Athalye et al. 2018)."""

    def __init__(self, model: nn.Module, levels: int = 16) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)


class Scaled(nn.Module):
    """Logits multiplied by ``scale``: the same predictions, a saturated softmax, so the
    cross-entropy gradient underflows to zero."""

    def __init__(self, model: nn.Module, scale: float = 1e4) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


class Noisy(nn.Module):
    """Gaussian noise on the input at every forward pass (a randomized defense)."""

    def __init__(self, model: nn.Module, sigma: float = 0.1) -> None:
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x):
        return self.model(x + self.sigma * torch.randn_like(x))


class Softmax(nn.Module):
    """Probabilities instead of logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).softmax(dim=1)


class ExplodingGradient(nn.Module):
    """Same outputs, input gradient multiplied by 1e12 (a deliberately obfuscated backward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x + (x - x.detach()) * 1e12)


class NaNGradient(nn.Module):
    """Same outputs, NaN input gradient (sqrt at 0 on the backward pass)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x + torch.sqrt((x - x.detach()).abs()) * 0)


class Detached(nn.Module):
    """Outputs computed without autograd (e.g. a model behind numpy)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.no_grad():
            return self.model(x)


def reference_robust(trap, base, x, y, eps, *, draws: int = 1):
    """An upper bound on the trap's true robust accuracy from attacks the evaluation does not
    have: PGD-100 with 10 restarts on the *unwrapped* model, once stopping at the first
    success and once running every step (far past the boundary), its adversarial examples
    then classified by the trap. With ``draws > 1`` the trap's accuracy is averaged over its
    randomness."""
    threat = Linf(eps)
    transfers = [
        attacks.pgd(base, x, y, threat, steps=100, restarts=10, early_stop=stop, seed=1).x_adv
        for stop in (True, False)
    ]
    total = torch.zeros(x.shape[0])
    with torch.no_grad():
        for _ in range(draws):
            ok = trap(x).argmax(1) == y
            for x_adv in transfers:
                ok &= trap(x_adv).argmax(1) == y
            total += ok.float()
    return (total / draws).mean().item()
