"""The two players as one module, how they are built from options, and how samples are drawn.

:class:`GanGame` holds the generator and the (possibly packed, spectrally normalized)
discriminator so that the one trainer, its checkpoints and DDP see a single ``nn.Module``.
:func:`build_game` builds it from a registered architecture and the game's options;
the same call rebuilds it from a checkpoint card.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from advml.errors import UserError
from advml.generative.losses import apply_spectral_norm
from advml.generative.nets import toy as _toy  # noqa: F401  (registers toy-mlp, pacgan-mlp)
from advml.generative.nets.registry import GanPair, build_gan
from advml.generative.packing import PackedDiscriminator, check_pack, packed_shape

__all__ = ["GanGame", "build_game", "rebuild_game", "sample"]


class GanGame(nn.Module):
    """``generator`` and ``discriminator`` of one game plus what they were built from."""

    def __init__(self, pair: GanPair, discriminator: nn.Module, spec: dict[str, Any]) -> None:
        super().__init__()
        self.generator = pair.generator
        self.discriminator = discriminator
        self.latent_dim = int(pair.latent_dim)
        self.num_classes = int(pair.num_classes)
        #: ``{"gan": pair spec, "pack": m, "spectral_norm": bool}``: enough to rebuild the game
        self.spec = spec

    @property
    def pack(self) -> int:
        return int(self.spec.get("pack", 1))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Generate: ``generator(z, y)``."""
        return self.generator(z, y)


def build_game(
    arch: str,
    data_shape: Sequence[int],
    latent_dim: int = 64,
    num_classes: int = 0,
    *,
    pack: int = 1,
    spectral_norm: bool = False,
    options: dict[str, Any] | None = None,
) -> GanGame:
    """Build architecture ``arch`` for ``data_shape``; ``pack > 1`` gives the discriminator
    ``pack`` samples at once (PacGAN), ``spectral_norm`` normalizes its Linear/Conv layers."""
    check_pack(pack)
    options = dict(options or {})
    if pack > 1 and num_classes > 0:
        raise UserError(
            "packing (pack > 1) and class-conditional training cannot be combined: a pack "
            "mixes samples of different labels; use pack 1 or drop the labels"
        )
    pair = build_gan(arch, tuple(data_shape), latent_dim, num_classes, **options)
    discriminator = pair.discriminator
    if pack > 1:
        packed = build_gan(arch, packed_shape(data_shape, pack), latent_dim, 0, **options)
        discriminator = PackedDiscriminator(packed.discriminator, pack)
    if spectral_norm:
        apply_spectral_norm(discriminator)
    spec = {"gan": pair.spec, "pack": pack, "spectral_norm": bool(spectral_norm)}
    return GanGame(pair, discriminator, spec)


def rebuild_game(spec: dict[str, Any]) -> GanGame:
    """The game a :attr:`GanGame.spec` describes (fresh weights)."""
    try:
        gan = spec["gan"]
        with torch.random.fork_rng(devices=[]):
            return build_game(
                gan["arch"],
                tuple(gan["data_shape"]),
                int(gan["latent_dim"]),
                int(gan["num_classes"]),
                pack=int(spec.get("pack", 1)),
                spectral_norm=bool(spec.get("spectral_norm", False)),
                options=dict(gan.get("options") or {}),
            )
    except (KeyError, TypeError) as error:
        raise UserError(f"incomplete GAN spec: {error}") from None


@torch.no_grad()
def sample(
    generator: nn.Module,
    n: int,
    latent_dim: int,
    num_classes: int = 0,
    *,
    seed: int = 0,
    labels: Tensor | None = None,
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor | None]:
    """``n`` samples of ``generator`` in eval mode: ``(x, y)``, ``y`` the labels it was given
    (cycling ``0..K-1`` unless ``labels`` is given; ``None`` when unconditional). The draw
    depends only on ``seed`` and ``n``, not on ``batch_size``."""
    if n < 1:
        raise UserError(f"number of samples must be >= 1, got {n}")
    gen = torch.Generator(device=device).manual_seed(seed)
    z = torch.randn(n, latent_dim, generator=gen, device=device)
    y = None
    if num_classes > 0:
        y = labels.to(device) if labels is not None else torch.arange(n, device=device)
        y = y % num_classes
    was_training = generator.training
    generator.eval()
    try:
        parts = [
            generator(z[i : i + batch_size], None if y is None else y[i : i + batch_size])
            for i in range(0, n, batch_size)
        ]
    finally:
        generator.train(was_training)
    return torch.cat(parts), y
