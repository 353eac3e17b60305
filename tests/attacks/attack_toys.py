"""Toy models, batches and fast settings shared by the attack tests (imported, not collected)."""

from __future__ import annotations

import torch
from torch import nn

#: Small budgets so the contract tests stay fast; every registered attack must appear here.
FAST: dict[str, dict] = {
    "fgsm": {},
    "fgm": {},
    "bim": {"steps": 5},
    "illc": {"steps": 5},
    "mifgsm": {"steps": 5},
    "pgd": {"steps": 5, "restarts": 2},
    "apgd": {"steps": 8},
    "apgd-ce": {"steps": 8},
    "apgd-dlr": {"steps": 8},
    "apgd-t": {"steps": 6, "n_targets": 2},
    "deepfool": {"steps": 5},
    "fab": {"steps": 5, "restarts": 2},
    "fab-t": {"steps": 4, "n_targets": 2},
}

#: A radius per norm that is neither tiny nor the whole box for the toy problems.
EPS = {"linf": 0.1, "l2": 0.3, "l1": 0.5}


def toy_mlp(dim: int = 2, classes: int = 4, seed: int = 0, dtype=torch.float32) -> nn.Module:
    """A fixed random MLP on [0, 1]^dim with ``classes`` outputs."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, classes)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 3)
    return model.eval()


def toy_batch(n: int = 12, dim: int = 2, classes: int = 4, seed: int = 1, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=gen, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=gen)
    return x, y
