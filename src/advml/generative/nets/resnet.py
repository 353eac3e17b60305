"""Residual GANs: the ResNet generator/discriminator of Gulrajani et al. ("Improved Training of
Wasserstein GANs", NeurIPS 2017, Appendix F) and Miyato et al. ("Spectral Normalization for
GANs", ICLR 2018, Appendix B.4), and BigGAN's class conditioning on them (Brock, Donahue &
Simonyan, "Large Scale GAN Training for High Fidelity Natural Image Synthesis", ICLR 2019).

Generator block: ``x -> BN -> ReLU -> up 2x -> conv3x3 -> BN -> ReLU -> conv3x3``, plus the
shortcut ``up 2x -> conv1x1``. Discriminator block: ``x -> ReLU -> conv3x3 -> ReLU -> conv3x3
-> avgpool 2``, plus ``conv1x1 -> avgpool 2`` (the first block skips its first ReLU and pools
before the 1x1 shortcut, Miyato et al.'s "optimized block"). The discriminator ends with ReLU,
global sum pooling and :class:`~advml.generative.nets.conditional.DiscriminatorHead`; it has
no normalization layers, so spectral norm can wrap every Linear/Conv.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from advml.errors import UserError
from advml.generative.nets.attention import SelfAttention2d
from advml.generative.nets.common import (
    ImagePlan,
    OutputMap,
    attention_levels,
    check_labels,
    check_latent,
    image_plan,
    level_channels,
    positive_int,
)
from advml.generative.nets.conditional import (
    DiscriminatorHead,
    SharedClassEmbedding,
    check_conditioning,
    make_norm,
)
from advml.generative.nets.registry import GanPair, register_gan

__all__ = [
    "ResNetDiscriminator",
    "ResNetGenerator",
    "ResidualDown",
    "ResidualUp",
    "biggan",
    "resnet",
]


class ResidualUp(nn.Module):
    """Generator residual block with 2x nearest upsampling (Gulrajani et al. 2017, App. F);
    its two norms are (conditional) BN called as ``norm(x, c)``."""

    def __init__(self, cin: int, cout: int, num_classes: int = 0, cond_dim: int = 0) -> None:
        super().__init__()
        self.norm1 = make_norm(cin, num_classes, cond_dim)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = make_norm(cout, num_classes, cond_dim)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = F.interpolate(F.relu(self.norm1(x, c)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), c)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResidualDown(nn.Module):
    """Discriminator residual block, optionally downsampling by average pooling (Miyato et al.
    2018, App. B.4); ``first`` makes it the "optimized" input block."""

    def __init__(self, cin: int, cout: int, *, down: bool = True, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if (down or cin != cout) else None

    def _pool(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.down else x

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        h = x if self.first else F.relu(x)
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if self.shortcut is None:
            return h + x
        skip = self.shortcut(self._pool(x)) if self.first else self._pool(self.shortcut(x))
        return h + skip


class ResNetGenerator(nn.Module):
    """ResNet generator ``G(z, y) -> x`` in ``[0, 1]``.

    Without ``embed_dim``: class-conditional BN from ``y`` when ``num_classes > 0`` (Miyato &
    Koyama 2018). With ``embed_dim > 0``: BigGAN's shared embedding and hierarchical latent
    (Brock et al. 2019, Fig. 15a) — each block's BN gains are linear in ``[e(y), z_i]``.
    """

    def __init__(
        self,
        plan: ImagePlan,
        latent_dim: int,
        num_classes: int = 0,
        *,
        width: int = 64,
        attention: Sequence[int] = (),
        output: str = "tanh",
        embed_dim: int = 0,
    ) -> None:
        super().__init__()
        self.plan, self.latent_dim, self.num_classes = plan, latent_dim, num_classes
        self.shared: SharedClassEmbedding | None = None
        cond_dims = [0] * plan.levels
        first_dim = latent_dim
        if embed_dim:
            self.shared = SharedClassEmbedding(latent_dim, num_classes, embed_dim, plan.levels)
            cond_dims, first_dim = self.shared.cond_dims, self.shared.sizes[0]
        norm_classes = 0 if embed_dim else num_classes
        c0 = level_channels(width, plan, 0)
        self.fc = nn.Linear(first_dim, c0 * plan.base**2)
        self.blocks = nn.ModuleList(
            ResidualUp(
                level_channels(width, plan, level - 1),
                level_channels(width, plan, level),
                norm_classes,
                cond_dims[level - 1],
            )
            for level in range(1, plan.levels + 1)
        )
        self.attention = nn.ModuleDict(
            {str(lv): SelfAttention2d(level_channels(width, plan, lv)) for lv in attention}
        )
        self.norm = nn.BatchNorm2d(width)
        self.to_image = nn.Conv2d(width, plan.channels, 3, padding=1)
        self.output = OutputMap(output)

    def _attend(self, h: Tensor, level: int) -> Tensor:
        key = str(level)
        return self.attention[key](h) if key in self.attention else h

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_latent(z, self.latent_dim)
        if self.num_classes:
            y = check_labels(y, z.shape[0], self.num_classes, "the ResNet generator")
        else:
            y = None
        if self.shared is not None:
            z0, conds = self.shared(z, y)
        else:
            z0, conds = z, [y] * self.plan.levels
        h = self.fc(z0).view(z.shape[0], -1, self.plan.base, self.plan.base)
        h = self._attend(h, 0)
        for level, (block, c) in enumerate(zip(self.blocks, conds, strict=True), start=1):
            h = self._attend(block(h, c), level)
        return self.output(self.to_image(F.relu(self.norm(h))))


class ResNetDiscriminator(nn.Module):
    """ResNet discriminator ``D(x, y) -> (score, class_logits)``: residual blocks down to
    ``base x base``, one more block, ReLU, global sum pooling, head (Miyato et al. 2018)."""

    def __init__(
        self,
        plan: ImagePlan,
        num_classes: int = 0,
        *,
        width: int = 64,
        attention: Sequence[int] = (),
        conditioning: str = "projection",
    ) -> None:
        super().__init__()
        self.plan, self.num_classes = plan, num_classes
        blocks: list[nn.Module] = []
        cin = plan.channels
        for level in range(plan.levels, 0, -1):
            cout = level_channels(width, plan, level - 1)
            blocks.append(ResidualDown(cin, cout, first=level == plan.levels))
            if level - 1 in attention:
                blocks.append(SelfAttention2d(cout))
            cin = cout
        blocks.append(ResidualDown(cin, cin, down=False))
        self.blocks = nn.ModuleList(blocks)
        self.input_attention = SelfAttention2d(plan.channels) if plan.levels in attention else None
        self.head = DiscriminatorHead(cin, num_classes, conditioning)

    def features(self, x: Tensor) -> Tensor:
        """``φ(x)``: the globally sum-pooled ReLU features that the head reads."""
        h = self.input_attention(x) if self.input_attention is not None else x
        for block in self.blocks:
            h = block(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        expected = (self.plan.channels, self.plan.size, self.plan.size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise UserError(f"discriminator expects images (N, {expected}), got {tuple(x.shape)}")
        if self.head.conditioning == "projection":
            y = check_labels(y, x.shape[0], self.num_classes, "the projection discriminator")
        return self.head(self.features(x), y)


@register_gan(
    "resnet",
    paper="Gulrajani et al., 'Improved Training of Wasserstein GANs', NeurIPS 2017 (App. F); "
    "Miyato et al., 'Spectral Normalization for GANs', ICLR 2018 (App. B.4)",
)
def resnet(
    data_shape: tuple[int, ...],
    latent_dim: int,
    num_classes: int,
    *,
    width: int = 64,
    attention_at: int | Sequence[int] = 0,
    output: str = "tanh",
    conditioning: str = "projection",
) -> GanPair:
    """ResNet generator/discriminator (SN-GAN / WGAN-GP layout) for square images 8, 16, 28, 32...

    Options: ``width`` (channels at full resolution, doubling per halving up to 8x),
    ``attention_at`` (SAGAN self-attention at these resolution(s), 0 for none; at the full
    resolution the discriminator attends over the input image), ``output`` (``"tanh"`` or
    ``"sigmoid"``), ``conditioning`` (with classes: ``"projection"`` or ``"acgan"``
    discriminator; the generator uses conditional BN).
    """
    plan = image_plan("resnet", data_shape)
    width = positive_int("resnet", "width", width)
    attention = attention_levels("resnet", plan, attention_at)
    conditioning = check_conditioning("resnet", conditioning)
    generator = ResNetGenerator(
        plan, latent_dim, num_classes, width=width, attention=attention, output=output
    )
    discriminator = ResNetDiscriminator(
        plan, num_classes, width=width, attention=attention, conditioning=conditioning
    )
    return GanPair(generator, discriminator, latent_dim, num_classes)


@register_gan(
    "biggan",
    paper="Brock, Donahue & Simonyan, 'Large Scale GAN Training for High Fidelity Natural "
    "Image Synthesis', ICLR 2019",
)
def biggan(
    data_shape: tuple[int, ...],
    latent_dim: int,
    num_classes: int,
    *,
    width: int = 64,
    attention_at: int | Sequence[int] = 0,
    output: str = "tanh",
    embed_dim: int = 128,
) -> GanPair:
    """BigGAN-style ResNet: shared class embedding + hierarchical z into every CBN, projection D.

    ``z`` is split into ``k + 1`` chunks (``k`` = number of generator blocks), so
    ``latent_dim >= k + 1``. Sample with :func:`~advml.generative.nets.conditional.
    truncated_normal` for the truncation trick. Without classes only the hierarchical latent
    conditions the norms. Options: ``width``, ``attention_at``, ``output`` as for ``resnet``;
    ``embed_dim`` (width of the shared class embedding).
    """
    plan = image_plan("biggan", data_shape)
    width = positive_int("biggan", "width", width)
    embed_dim = positive_int("biggan", "embed_dim", embed_dim)
    attention = attention_levels("biggan", plan, attention_at)
    generator = ResNetGenerator(
        plan,
        latent_dim,
        num_classes,
        width=width,
        attention=attention,
        output=output,
        embed_dim=embed_dim,
    )
    discriminator = ResNetDiscriminator(
        plan, num_classes, width=width, attention=attention, conditioning="projection"
    )
    return GanPair(generator, discriminator, latent_dim, num_classes)
