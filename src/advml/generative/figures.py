"""Pictures of generated samples: an image grid, and a scatter plot of 2-D samples over the
modes of the real mixture. PNG files are written with matplotlib (already the figure backend
of :mod:`advml.evaluation.figures`); no torchvision or PIL."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor

__all__ = ["image_grid", "save_image_grid", "save_scatter"]


def image_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> Tensor:
    """Tile ``(N, C, H, W)`` images in ``[0, 1]`` into one ``(C, H', W')`` image, ``nrow``
    per row (default: a square-ish grid), separated by ``padding`` pixels of 1.0 (white)."""
    if images.dim() != 4:
        raise ValueError(f"image_grid expects (N, C, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    full = torch.ones(rows * nrow, c, h + padding, w + padding, dtype=images.dtype)
    full[:n, :, :h, :w] = images.detach().cpu().clamp(0, 1)
    grid = full.reshape(rows, nrow, c, h + padding, w + padding).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(c, rows * (h + padding), nrow * (w + padding))
    return grid[:, : rows * (h + padding) - padding, : nrow * (w + padding) - padding]


def save_image_grid(images: Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write :func:`image_grid` of ``images`` as a PNG (grey for one channel)."""
    grid = image_grid(images, nrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if grid.shape[0] == 1:
        plt.imsave(path, grid[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    else:
        plt.imsave(path, grid[:3].permute(1, 2, 0).numpy())
    return path


def save_scatter(
    samples: Tensor,
    path: str | Path,
    centres: Tensor | None = None,
    title: str | None = None,
) -> Path:
    """Scatter 2-D ``samples`` (black dots) over the mixture ``centres`` (red crosses)."""
    points = samples.detach().cpu().float()
    figure, axis = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    axis.scatter(points[:, 0], points[:, 1], s=2, c="black", alpha=0.3, linewidths=0)
    if centres is not None:
        c = centres.detach().cpu().float()
        axis.scatter(c[:, 0], c[:, 1], s=40, c="red", marker="x", linewidths=1.2)
        span = float(c.abs().max()) * 1.5 + 0.5
        axis.set_xlim(-span, span)
        axis.set_ylim(-span, span)
    axis.set_aspect("equal")
    axis.grid(alpha=0.3)
    if title:
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
