"""Stacked MNIST: three MNIST digits as the R, G, B channels of one image, so the data have
``10³ = 1000`` modes (Metz, Poole, Pfau & Sohl-Dickstein, "Unrolled GANs", ICLR 2017, §3.3.2;
Srivastava et al., VEEGAN, NeurIPS 2017; Lin et al., PacGAN, NeurIPS 2018, §5).

Mode collapse is measured by classifying each channel of generated images with a digit
classifier trained on MNIST: the mode is ``100·d_R + 10·d_G + d_B``; the scores are the
number of modes hit at least once and ``KL(p ‖ U)`` between the mode histogram ``p`` and the
uniform distribution on the 1000 modes (PacGAN, Table 2).
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
from torch import Tensor, nn

from advml.errors import UserError

__all__ = [
    "MAX_KL",
    "STACKED_MODES",
    "StackedModeCoverage",
    "classify_modes",
    "load_stacked_mnist",
    "stack_digits",
    "stacked_mnist_coverage",
    "stacked_mode_coverage",
]

STACKED_MODES = 1000
#: ``KL(p ‖ U)`` when a single mode is hit: ``log 1000`` nats, the largest possible value.
MAX_KL = math.log(STACKED_MODES)


def stack_digits(x: Tensor, y: Tensor, n: int, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` Stacked-MNIST images from single-channel digits ``x (M, 1, H, W)`` with labels
    ``y``: each channel is an independently, uniformly drawn digit (seeded by ``seed``).

    Returns:
        images ``(n, 3, H, W)`` in ``[0, 1]`` and their modes ``100·y_R + 10·y_G + y_B``.
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise UserError(f"stack_digits needs grey images (M, 1, H, W), got {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise UserError(f"stack_digits: {x.shape[0]} images but labels of shape {tuple(y.shape)}")
    if n < 1:
        raise UserError(f"stack_digits: n must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(x.shape[0], (n, 3), generator=gen)
    images = x[index.flatten()].view(n, 3, *x.shape[2:])
    digits = y[index]
    return images, digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


def load_stacked_mnist(
    split: str = "train",
    n: int = 60000,
    *,
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """``n`` Stacked-MNIST images of MNIST's ``split`` (data root ``root``, else
    ``$ADVML_DATA``) and their modes in ``0..999``."""
    from advml.data import load

    x, y = load("mnist", split, root=root)
    return stack_digits(x, y, n, seed=seed)


def classify_modes(images: Tensor, classifier: nn.Module, *, batch_size: int = 500) -> Tensor:
    """Mode of every Stacked-MNIST image: each channel classified as a digit by
    ``classifier`` (``(N, 1, H, W) -> 10 logits``), combined as ``100·d_R + 10·d_G + d_B``."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise UserError(f"Stacked-MNIST images are (N, 3, H, W), got {tuple(images.shape)}")
    channels = images.reshape(-1, 1, *images.shape[2:])
    device = next(iter(classifier.parameters()), torch.empty(0)).device
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            digits = torch.cat(
                [
                    classifier(channels[s : s + batch_size].to(device)).argmax(1).cpu()
                    for s in range(0, channels.shape[0], batch_size)
                ]
            )
    finally:
        classifier.train(was_training)
    return (digits.view(-1, 3) * torch.tensor([100, 10, 1])).sum(1)


class StackedModeCoverage(NamedTuple):
    """Modes hit, ``KL(p ‖ uniform)`` in nats, and the histogram ``p`` as counts."""

    modes: int
    kl: float
    histogram: Tensor


def stacked_mode_coverage(modes: Tensor, num_modes: int = STACKED_MODES) -> StackedModeCoverage:
    """Number of distinct modes among ``modes`` (ints in ``[0, num_modes)``) and
    ``KL(p ‖ U) = Σ_m p_m log(p_m · num_modes)`` (PacGAN, Lin et al. 2018, Table 2)."""
    if modes.dim() != 1 or modes.numel() == 0:
        raise UserError(f"modes must be a non-empty 1-D tensor, got {tuple(modes.shape)}")
    if int(modes.min()) < 0 or int(modes.max()) >= num_modes:
        raise UserError(f"modes must lie in [0, {num_modes}), got {modes.min()}..{modes.max()}")
    counts = torch.bincount(modes.long(), minlength=num_modes)
    p = counts.to(torch.float64) / modes.numel()
    hit = p > 0
    kl = float((p[hit] * (p[hit] * num_modes).log()).sum())
    return StackedModeCoverage(int(hit.sum()), max(kl, 0.0), counts)


def stacked_mnist_coverage(
    images: Tensor, classifier: nn.Module, *, batch_size: int = 500
) -> StackedModeCoverage:
    """:func:`stacked_mode_coverage` of generated Stacked-MNIST ``images`` (PacGAN, Table 2)."""
    return stacked_mode_coverage(classify_modes(images, classifier, batch_size=batch_size))
