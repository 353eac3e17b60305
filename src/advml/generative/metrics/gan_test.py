"""GAN-test accuracy of a class-conditional generator (Shmelkov, Schmid & Alahari, "How good
is my GAN?", ECCV 2018, §3.2): a classifier trained on real data labels images generated
for each requested class; high accuracy means the generated images look like their class
(precision-like), not that the generator covers the class (that is GAN-train, §3.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from advml.errors import UserError
from advml.generative.nets.conditional import truncated_normal

__all__ = ["GanTestResult", "gan_test"]


class GanTestResult(NamedTuple):
    """Overall GAN-test accuracy, accuracy per requested class, and the number of images."""

    accuracy: float
    per_class: dict[int, float]
    samples: int


def _device(module: nn.Module) -> torch.device:
    return next(iter(module.parameters()), torch.empty(0)).device


def gan_test(
    generator: nn.Module,
    classifier: nn.Module,
    *,
    num_classes: int,
    latent_dim: int,
    samples_per_class: int = 1000,
    classes: Sequence[int] | None = None,
    batch_size: int = 500,
    seed: int = 0,
    truncation: float | None = None,
) -> GanTestResult:
    """GAN-test (Shmelkov et al. 2018): accuracy of ``classifier`` on ``samples_per_class``
    images that ``generator(z, y)`` makes for each class ``y`` in ``classes`` (default: all).

    ``z`` is standard normal (or truncated at ``truncation``, BigGAN's trick) drawn from a
    generator seeded with ``seed``; both networks run in eval mode without gradients.
    """
    if num_classes < 2:
        raise UserError(f"GAN-test needs a class-conditional generator, num_classes={num_classes}")
    wanted = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    if not wanted or any(c < 0 or c >= num_classes for c in wanted):
        raise UserError(f"classes must be a non-empty list in [0, {num_classes}), got {classes}")
    if samples_per_class < 1 or batch_size < 1:
        raise UserError("samples_per_class and batch_size must be >= 1")
    labels = torch.tensor(wanted).repeat_interleave(samples_per_class)
    gen = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    if truncation is None:
        z = torch.randn(n, latent_dim, generator=gen)
    else:
        z = truncated_normal(n, latent_dim, truncation, gen)
    g_device, c_device = _device(generator), _device(classifier)
    modes = generator.training, classifier.training
    generator.eval()
    classifier.eval()
    try:
        with torch.no_grad():
            predicted = torch.cat(
                [
                    classifier(
                        generator(
                            z[s : s + batch_size].to(g_device),
                            labels[s : s + batch_size].to(g_device),
                        ).to(c_device)
                    )
                    .argmax(1)
                    .cpu()
                    for s in range(0, n, batch_size)
                ]
            )
    finally:
        generator.train(modes[0])
        classifier.train(modes[1])
    correct = (predicted == labels).to(torch.float64)
    per_class = correct.view(len(wanted), samples_per_class).mean(1)
    return GanTestResult(
        float(correct.mean()), dict(zip(wanted, per_class.tolist(), strict=True)), n
    )
