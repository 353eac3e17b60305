"""Small helpers about models."""

from __future__ import annotations

from torch import nn

__all__ = ["count_parameters"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (shared parameters counted once).

    Buffers (batch-norm statistics, ``Normalize`` mean/std) are not parameters and are not
    counted. With ``trainable_only``, parameters with ``requires_grad=False`` are skipped.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
