"""Figures people would rather look at than read: robustness curves and adversarial examples.

``adversarial_examples_figure`` draws the talk's "panda -> gibbon" layout (Goodfellow et al.
2014, Fig. 1): clean input | perturbation (amplified to the full range) | adversarial input, each
with the predicted class and confidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from advml.evaluation.clean import predict


def robustness_curve(
    curves: Mapping[str, Mapping[float, float]],
    path: str | Path,
    *,
    threat: str = "linf",
    title: str = "Robust accuracy vs budget",
) -> Path:
    """Plot robust accuracy against ε for each named model; ε = 0 is clean accuracy."""
    figure, axis = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for label, points in curves.items():
        eps = sorted(points)
        axis.plot(eps, [100 * points[e] for e in eps], marker="o", label=label)
    axis.set_xlabel(f"ε ({threat})")
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(-2, 102)
    axis.grid(alpha=0.3)
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path


def _image(tensor: torch.Tensor):
    array = tensor.detach().cpu().float()
    if array.shape[0] == 1:
        return array[0].numpy(), "gray"
    return array.permute(1, 2, 0).clamp(0, 1).numpy(), None


def adversarial_examples_figure(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """One row per sample: clean | amplified perturbation | adversarial, with predictions."""
    probs_clean = predict(model, x).softmax(1)
    probs_adv = predict(model, x_adv).softmax(1)
    names = list(class_names) if class_names else [str(i) for i in range(probs_clean.shape[1])]
    rows = x.shape[0]
    figure, axes = plt.subplots(rows, 3, figsize=(6.0, 2.0 * rows + 0.4), dpi=120, squeeze=False)
    for row in range(rows):
        delta = x_adv[row] - x[row]
        scale = delta.abs().max().clamp_min(1e-12)
        panels = [
            (x[row], probs_clean[row], "clean"),
            (0.5 + 0.5 * delta / scale, None, f"perturbation ×{0.5 / scale.item():.1f}"),
            (x_adv[row], probs_adv[row], "adversarial"),
        ]
        for axis, (image, probs, label) in zip(axes[row], panels, strict=True):
            pixels, cmap = _image(image)
            axis.imshow(pixels, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if probs is not None:
                confidence, predicted = probs.max(0)
                label = f"{label}: “{names[predicted]}”\n{100 * confidence.item():.1f} % confidence"
            axis.set_title(label, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
