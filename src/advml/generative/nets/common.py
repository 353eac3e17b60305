"""Shared plumbing of the image GANs: the resolution plan, channel widths, label checks and
the generator's output map to ``[0, 1]``.

Every image architecture grows a ``base x base`` feature map (``base`` in 3..7) by ``k``
factor-2 upsamplings to the data's ``H = W = base * 2**k`` (4 -> 8 -> 16 -> 32 for CIFAR-sized
images, 7 -> 14 -> 28 for MNIST), the layout of the DCGAN generator (Radford, Metz & Chintala,
ICLR 2016, Fig. 1); the discriminator mirrors it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from advml.errors import UserError

__all__ = [
    "ImagePlan",
    "OutputMap",
    "attention_levels",
    "check_labels",
    "check_latent",
    "image_plan",
    "level_channels",
    "positive_int",
]


class ImagePlan:
    """``(channels, size)`` of the images and the plan ``size = base * 2**levels``."""

    def __init__(self, channels: int, size: int, base: int, levels: int) -> None:
        self.channels, self.size, self.base, self.levels = channels, size, base, levels

    def resolution(self, level: int) -> int:
        """Side length of the feature map at ``level`` (0 = ``base``, ``levels`` = ``size``)."""
        return self.base * 2**level

    @property
    def resolutions(self) -> list[int]:
        return [self.resolution(j) for j in range(self.levels + 1)]


def image_plan(arch: str, data_shape: Sequence[int], min_levels: int = 1) -> ImagePlan:
    """The plan for square images ``(C, H, H)``: halve ``H`` while it is even and above 7.

    Raises:
        UserError: not a ``(C, H, W)`` shape, not square, or too few factor-2 levels.
    """
    shape = tuple(data_shape)
    if len(shape) != 3 or any(not isinstance(d, int) or d < 1 for d in shape):
        raise UserError(
            f"{arch} generates images: data_shape must be (channels, height, width) such as "
            f"(1, 28, 28), got {shape}"
        )
    c, h, w = shape
    if h != w:
        raise UserError(f"{arch} needs square images, got {h}x{w}; crop or pad to a square")
    base, levels = h, 0
    while base % 2 == 0 and base > 7:
        base //= 2
        levels += 1
    if levels < min_levels or base < 3:
        raise UserError(
            f"{arch} needs images of side base * 2**k with base in 3..7 and k >= {min_levels} "
            f"(8, 14, 16, 28, 32, 64, ...), got {h}x{w}"
        )
    return ImagePlan(c, h, base, levels)


def level_channels(width: int, plan: ImagePlan, level: int, cap: int = 8) -> int:
    """Channels at ``level``: ``width`` at full resolution, doubling per halving, at most
    ``cap * width`` (the DCGAN widths of Radford et al. 2016, Fig. 1)."""
    return width * min(2 ** (plan.levels - level), cap)


def positive_int(arch: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{arch}: option {name} must be a positive int, got {value!r}")
    return value


def attention_levels(arch: str, plan: ImagePlan, attention_at: int | Sequence[int]) -> set[int]:
    """Levels whose resolution is in ``attention_at`` (``0`` or ``()`` for none)."""
    if isinstance(attention_at, bool):
        raise UserError(f"{arch}: attention_at must be a resolution such as 16, got {attention_at}")
    wanted = [attention_at] if isinstance(attention_at, int) else list(attention_at)
    wanted = [r for r in wanted if r != 0]
    levels = set()
    for r in wanted:
        if not isinstance(r, int) or r not in plan.resolutions:
            raise UserError(
                f"{arch}: attention_at={r!r} is not a feature-map resolution of a "
                f"{plan.size}x{plan.size} image; choose from {plan.resolutions} (0 for none)"
            )
        levels.add(plan.resolutions.index(r))
    return levels


def check_latent(z: Tensor, latent_dim: int) -> None:
    if z.dim() != 2 or z.shape[1] != latent_dim:
        raise UserError(f"generator expects z of shape (N, {latent_dim}), got {tuple(z.shape)}")


def check_labels(y: Tensor | None, n: int, num_classes: int, who: str) -> Tensor:
    """``y`` as int64 labels ``(n,)`` in ``[0, num_classes)``, or UserError."""
    if y is None:
        raise UserError(f"{who} is class-conditional: pass labels y of shape (N,)")
    if y.shape != (n,) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise UserError(
            f"{who}: labels y must be integers of shape ({n},), got {y.dtype} {tuple(y.shape)}"
        )
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise UserError(f"{who}: labels must lie in [0, {num_classes}), got {y.min()}..{y.max()}")
    return y.long()


OUTPUTS = ("tanh", "sigmoid")


class OutputMap(nn.Module):
    """Map generator pre-activations to ``[0, 1]``: ``(tanh(a) + 1) / 2`` (Radford et al. 2016
    use tanh on ``[-1, 1]`` data; advml data lie in ``[0, 1]``) or ``sigmoid(a)``."""

    def __init__(self, kind: str = "tanh") -> None:
        super().__init__()
        if kind not in OUTPUTS:
            raise UserError(f"output must be one of {', '.join(OUTPUTS)}, got {kind!r}")
        self.kind = kind

    def forward(self, a: Tensor) -> Tensor:
        if self.kind == "sigmoid":
            return torch.sigmoid(a)
        return (torch.tanh(a) + 1) / 2

    def extra_repr(self) -> str:
        return self.kind
