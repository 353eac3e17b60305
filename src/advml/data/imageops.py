"""Batched image helpers for pairing datasets of different shapes (domain adaptation).

Domain-adversarial training (Ganin & Lempitsky 2015) feeds source and target images through
one feature extractor, so both must share a shape: MNIST (1x28x28 grey) is repeated to three
channels when paired with MNIST-M (3x28x28 colour), and USPS (16x16) is resized to 28x28.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from advml.errors import UserError


def repeat_channels(x: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """Repeat the single channel of NCHW grey images ``channels`` times (grey -> RGB).

    Images that already have ``channels`` channels are returned unchanged.
    """
    if x.ndim != 4:
        raise UserError(f"expected NCHW images, got a tensor of shape {tuple(x.shape)}")
    if x.shape[1] == channels:
        return x
    if x.shape[1] != 1:
        raise UserError(
            f"cannot turn {x.shape[1]}-channel images into {channels} channels; "
            "only 1-channel (grey) images can be repeated"
        )
    return x.expand(-1, channels, -1, -1).contiguous()


def resize_images(
    x: torch.Tensor, size: int | tuple[int, int], *, batch_size: int = 4096
) -> torch.Tensor:
    """Resize NCHW images in [0, 1] to ``size`` with batched bilinear interpolation.

    Uses ``align_corners=False`` and antialiasing when shrinking (so 32 -> 28 does not alias);
    the result is clamped to [0, 1]. Runs in chunks of ``batch_size`` images to bound memory.
    """
    if x.ndim != 4:
        raise UserError(f"expected NCHW images, got a tensor of shape {tuple(x.shape)}")
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise UserError(f"image size must be positive, got {size}")
    if tuple(x.shape[2:]) == (height, width):
        return x
    shrink = height < x.shape[2] or width < x.shape[3]
    chunks = [
        F.interpolate(
            x[start : start + batch_size].float(),
            size=(height, width),
            mode="bilinear",
            align_corners=False,
            antialias=shrink,
        )
        for start in range(0, x.shape[0], batch_size)
    ]
    out = torch.cat(chunks) if chunks else x.new_zeros((0, x.shape[1], height, width))
    return out.clamp_(0.0, 1.0).contiguous()
