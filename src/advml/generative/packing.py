"""PacGAN packing: the discriminator judges ``m`` samples at once (Lin, Khetan, Fanti & Oh,
"PacGAN: The power of two samples in generative adversarial networks", NeurIPS 2018, sec. 3).

A packed discriminator ``D(x_1, ..., x_m)`` sees ``m`` samples drawn independently from the
same source (all real or all generated), concatenated on the feature dimension: 2-D points
``(m*N, d) -> (N, m*d)``, images ``(m*N, C, H, W) -> (N, m*C, H, W)``. It returns one score per
pack. Because a mode-collapsed generator's packs lack the diversity of real packs, the packed
discriminator penalises mode collapse (the paper's Theorem 3 on the total-variation
"mode-collapse region"). Packing changes nothing but the discriminator's input width, so
:class:`PackedDiscriminator` wraps any discriminator built for the packed shape
(:func:`packed_shape`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from advml.errors import UserError

__all__ = ["PackedDiscriminator", "check_pack", "pack", "packed_shape"]


def check_pack(m: int) -> int:
    """``m`` if it is a valid packing degree (an integer >= 1), else a :class:`UserError`."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise UserError(f"pack must be an integer >= 1 (1 = no packing), got {m!r}")
    return m


def packed_shape(data_shape: Sequence[int], m: int) -> tuple[int, ...]:
    """Shape of one packed sample: the first (feature or channel) dimension times ``m``."""
    shape = tuple(int(d) for d in data_shape)
    if not shape:
        raise UserError("cannot pack scalar samples: data_shape is empty")
    return (shape[0] * check_pack(m), *shape[1:])


def pack(x: Tensor, m: int) -> Tensor:
    """Group consecutive samples of ``x`` in packs of ``m``: ``(m*N, C, ...) -> (N, m*C, ...)``.

    Sample ``j`` of pack ``i`` is ``x[m*i + j]``; its features occupy rows
    ``j*C .. (j+1)*C - 1`` of the packed sample.
    """
    if x.dim() < 2:
        raise ValueError(f"pack expects a batch of samples (N, C, ...), got shape {tuple(x.shape)}")
    if x.shape[0] % m:
        raise ValueError(f"a batch of {x.shape[0]} samples cannot be split into packs of {m}")
    return x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


class PackedDiscriminator(nn.Module):
    """``D_m(x) = D(pack(x, m))``: wraps ``discriminator``, built for :func:`packed_shape`.

    Keeps the pair contract: ``forward(x, y=None) -> (score, class_logits)`` with one score per
    pack (``N / m`` of them). Labels cannot be packed: conditional discriminators take
    ``pack=1``.
    """

    def __init__(self, discriminator: nn.Module, m: int) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.m = check_pack(m)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if y is not None:
            raise ValueError("a packed discriminator takes no labels (conditional GANs use pack=1)")
        return self.discriminator(pack(x, self.m))

    def extra_repr(self) -> str:
        return f"m={self.m}"
