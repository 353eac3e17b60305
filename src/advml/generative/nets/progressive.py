"""Progressive growing with fade-in (Karras, Aila, Laine & Lehtinen, "Progressive Growing of
GANs for Improved Quality, Stability, and Variation", ICLR 2018, §2-4 and Fig. 2).

Both networks hold every resolution from ``base`` to the data's size (4 -> 8 -> 16 -> 32, or
7 -> 14 -> 28 for MNIST); a stage ``s`` and a fade-in weight ``α`` (buffers, so checkpoints
keep them) select what runs. While stage ``s`` fades in, the generator outputs
``(1 − α) · up(toRGB_{s−1}(h_{s−1})) + α · toRGB_s(block_s(h_{s−1}))`` and the discriminator
blends ``fromRGB_{s−1}(down(x))`` with ``block_s(fromRGB_s(x))`` the same way (Fig. 2b).

To keep the pair contract (images always have the data's shape), the generator's stage-``s``
image is upsampled (nearest) to the full size and the discriminator average-pools its input
back to stage ``s``; pooling a nearest-upsampled image returns it exactly, so this equals
training at the low resolution with average-pooled real images, as in the paper. Also from
the paper: pixelwise feature normalization in the generator (§4.2) and the minibatch
standard-deviation feature in the discriminator (§3). Equalized learning rate (§4.1) is not
implemented. The trainer drives growth with :func:`set_growth` and :func:`growth_schedule`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.errors import UserError
from advml.generative.nets.common import (
    ImagePlan,
    OutputMap,
    check_labels,
    check_latent,
    image_plan,
    level_channels,
    positive_int,
)
from advml.generative.nets.conditional import DiscriminatorHead, check_conditioning
from advml.generative.nets.registry import GanPair, register_gan
from advml.generative.nets.stylegan import PixelNorm

__all__ = [
    "MinibatchStd",
    "ProgressiveDiscriminator",
    "ProgressiveGenerator",
    "growth_schedule",
    "progressive",
    "set_growth",
]


class _Growing(nn.Module):
    """Holds the ``stage`` and fade-in ``alpha`` buffers; starts fully grown."""

    def __init__(self, plan: ImagePlan) -> None:
        super().__init__()
        self.plan = plan
        self.register_buffer("stage", torch.tensor(plan.levels))
        self.register_buffer("alpha", torch.tensor(1.0))

    def set_stage(self, stage: int, alpha: float = 1.0) -> None:
        """Run at resolution ``base * 2**stage`` with fade-in weight ``alpha`` in ``[0, 1]``."""
        if not 0 <= stage <= self.plan.levels:
            raise UserError(f"stage must be in 0..{self.plan.levels}, got {stage}")
        if not 0.0 <= alpha <= 1.0:
            raise UserError(f"fade-in alpha must be in [0, 1], got {alpha}")
        self.stage.fill_(stage)
        self.alpha.fill_(alpha)

    def _state(self) -> tuple[int, float]:
        return int(self.stage), float(self.alpha)


def _conv_act(cin: int, cout: int, norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2)]
    return [*layers, PixelNorm()] if norm else layers


class ProgressiveGenerator(_Growing):
    """Growing generator ``G(z, y) -> x`` in ``[0, 1]`` (Karras et al. 2018, Table 2 layout:
    two 3x3 convolutions per resolution, LeakyReLU 0.2, pixel norm; toRGB = 1x1 conv)."""

    def __init__(
        self,
        plan: ImagePlan,
        latent_dim: int,
        num_classes: int = 0,
        *,
        width: int = 64,
        output: str = "tanh",
    ) -> None:
        super().__init__(plan)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.norm = PixelNorm()
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        c0 = level_channels(width, plan, 0)
        in_dim = latent_dim * (2 if num_classes else 1)
        self.input = nn.Linear(in_dim, c0 * plan.base**2)
        self.input_conv = nn.Sequential(*_conv_act(c0, c0, norm=True))
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                *_conv_act(
                    level_channels(width, plan, s - 1), level_channels(width, plan, s), True
                ),
                *_conv_act(level_channels(width, plan, s), level_channels(width, plan, s), True),
            )
            for s in range(1, plan.levels + 1)
        )
        self.to_rgb = nn.ModuleList(
            nn.Conv2d(level_channels(width, plan, s), plan.channels, 1)
            for s in range(plan.levels + 1)
        )
        self.output = OutputMap(output)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        check_latent(z, self.latent_dim)
        h = self.norm(z)
        if self.embed is not None:
            y = check_labels(y, z.shape[0], self.num_classes, "the progressive generator")
            h = torch.cat([h, self.norm(self.embed(y))], dim=1)
        stage, alpha = self._state()
        h = self.norm(F.leaky_relu(self.input(h), 0.2))
        h = self.input_conv(h.view(z.shape[0], -1, self.plan.base, self.plan.base))
        previous = h
        for s in range(1, stage + 1):
            previous, h = h, self.blocks[s - 1](h)
        rgb = self.to_rgb[stage](h)
        if stage > 0 and alpha < 1.0:
            old = F.interpolate(self.to_rgb[stage - 1](previous), scale_factor=2, mode="nearest")
            rgb = torch.lerp(old, rgb, alpha)
        factor = 2 ** (self.plan.levels - stage)
        if factor > 1:
            rgb = F.interpolate(rgb, scale_factor=factor, mode="nearest")
        return self.output(rgb)


class MinibatchStd(nn.Module):
    """Appends one feature map holding the standard deviation of every feature over the
    minibatch, averaged over features and positions (Karras et al. 2018, §3)."""

    def forward(self, x: Tensor) -> Tensor:
        std = x.std(dim=0, correction=0).mean()
        return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class ProgressiveDiscriminator(_Growing):
    """Growing discriminator ``D(x, y) -> (score, class_logits)`` (Karras et al. 2018,
    Table 2): fromRGB (1x1 conv), two 3x3 convs and 2x average pooling per resolution,
    minibatch stddev, a last 3x3 conv, then the head."""

    def __init__(
        self,
        plan: ImagePlan,
        num_classes: int = 0,
        *,
        width: int = 64,
        minibatch_std: bool = True,
        conditioning: str = "projection",
    ) -> None:
        super().__init__(plan)
        self.num_classes = num_classes
        self.from_rgb = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(plan.channels, level_channels(width, plan, s), True), nn.LeakyReLU(0.2)
            )
            for s in range(plan.levels + 1)
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                *_conv_act(level_channels(width, plan, s), level_channels(width, plan, s), False),
                *_conv_act(
                    level_channels(width, plan, s), level_channels(width, plan, s - 1), False
                ),
                nn.AvgPool2d(2),
            )
            for s in range(1, plan.levels + 1)
        )
        c0 = level_channels(width, plan, 0)
        self.mbstd = MinibatchStd() if minibatch_std else None
        self.final = nn.Sequential(*_conv_act(c0 + (1 if minibatch_std else 0), c0, False))
        self.head = DiscriminatorHead(c0 * plan.base**2, num_classes, conditioning)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        expected = (self.plan.channels, self.plan.size, self.plan.size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise UserError(f"discriminator expects images (N, {expected}), got {tuple(x.shape)}")
        if self.head.conditioning == "projection":
            y = check_labels(y, x.shape[0], self.num_classes, "the projection discriminator")
        stage, alpha = self._state()
        factor = 2 ** (self.plan.levels - stage)
        x = F.avg_pool2d(x, factor) if factor > 1 else x
        h = self.from_rgb[stage](x)
        if stage > 0:
            h = self.blocks[stage - 1](h)
            if alpha < 1.0:
                old = self.from_rgb[stage - 1](F.avg_pool2d(x, 2))
                h = torch.lerp(old, h, alpha)
        for s in range(stage - 1, 0, -1):
            h = self.blocks[s - 1](h)
        if self.mbstd is not None:
            h = self.mbstd(h)
        return self.head(self.final(h).flatten(1), y)


def set_growth(modules: GanPair | nn.Module, stage: int, alpha: float = 1.0) -> None:
    """Set ``stage`` and fade-in ``alpha`` on every progressive network in ``modules`` (a
    :class:`GanPair` or any module containing them, e.g. an EMA copy)."""
    roots = (
        [modules.generator, modules.discriminator] if isinstance(modules, GanPair) else [modules]
    )
    found = False
    for root in roots:
        for m in root.modules():
            if isinstance(m, _Growing):
                m.set_stage(stage, alpha)
                found = True
    if not found:
        raise UserError("set_growth: no progressive generator or discriminator found")


def growth_schedule(progress: float, levels: int, fade: float = 0.5) -> tuple[int, float]:
    """``(stage, alpha)`` at training ``progress`` in ``[0, 1]``: ``levels + 1`` equal phases
    (one per resolution); every phase after the first fades its new layers in over its first
    ``fade`` fraction, then trains them at ``α = 1`` (Karras et al. 2018, §2 and App. A.1
    use equal fade-in and stabilization phases, ``fade = 0.5``)."""
    if not 0.0 <= fade <= 1.0:
        raise UserError(f"fade must be in [0, 1], got {fade}")
    position = min(max(float(progress), 0.0), 1.0) * (levels + 1)
    stage = min(int(position), levels)
    within = position - stage
    if stage == 0 or fade == 0.0:
        return stage, 1.0
    return stage, min(within / fade, 1.0)


@register_gan(
    "progressive",
    paper="Karras, Aila, Laine & Lehtinen, 'Progressive Growing of GANs for Improved Quality, "
    "Stability, and Variation', ICLR 2018",
)
def progressive(
    data_shape: tuple[int, ...],
    latent_dim: int,
    num_classes: int,
    *,
    width: int = 64,
    output: str = "tanh",
    minibatch_std: bool = True,
    conditioning: str = "projection",
) -> GanPair:
    """Progressively grown generator/discriminator with fade-in (starts fully grown; use
    ``set_growth``).

    Options: ``width`` (channels at full resolution, doubling per halving), ``output``,
    ``minibatch_std`` (the minibatch standard-deviation feature), ``conditioning`` (with
    classes: ``"projection"`` or ``"acgan"`` discriminator; the generator concatenates a
    class embedding to ``z``).
    """
    plan = image_plan("progressive", data_shape)
    width = positive_int("progressive", "width", width)
    check_conditioning("progressive", conditioning)
    generator = ProgressiveGenerator(plan, latent_dim, num_classes, width=width, output=output)
    discriminator = ProgressiveDiscriminator(
        plan,
        num_classes,
        width=width,
        minibatch_std=bool(minibatch_std),
        conditioning=conditioning,
    )
    return GanPair(generator, discriminator, latent_dim, num_classes)
