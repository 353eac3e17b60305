"""Batched, gradient-free prediction and clean accuracy."""

from __future__ import annotations

import torch
from torch import nn

from advml.errors import UserError


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000, device: torch.device | None = None
) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (computed in eval mode, batch by batch), on ``x``'s device."""
    if x.ndim == 0 or x.shape[0] == 0:
        raise UserError("predict: x must be a non-empty batch (N, ...)")
    device = device or next(model.parameters(), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        outputs = [
            model(x[i : i + batch_size].to(device)).to(x.device)
            for i in range(0, x.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(outputs)


def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | None = None,
) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    if x.shape[0] != y.shape[0]:
        raise UserError(f"accuracy: {x.shape[0]} inputs but {y.shape[0]} labels")
    logits = predict(model, x, batch_size=batch_size, device=device)
    return (logits.argmax(1) == y.to(logits.device)).float().mean().item()
