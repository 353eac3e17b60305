r"""Interval bound propagation (IBP; Gowal et al. 2018, "On the Effectiveness of Interval Bound
Propagation for Training Verifiably Robust Models", eq. 6).

Given elementwise bounds ``l <= z_{k-1} <= u``, an affine layer ``z_k = W z_{k-1} + b`` maps the
centre ``c = (u + l)/2`` and radius ``r = (u - l)/2`` to

.. math::  c_k = W c + b, \qquad r_k = |W|\, r, \qquad z_k \in [c_k - r_k,\; c_k + r_k],

and a monotone non-decreasing layer ``h`` (ReLU, max/average pooling, ``Normalize``, flatten)
maps ``[l, u]`` to ``[h(l), h(u)]``. Both are exact for one layer and differentiable, so the
bounds can be trained through (certified training).

:func:`margin_lower_bounds` bounds the margins ``z_y - z_j`` with the last linear layer folded
into the specification (``(W_y - W_j) z + (b_y - b_j)``, Gowal et al.'s elision), which is
tighter than subtracting the logits' intervals.

Soundness in floating point: interval arithmetic here uses the model's own dtype without
outward rounding, so bounds can be off by rounding error (about 1e-6 relative in float32);
run in float64 when the margin is that thin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError

Bounds = tuple[torch.Tensor, torch.Tensor]


class UnsupportedLayer(UserError):
    """A layer IBP has no rule for; the message names it."""


def _monotone_layers() -> tuple[type[nn.Module], ...]:
    from advml.models import Normalize

    return (
        nn.ReLU,
        nn.Flatten,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.Identity,
        nn.Sigmoid,
        nn.Tanh,
        nn.LeakyReLU,
        nn.Dropout,
        Normalize,
    )


def layers(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model`` in order, nested ``Sequential`` containers flattened."""
    if isinstance(model, nn.Sequential):
        return [leaf for child in model for leaf in layers(child)]
    return [model]


def _affine(layer: nn.Module, centre: torch.Tensor, radius: torch.Tensor) -> Bounds:
    if isinstance(layer, nn.Linear):
        return F.linear(centre, layer.weight, layer.bias), F.linear(radius, layer.weight.abs())
    if isinstance(layer, nn.Conv2d):

        def conv(t, w, b):
            return F.conv2d(t, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)

        return conv(centre, layer.weight, layer.bias), conv(radius, layer.weight.abs(), None)
    if isinstance(layer, nn.BatchNorm2d | nn.BatchNorm1d):
        if layer.training:
            raise UnsupportedLayer(
                f"{type(layer).__name__} in training mode: batch statistics "
                "depend on the batch; call model.eval() first"
            )
        scale = (layer.weight if layer.affine else 1.0) / torch.sqrt(layer.running_var + layer.eps)
        shift = (layer.bias if layer.affine else 0.0) - layer.running_mean * scale
        shape = (1, -1) + (1,) * (centre.ndim - 2)
        return centre * scale.view(shape) + shift.view(shape), radius * scale.abs().view(shape)
    raise UnsupportedLayer(
        f"IBP has no rule for layer {type(layer).__name__}; supported: "
        "Linear, Conv2d, BatchNorm (eval), ReLU, pooling, Flatten, Normalize"
    )


def _propagate(stack: list[nn.Module], lower: torch.Tensor, upper: torch.Tensor) -> Bounds:
    monotone = _monotone_layers()
    for layer in stack:
        if isinstance(layer, monotone):
            lower, upper = layer(lower), layer(upper)
        else:
            centre, radius = _affine(layer, (upper + lower) / 2, (upper - lower) / 2)
            lower, upper = centre - radius, centre + radius
    return lower, upper


def interval_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Bounds:
    """Elementwise bounds on ``model``'s outputs for every input in the box ``[lower, upper]``."""
    if lower.shape != upper.shape:
        raise UserError(
            f"interval bounds: lower {tuple(lower.shape)} and upper "
            f"{tuple(upper.shape)} differ in shape"
        )
    if bool((lower > upper).any()):
        raise UserError("interval bounds: some lower bound exceeds its upper bound")
    return _propagate(layers(model), lower, upper)


def input_box(
    x: torch.Tensor, eps: float | torch.Tensor, low: float = 0.0, high: float = 1.0
) -> Bounds:
    """The L∞ ball of radius ``eps`` around ``x`` intersected with ``[low, high]``."""
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if eps_t.ndim == 1:
        eps_t = eps_t.view(-1, *([1] * (x.ndim - 1)))
    return (x - eps_t).clamp(low, high), (x + eps_t).clamp(low, high)


def margin_lower_bounds(
    model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Lower bounds ``(N, C)`` on ``z_y - z_j`` over the input box (0 in column ``y``).

    The model must end with a ``Linear`` layer, which is folded into the specification.
    """
    stack = layers(model)
    last = stack[-1]
    if not isinstance(last, nn.Linear):
        raise UnsupportedLayer(
            f"margin bounds need a final Linear layer, found {type(last).__name__}"
        )
    low, high = _propagate(stack[:-1], lower, upper)
    centre, radius = (high + low) / 2, (high - low) / 2
    weight = last.weight[y][:, None, :] - last.weight[None, :, :]  # (N, C, D)
    bias = (last.bias[y][:, None] - last.bias[None, :]) if last.bias is not None else 0.0
    mid = torch.einsum("ncd,nd->nc", weight, centre) + bias
    spread = torch.einsum("ncd,nd->nc", weight.abs(), radius)
    return mid - spread


def verified_robust(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    low: float = 0.0,
    high: float = 1.0,
) -> torch.Tensor:
    """Bool ``(N,)``: IBP proves every point of the L∞ ``eps`` ball (∩ box) is classified ``y``."""
    with torch.no_grad():
        margins = margin_lower_bounds(model, *input_box(x, eps, low, high), y)
    margins = margins.scatter(1, y[:, None], float("inf"))
    return (margins > 0).all(1)
