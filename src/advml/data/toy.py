"""2-D mixtures of Gaussians of the PacGAN protocol (Lin, Khetan, Fanti & Oh, "PacGAN: The
power of two samples in generative adversarial networks", NeurIPS 2018).

* ``toy-ring``: 8 modes equally spaced on the unit circle (mode ``k`` at angle ``2*pi*k/8``),
  isotropic standard deviation 0.01.
* ``toy-grid``: 25 modes on ``{-4, -2, 0, 2, 4}^2`` (mode ``5*i + j`` at
  ``(v[i], v[j])``), standard deviation 0.05.

Every mode has the same weight. :func:`toy_sample` draws from a mixture with a given seed;
the ``train``/``test`` splits of :func:`advml.data.load` are fixed draws of 50,000 and 2,500
points with seeds 0 and 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from advml.data.catalog import TOY_SEEDS, TOY_SPLITS
from advml.errors import UserError

TOY_SIGMA: dict[str, float] = {"toy-ring": 0.01, "toy-grid": 0.05}


def _centres(name: str) -> np.ndarray:
    if name == "toy-ring":
        angles = 2.0 * math.pi * np.arange(8) / 8.0
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == "toy-grid":
        values = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
        gx, gy = np.meshgrid(values, values, indexing="ij")
        return np.stack([gx.ravel(), gy.ravel()], axis=1)
    raise UserError(f"unknown toy dataset {name!r}; use 'toy-ring' or 'toy-grid'")


def toy_modes(name: str) -> tuple[torch.Tensor, float]:
    """Mode centres ``(K, 2)`` float32 and the per-coordinate standard deviation of a toy set.

    ``toy_modes("toy-ring")`` gives the 8 unit-circle centres and 0.01;
    ``toy_modes("toy-grid")`` the 25 grid centres and 0.05 (PacGAN, NeurIPS 2018, sec. 4).
    """
    centres = _centres(name)
    return torch.from_numpy(centres.astype(np.float32)), TOY_SIGMA[name]


def toy_sample(name: str, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` points of a toy mixture: float32 ``(n, 2)`` and their int64 mode indices.

    Mode indices are uniform over the modes; the draw is a deterministic function of
    ``seed`` (numpy ``default_rng``).
    """
    if int(n) < 0:
        raise UserError(f"toy_sample: n must be >= 0, got {n}")
    centres = _centres(name)
    sigma = TOY_SIGMA[name]
    rng = np.random.default_rng(seed)
    modes = rng.integers(0, centres.shape[0], size=int(n))
    points = centres[modes] + sigma * rng.standard_normal((int(n), 2))
    return torch.from_numpy(points.astype(np.float32)), torch.from_numpy(modes.astype(np.int64))


def load_toy(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed ``split`` of a toy dataset (50,000 train / 2,500 test; seeds 0 / 1)."""
    return toy_sample(name, TOY_SPLITS[split], seed=TOY_SEEDS[split])
