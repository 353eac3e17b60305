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
    "square": {"n_queries": 30},
    "spsa": {"steps": 4, "nb_samples": 8},
    "hopskipjump": {"steps": 3, "init_evals": 10, "init_trials": 20},
    "transfer": {},
    "eot": {"steps": 5, "samples": 2, "eval_samples": 4},
    "sticker": {"steps": 5, "samples": 2, "eval_samples": 4},
    "universal": {"max_passes": 2, "batch_size": 4, "deepfool_steps": 5},
    "patch": {"steps": 5, "batch_size": 8},
    "cw": {"binary_steps": 3, "steps": 30},
    "cw-l2": {"binary_steps": 3, "steps": 30},
    "ead": {"binary_steps": 3, "steps": 30},
    "lbfgs": {"binary_steps": 3, "steps": 10},
    "jsma": {},
}

#: Attacks defined only on NCHW images: not run on the flat toy problems.
IMAGE_ONLY = frozenset({"patch"})
#: Attacks whose result depends on the whole batch by definition (a universal perturbation).
BATCH_DEPENDENT = frozenset({"universal"})


def toy_names() -> list[str]:
    """Registered attacks that run on the flat toy problems."""
    from advml import attacks

    return [name for name in attacks.names() if name not in IMAGE_ONLY]


def extra_for(
    name: str, dim: int = 2, classes: int = 4, seed: int = 0, dtype=torch.float32
) -> dict:
    """Arguments an attack needs beyond FAST on a toy problem (transfer: its surrogates)."""
    if name == "transfer":
        return {
            "surrogates": [toy_mlp(dim, classes, seed=seed + 5, dtype=dtype)],
            "attack_kwargs": {"steps": 5},
        }
    return {}


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
