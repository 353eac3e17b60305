"""The ``Normalize`` layer: input standardization that lives inside the model.

advml's convention is that a model maps inputs in their natural domain (pixels in ``[0, 1]``)
to logits. Standardization ``(x - mean) / std`` is therefore the model's first layer rather
than a step of the data pipeline, so attacks, threat models and verifiers work in pixel space
and never need to know the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from advml.errors import UserError

__all__ = ["Normalize", "as_stat_list"]


def as_stat_list(value: float | Sequence[float] | Tensor, name: str) -> list[float]:
    """``value`` (a number, a sequence of numbers or a tensor) as a non-empty list of floats.

    Raises :class:`~advml.errors.UserError` naming ``name`` for anything else, for an empty
    sequence and for non-finite entries.
    """
    if isinstance(value, Tensor):
        value = value.detach().cpu().reshape(-1).tolist()
    elif type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()  # arrays and NumPy scalars
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise UserError(f"{name} must be a number or a sequence of numbers, got {value!r}")
    out: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise UserError(f"{name} must contain only numbers, got {item!r}")
        if not math.isfinite(item):
            raise UserError(f"{name} must be finite, got {item!r}")
        out.append(float(item))
    if not out:
        raise UserError(f"{name} must not be empty")
    return out


class Normalize(nn.Module):
    """Per-channel standardization ``(x - mean) / std``; the first layer of an advml model.

    Place it at the front of the network (``advml.models.build(..., mean=..., std=...)`` does
    this) so that the model takes inputs in their natural domain, e.g. pixels in ``[0, 1]``.
    Attacks and verifiers then need no knowledge of the statistics.

    ``mean`` and ``std`` are numbers or sequences of equal length (a single value broadcasts).
    They are stored as buffers, so they follow ``.to(device/dtype)`` and are part of the state
    dict. A sequence of length ``C`` is matched against dimension 1 of the input: the channels
    of an ``(N, C, H, W)`` image batch, or the features of a flat ``(N, D)`` batch.

    Args:
        mean: per-channel means (in input units).
        std: per-channel standard deviations; every entry must be ``> 0``.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self, mean: float | Sequence[float] | Tensor, std: float | Sequence[float] | Tensor
    ) -> None:
        super().__init__()
        means = as_stat_list(mean, "Normalize mean")
        stds = as_stat_list(std, "Normalize std")
        if len(means) != len(stds) and 1 not in (len(means), len(stds)):
            raise UserError(
                f"Normalize mean has {len(means)} values but std has {len(stds)}; give one "
                "value per channel for both (or a single value)"
            )
        if any(s <= 0 for s in stds):
            raise UserError(f"Normalize std must be > 0 for every channel, got {stds}")
        size = max(len(means), len(stds))
        if len(means) == 1:
            means = means * size
        if len(stds) == 1:
            stds = stds * size
        self.register_buffer("mean", torch.tensor(means, dtype=torch.get_default_dtype()))
        self.register_buffer("std", torch.tensor(stds, dtype=torch.get_default_dtype()))

    @property
    def num_channels(self) -> int:
        """Number of channels (or features) the statistics are given for."""
        return int(self.mean.numel())

    def forward(self, x: Tensor) -> Tensor:
        channels = self.num_channels
        if channels > 1:
            if x.dim() < 2 or x.shape[1] != channels:
                raise UserError(
                    f"Normalize has statistics for {channels} channels but the input has shape "
                    f"{tuple(x.shape)}; expected (N, {channels}, ...)"
                )
            shape = (1, channels) + (1,) * (x.dim() - 2)
            return (x - self.mean.view(shape)) / self.std.view(shape)
        return (x - self.mean.reshape(())) / self.std.reshape(())

    def extra_repr(self) -> str:
        mean = ", ".join(f"{v:.4g}" for v in self.mean.tolist())
        std = ", ".join(f"{v:.4g}" for v in self.std.tolist())
        return f"mean=[{mean}], std=[{std}]"
