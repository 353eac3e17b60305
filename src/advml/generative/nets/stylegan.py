"""Style-based generator (Karras, Laine & Aila, "A Style-Based Generator Architecture for
Generative Adversarial Networks", CVPR 2019, §2 and Fig. 1b).

* a mapping network ``f: z -> w`` (pixel-normalized ``z``, ``mapping_layers`` fully connected
  layers with LeakyReLU 0.2);
* a synthesis network starting from a learned constant ``base x base`` tensor; every layer is
  (upsample + 3x3 conv) -> per-pixel noise scaled by a learned per-channel factor ("B",
  §2.1) -> LeakyReLU -> AdaIN with a style ``y = A(w)``: ``AdaIN(x, y) = y_s (x − μ(x)) /
  σ(x) + y_b`` (Eq. 1); two layers per resolution, so ``2 (k + 1)`` styles;
* style mixing (§3.1): during training, with probability ``style_mixing``, a second latent
  drives the layers from a random crossover onwards;
* truncation in ``W`` (§3.1 / App. B): ``w' = w̄ + ψ (w − w̄)`` with ``w̄`` a running mean of
  ``w`` tracked during training.

The discriminator is the residual discriminator of :mod:`advml.generative.nets.resnet`
(StyleGAN itself reused the progressive-GAN discriminator; the residual one is StyleGAN2's
choice, Karras et al. 2020). Equalized learning rate and the mapping network's reduced
learning rate are not implemented.
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
from advml.generative.nets.conditional import check_conditioning
from advml.generative.nets.registry import GanPair, register_gan
from advml.generative.nets.resnet import ResNetDiscriminator

__all__ = [
    "AdaIN",
    "MappingNetwork",
    "NoiseInput",
    "PixelNorm",
    "StyleGenerator",
    "stylegan",
]


class PixelNorm(nn.Module):
    """``x / sqrt(mean_c x² + ε)`` over the feature dimension (Karras et al., ICLR 2018,
    §4.2; applied to ``z`` before the mapping network in StyleGAN)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MappingNetwork(nn.Module):
    """``f: Z -> W`` (Karras et al. 2019, §2): pixel norm, then ``layers`` x (Linear ->
    LeakyReLU 0.2). With classes, a normalized class embedding is concatenated to ``z``
    (the conditioning of StyleGAN2-ADA, Karras et al. 2020)."""

    def __init__(self, latent_dim: int, w_dim: int, layers: int, num_classes: int = 0) -> None:
        super().__init__()
        self.norm = PixelNorm()
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        width = latent_dim * (2 if num_classes else 1)
        net: list[nn.Module] = []
        for i in range(layers):
            net += [nn.Linear(width if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*net)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.norm(z)
        if self.embed is not None:
            h = torch.cat([h, self.norm(self.embed(y))], dim=1)
        return self.net(h)


class AdaIN(nn.Module):
    """Adaptive instance normalization ``y_s · (x − μ(x)) / σ(x) + y_b`` with ``(y_s, y_b)``
    an affine map "A" of ``w`` (Karras et al. 2019, Eq. 1); ``y_s`` starts at 1, ``y_b`` at 0."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.style = nn.Linear(w_dim, 2 * channels)
        nn.init.zeros_(self.style.bias)
        with torch.no_grad():
            self.style.bias[:channels] = 1.0

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        scale, bias = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return scale * F.instance_norm(x, eps=1e-8) + bias


class NoiseInput(nn.Module):
    """``x + b ⊙ noise`` with one Gaussian noise image per sample, broadcast over channels and
    scaled by a learned per-channel ``b`` initialised to 0 (Karras et al. 2019, §2.1 "B")."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, noise: Tensor | None) -> Tensor:
        return x if noise is None else x + self.weight * noise


class _StyleLayer(nn.Module):
    """[2x upsample] -> [3x3 conv] -> noise -> LeakyReLU 0.2 -> AdaIN(w) (Fig. 1b)."""

    def __init__(self, cin: int, cout: int, w_dim: int, *, conv: bool, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(cin, cout, 3, padding=1) if conv else None
        self.noise = NoiseInput(cout)
        self.adain = AdaIN(cout, w_dim)

    def forward(self, x: Tensor, w: Tensor, noise: bool) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if self.conv is not None:
            x = self.conv(x)
        n = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        x = F.leaky_relu(self.noise(x, n if noise else None), 0.2)
        return self.adain(x, w)


class StyleGenerator(nn.Module):
    """Style-based generator ``G(z, y) -> x`` in ``[0, 1]`` (Karras et al. 2019, Fig. 1b).

    ``forward(z, y=None, *, truncation=1.0, truncation_layers=None, noise=True)``;
    :meth:`mix` renders two latents with a crossover layer; :meth:`synthesize` renders given
    per-layer styles ``ws`` of shape ``(N, num_ws, w_dim)``.
    """

    def __init__(
        self,
        plan: ImagePlan,
        latent_dim: int,
        num_classes: int = 0,
        *,
        width: int = 64,
        w_dim: int = 0,
        mapping_layers: int = 8,
        style_mixing: float = 0.9,
        output: str = "tanh",
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        if not 0.0 <= style_mixing <= 1.0:
            raise UserError(f"stylegan: style_mixing is a probability, got {style_mixing}")
        self.plan, self.latent_dim, self.num_classes = plan, latent_dim, num_classes
        self.w_dim = w_dim or latent_dim
        self.style_mixing, self.w_avg_beta = float(style_mixing), float(w_avg_beta)
        self.mapping = MappingNetwork(latent_dim, self.w_dim, mapping_layers, num_classes)
        c0 = level_channels(width, plan, 0)
        self.const = nn.Parameter(torch.ones(1, c0, plan.base, plan.base))
        layers = [
            _StyleLayer(c0, c0, self.w_dim, conv=False, upsample=False),
            _StyleLayer(c0, c0, self.w_dim, conv=True, upsample=False),
        ]
        for level in range(1, plan.levels + 1):
            cin, cout = level_channels(width, plan, level - 1), level_channels(width, plan, level)
            layers.append(_StyleLayer(cin, cout, self.w_dim, conv=True, upsample=True))
            layers.append(_StyleLayer(cout, cout, self.w_dim, conv=True, upsample=False))
        self.layers = nn.ModuleList(layers)
        self.to_image = nn.Conv2d(width, plan.channels, 1)
        self.output = OutputMap(output)
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    @property
    def num_ws(self) -> int:
        """Number of style inputs: two per resolution."""
        return len(self.layers)

    def _map(self, z: Tensor, y: Tensor | None) -> Tensor:
        check_latent(z, self.latent_dim)
        if self.num_classes:
            y = check_labels(y, z.shape[0], self.num_classes, "the style generator")
        w = self.mapping(z, y if self.num_classes else None)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(0), 1.0 - self.w_avg_beta)
        return w

    def _broadcast(self, w: Tensor) -> Tensor:
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def synthesize(self, ws: Tensor, *, noise: bool = True) -> Tensor:
        """Render per-layer styles ``ws`` ``(N, num_ws, w_dim)``; ``noise=False`` drops the
        noise inputs (deterministic output)."""
        if ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise UserError(
                f"styles must have shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}"
            )
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i], noise)
        return self.output(self.to_image(x))

    def truncate(self, ws: Tensor, psi: float, layers: int | None = None) -> Tensor:
        """Truncation in ``W``: ``w̄ + ψ (w − w̄)`` on the first ``layers`` styles (all when
        ``None``; Karras et al. 2019 truncate the coarse layers only)."""
        cut = self.num_ws if layers is None else layers
        index = torch.arange(self.num_ws, device=ws.device)[None, :, None]
        return torch.where(index < cut, self.w_avg.lerp(ws, psi), ws)

    def mix(
        self,
        z1: Tensor,
        z2: Tensor,
        crossover: int | Tensor,
        y: Tensor | None = None,
        *,
        noise: bool = True,
    ) -> Tensor:
        """Style mixing (Karras et al. 2019, §3.1): layers ``< crossover`` take ``w1 = f(z1)``,
        the rest ``w2 = f(z2)``; ``crossover`` is an int or one per sample ``(N,)``."""
        ws = self._mixed(self._map(z1, y), self._map(z2, y), crossover)
        return self.synthesize(ws, noise=noise)

    def _mixed(self, w1: Tensor, w2: Tensor, crossover: int | Tensor) -> Tensor:
        cut = torch.as_tensor(crossover, device=w1.device).reshape(-1, 1, 1)
        index = torch.arange(self.num_ws, device=w1.device)[None, :, None]
        return torch.where(index < cut, self._broadcast(w1), self._broadcast(w2))

    def forward(
        self,
        z: Tensor,
        y: Tensor | None = None,
        *,
        truncation: float = 1.0,
        truncation_layers: int | None = None,
        noise: bool = True,
    ) -> Tensor:
        w = self._map(z, y)
        ws = self._broadcast(w)
        if self.training and self.style_mixing > 0:
            n = z.shape[0]
            w2 = self._map(torch.randn_like(z), y)
            mixed = torch.rand(n, device=z.device) < self.style_mixing
            cut = torch.randint(1, self.num_ws, (n,), device=z.device)
            ws = self._mixed(w, w2, torch.where(mixed, cut, self.num_ws))
        if truncation != 1.0:
            ws = self.truncate(ws, truncation, truncation_layers)
        return self.synthesize(ws, noise=noise)


@register_gan(
    "stylegan",
    paper="Karras, Laine & Aila, 'A Style-Based Generator Architecture for Generative "
    "Adversarial Networks', CVPR 2019",
)
def stylegan(
    data_shape: tuple[int, ...],
    latent_dim: int,
    num_classes: int,
    *,
    width: int = 64,
    w_dim: int = 0,
    mapping_layers: int = 8,
    style_mixing: float = 0.9,
    output: str = "tanh",
    conditioning: str = "projection",
) -> GanPair:
    """Style-based generator (mapping network, AdaIN, noise, style mixing, W truncation) with
    the residual discriminator.

    Options: ``width`` (channels at full resolution, doubling per halving), ``w_dim`` (0:
    ``latent_dim``), ``mapping_layers`` (8 in the paper), ``style_mixing`` (probability of
    mixing two latents in a training forward pass; 0.9 in the paper), ``output``,
    ``conditioning`` (with classes: ``"projection"`` or ``"acgan"`` discriminator; the
    mapping network takes a class embedding).
    """
    plan = image_plan("stylegan", data_shape)
    width = positive_int("stylegan", "width", width)
    mapping_layers = positive_int("stylegan", "mapping_layers", mapping_layers)
    if isinstance(w_dim, bool) or not isinstance(w_dim, int) or w_dim < 0:
        raise UserError(f"stylegan: w_dim must be an int >= 0, got {w_dim!r}")
    check_conditioning("stylegan", conditioning)
    generator = StyleGenerator(
        plan,
        latent_dim,
        num_classes,
        width=width,
        w_dim=w_dim,
        mapping_layers=mapping_layers,
        style_mixing=style_mixing,
        output=output,
    )
    discriminator = ResNetDiscriminator(plan, num_classes, width=width, conditioning=conditioning)
    return GanPair(generator, discriminator, latent_dim, num_classes)
