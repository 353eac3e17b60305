r"""The gradient reversal layer and the schedules of Ganin & Lempitsky (2015), "Unsupervised
Domain Adaptation by Backpropagation", ICML, §3.

The layer :math:`R_\lambda` is the identity in the forward pass and multiplies the gradient by
:math:`-\lambda` in the backward pass (the paper's pseudo-function, eqs. 7–8):

.. math::  R_\lambda(x) = x, \qquad \frac{dR_\lambda}{dx} = -\lambda I.

Placed between a feature extractor and an adversary (the domain classifier, or the
sensitive-attribute predictor of fair representations), it turns the saddle-point problem
``min_features max_adversary`` into one loss minimized by one optimizer: the adversary descends
its loss while the features ascend it, scaled by ``lambda``.

Schedules, as pure functions of training progress ``p`` in [0, 1] (§5, "Training"):

* adaptation factor :math:`\lambda_p = \frac{2}{1 + \exp(-\gamma p)} - 1`, ``gamma = 10``;
* learning-rate annealing :math:`\mu_p = \frac{\mu_0}{(1 + \alpha p)^\beta}`, ``alpha = 10``,
  ``beta = 0.75`` (:func:`lr_annealing` returns the multiplier :math:`\mu_p / \mu_0`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from advml.errors import UserError


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * (-ctx.scale), None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """:math:`R_\\lambda(x)`: ``x`` unchanged; the backward pass multiplies the gradient by
    ``-scale`` (Ganin & Lempitsky 2015, eqs. 7–8)."""
    scale = float(scale)
    if not math.isfinite(scale) or scale < 0:
        raise UserError(f"gradient reversal scale must be a finite number >= 0, got {scale}")
    return _GradientReversal.apply(x, scale)


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse` with a settable ``scale`` (lambda)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _progress(p: float) -> float:
    if not math.isfinite(p):
        raise UserError(f"training progress must be a number in [0, 1], got {p}")
    return min(max(float(p), 0.0), 1.0)


def grl_lambda(p: float, gamma: float = 10.0) -> float:
    """Adaptation factor :math:`\\lambda_p = 2 / (1 + e^{-\\gamma p}) - 1` at progress ``p``
    (Ganin & Lempitsky 2015, §5): 0 at the start, close to 1 at the end."""
    return 2.0 / (1.0 + math.exp(-gamma * _progress(p))) - 1.0


def lr_annealing(p: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """Learning-rate multiplier :math:`\\mu_p / \\mu_0 = (1 + \\alpha p)^{-\\beta}` at progress
    ``p`` (Ganin & Lempitsky 2015, §5; ``alpha = 10``, ``beta = 0.75``)."""
    return (1.0 + alpha * _progress(p)) ** (-beta)


#: Name of :func:`lr_annealing` in the trainer's schedule table (``TrainConfig(schedule=...)``).
SCHEDULE_NAME = "dann"
