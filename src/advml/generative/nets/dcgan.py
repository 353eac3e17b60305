"""DCGAN (Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks", ICLR 2016, §3 and Fig. 1) and AC-GAN on the
same networks (Odena, Olah & Shlens, "Conditional Image Synthesis with Auxiliary Classifier
GANs", ICML 2017).

Generator: ``z`` -> linear -> ``(w·2^k, base, base)`` (at most ``8w`` channels) -> BN -> ReLU
-> ``k`` factor-2 transposed convolutions (4x4, stride 2), each followed by BN and ReLU,
halving the width down to ``w`` at full resolution -> 3x3 convolution -> ``[0, 1]``.
Discriminator: 3x3 convolution -> LeakyReLU 0.2 -> strided 4x4 convolutions with BN (none
after the first layer, as in the paper) and LeakyReLU -> flatten ->
:class:`~advml.generative.nets.conditional.DiscriminatorHead`.
Weights start from ``N(0, 0.02)``. SAGAN self-attention can be inserted at any resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
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
from advml.generative.nets.conditional import DiscriminatorHead, check_conditioning, make_norm
from advml.generative.nets.registry import GanPair, register_gan

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "acgan", "dcgan"]


class _UpBlock(nn.Module):
    """Transposed convolution 4x4 stride 2 -> (conditional) BN -> ReLU (Radford et al. 2016)."""

    def __init__(self, cin: int, cout: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
        self.norm = make_norm(cout, num_classes)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return F.relu(self.norm(self.conv(x), y))


class _DownBlock(nn.Module):
    """Convolution 4x4 stride 2 -> BN (optional) -> LeakyReLU 0.2 (Radford et al. 2016)."""

    def __init__(self, cin: int, cout: int, batchnorm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 4, 2, 1, bias=not batchnorm)
        self.norm = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


def _dcgan_init(module: nn.Module) -> None:
    """``N(0, 0.02)`` weights, zero biases, BN gains ``N(1, 0.02)`` (Radford et al. 2016, §4)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """DCGAN generator ``G(z, y) -> x`` in ``[0, 1]`` (Radford et al. 2016, Fig. 1).

    With classes, every BN is class-conditional (``labels="cbn"``, Miyato & Koyama 2018) or
    the one-hot label is concatenated to ``z`` (``labels="concat"``, AC-GAN, Odena et al.
    2017, §3).
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
        labels: str = "cbn",
    ) -> None:
        super().__init__()
        self.plan, self.latent_dim, self.num_classes = plan, latent_dim, num_classes
        self.concat = bool(num_classes) and labels == "concat"
        norm_classes = 0 if self.concat else num_classes
        c0 = level_channels(width, plan, 0)
        self.fc = nn.Linear(latent_dim + (num_classes if self.concat else 0), c0 * plan.base**2)
        self.norm0 = make_norm(c0, norm_classes)
        stages: list[nn.Module] = []
        if 0 in attention:
            stages.append(SelfAttention2d(c0))
        for level in range(1, plan.levels + 1):
            cin, cout = level_channels(width, plan, level - 1), level_channels(width, plan, level)
            stages.append(_UpBlock(cin, cout, norm_classes))
            if level in attention:
                stages.append(SelfAttention2d(cout))
        self.stages = nn.ModuleList(stages)
        self.to_image = nn.Conv2d(width, plan.channels, 3, padding=1)
        self.output = OutputMap(output)
        _dcgan_init(self)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_latent(z, self.latent_dim)
        if self.num_classes:
            y = check_labels(y, z.shape[0], self.num_classes, "the DCGAN generator")
        else:
            y = None
        h = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], 1) if self.concat else z
        c = None if self.concat else y
        h = self.fc(h).view(z.shape[0], -1, self.plan.base, self.plan.base)
        h = F.relu(self.norm0(h, c))
        for stage in self.stages:
            h = stage(h, c)
        return self.output(self.to_image(h))


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator ``D(x, y) -> (score, class_logits)`` (Radford et al. 2016, §3)."""

    def __init__(
        self,
        plan: ImagePlan,
        num_classes: int = 0,
        *,
        width: int = 64,
        attention: Sequence[int] = (),
        batchnorm: bool = True,
        conditioning: str = "projection",
    ) -> None:
        super().__init__()
        self.plan, self.num_classes = plan, num_classes
        self.stem = nn.Conv2d(plan.channels, width, 3, padding=1)
        stages: list[nn.Module] = []
        if plan.levels in attention:
            stages.append(SelfAttention2d(width))
        for level in range(plan.levels, 0, -1):
            cin, cout = level_channels(width, plan, level), level_channels(width, plan, level - 1)
            stages.append(_DownBlock(cin, cout, batchnorm))
            if level - 1 in attention:
                stages.append(SelfAttention2d(cout))
        self.stages = nn.ModuleList(stages)
        features = level_channels(width, plan, 0) * plan.base**2
        self.head = DiscriminatorHead(features, num_classes, conditioning)
        _dcgan_init(self)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        expected = (self.plan.channels, self.plan.size, self.plan.size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise UserError(f"discriminator expects images (N, {expected}), got {tuple(x.shape)}")
        if self.head.conditioning == "projection":
            y = check_labels(y, x.shape[0], self.num_classes, "the projection discriminator")
        h = F.leaky_relu(self.stem(x), 0.2)
        for stage in self.stages:
            h = stage(h)
        return self.head(h.flatten(1), y)


@register_gan(
    "dcgan",
    paper="Radford, Metz & Chintala, 'Unsupervised Representation Learning with Deep "
    "Convolutional GANs', ICLR 2016",
)
def dcgan(
    data_shape: tuple[int, ...],
    latent_dim: int,
    num_classes: int,
    *,
    width: int = 64,
    attention_at: int | Sequence[int] = 0,
    output: str = "tanh",
    d_batchnorm: bool = True,
    conditioning: str = "projection",
) -> GanPair:
    """DCGAN generator/discriminator for square images of side base * 2**k (8, 16, 28, 32...).

    Options: ``width`` (channels at full resolution, doubling per halving up to 8x),
    ``attention_at`` (resolution(s) that get a SAGAN self-attention block in both networks,
    0 for none), ``output`` (``"tanh"``: ``(tanh+1)/2``, or ``"sigmoid"``), ``d_batchnorm``
    (BN in the discriminator; turn off for WGAN-GP or spectral norm), ``conditioning`` (with
    classes: ``"projection"`` or ``"acgan"`` discriminator; the generator uses conditional BN).
    """
    plan = image_plan("dcgan", data_shape)
    width = positive_int("dcgan", "width", width)
    check_conditioning("dcgan", conditioning)
    attention = attention_levels("dcgan", plan, attention_at)
    generator = DCGANGenerator(
        plan, latent_dim, num_classes, width=width, attention=attention, output=output
    )
    discriminator = DCGANDiscriminator(
        plan,
        num_classes,
        width=width,
        attention=attention,
        batchnorm=bool(d_batchnorm),
        conditioning=conditioning,
    )
    return GanPair(generator, discriminator, latent_dim, num_classes)


@register_gan(
    "acgan",
    paper="Odena, Olah & Shlens, 'Conditional Image Synthesis with Auxiliary Classifier GANs', "
    "ICML 2017",
)
def acgan(
    data_shape: tuple[int, ...],
    latent_dim: int,
    num_classes: int,
    *,
    width: int = 64,
    attention_at: int | Sequence[int] = 0,
    output: str = "tanh",
    d_batchnorm: bool = True,
) -> GanPair:
    """AC-GAN: DCGAN networks; G takes ``[z, onehot(y)]``, D returns class logits too.

    The discriminator's second output is the auxiliary classifier ``P(C | X)`` (Odena et al.
    2017, Eq. 2-3); its score ignores ``y``. Needs ``num_classes >= 2``.
    """
    if num_classes < 2:
        raise UserError(f"acgan is class-conditional: num_classes must be >= 2, got {num_classes}")
    plan = image_plan("acgan", data_shape)
    width = positive_int("acgan", "width", width)
    attention = attention_levels("acgan", plan, attention_at)
    generator = DCGANGenerator(
        plan,
        latent_dim,
        num_classes,
        width=width,
        attention=attention,
        output=output,
        labels="concat",
    )
    discriminator = DCGANDiscriminator(
        plan,
        num_classes,
        width=width,
        attention=attention,
        batchnorm=bool(d_batchnorm),
        conditioning="acgan",
    )
    return GanPair(generator, discriminator, latent_dim, num_classes)
