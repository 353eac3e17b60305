"""The semi-supervised GAN networks of Salimans et al. 2016 for MNIST (``ssgan-mlp``).

Salimans, Goodfellow, Zaremba, Cheung, Radford & Chen, "Improved Techniques for Training
GANs", NeurIPS 2016, §5 and their code for permutation-invariant MNIST:

* generator: ``z`` (uniform or normal) -> 500 -> 500 softplus units with batch normalization
  -> a sigmoid output layer with weight normalization, reshaped to the image;
* discriminator: Gaussian noise (std 0.3) on the input, then 1000, 500, 250, 250, 250 ReLU
  units, each followed by Gaussian noise (std 0.5) in training, with weight normalization
  (Salimans & Kingma 2016), and a linear layer to ``K`` class logits.

The discriminator is a ``K + 1``-class classifier whose fake-class logit is fixed at 0
(§5): ``D(x) = Z(x) / (Z(x) + 1)`` with ``Z(x) = sum_k exp(l_k(x))``, so its real-vs-fake
logit is ``logsumexp_k l_k(x)`` — the ``score`` of the pair contract; ``class_logits`` are
``l_1..l_K``. ``features(x)`` is the last hidden layer (before its noise), the statistics
that feature matching compares (§3.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from advml.errors import UserError
from advml.generative.nets.registry import GanPair, register_gan

__all__ = ["GaussianNoise", "SSGANDiscriminator", "SSGANGenerator", "ssgan_mlp"]


class GaussianNoise(nn.Module):
    """Adds ``N(0, std^2)`` noise in training mode; the identity in eval mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = float(std)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.std == 0:
            return x
        return x + self.std * torch.randn_like(x)


def _linear(cin: int, cout: int, normalized: bool) -> nn.Linear:
    layer = nn.Linear(cin, cout)
    return _weight_norm(layer) if normalized else layer


class SSGANGenerator(nn.Module):
    """``G(z) -> x`` in ``[0, 1]``; labels are ignored (the game is unconditional)."""

    def __init__(
        self, data_shape: Sequence[int], latent_dim: int, hidden: Sequence[int], wn: bool
    ) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        layers: list[nn.Module] = []
        cin = latent_dim
        for width in hidden:
            layers += [nn.Linear(cin, width, bias=False), nn.BatchNorm1d(width), nn.Softplus()]
            cin = width
        layers.append(_linear(cin, math.prod(self.data_shape), wn))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return torch.sigmoid(self.net(z)).reshape(z.shape[0], *self.data_shape)


class SSGANDiscriminator(nn.Module):
    """``D(x) -> (logsumexp of the class logits, class logits)``; ``features(x)`` gives the
    last hidden layer."""

    def __init__(
        self,
        data_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int],
        input_noise: float,
        hidden_noise: float,
        wn: bool,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), GaussianNoise(input_noise)]
        cin = math.prod(data_shape)
        for i, width in enumerate(hidden):
            if i > 0:
                layers.append(GaussianNoise(hidden_noise))
            layers += [_linear(cin, width, wn), nn.ReLU()]
            cin = width
        self.body = nn.Sequential(*layers)  # ends with the last hidden layer, before its noise
        self.head_noise = GaussianNoise(hidden_noise)
        self.head = _linear(cin, num_classes, wn)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent initialization (Salimans & Kingma 2016, "Weight Normalization", §3):
        layer by layer on the batch ``x``, scale each unit's gain and set its bias so that its
        pre-activation has mean 0 and variance 1 (noise layers active, as in training)."""
        h = x
        for layer in [*self.body, self.head_noise, self.head]:
            out = layer(h)
            if isinstance(layer, nn.Linear):
                mean, std = out.mean(0), out.std(0).clamp_min(1e-8)
                if parametrize.is_parametrized(layer, "weight"):
                    gain = layer.parametrizations.weight.original0
                    gain.div_(std.reshape(gain.shape))
                else:
                    layer.weight.div_(std[:, None])
                layer.bias.copy_(-mean / std)
                out = layer(h)
            h = out

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer's activations ``f(x)`` (Salimans et al. 2016, §3.1)."""
        return self.body(x)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logits = self.head(self.head_noise(self.features(x)))
        return torch.logsumexp(logits, dim=1), logits


def _sizes(name: str, value: object) -> list[int]:
    try:
        sizes = [int(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise UserError(
            f"ssgan-mlp: {name} must be a list of layer widths, got {value!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise UserError(f"ssgan-mlp: {name} must be a non-empty list of widths >= 1")
    return sizes


@register_gan(
    "ssgan-mlp",
    paper="Salimans et al., Improved Techniques for Training GANs, NeurIPS 2016",
    summary="semi-supervised K+1-class MLP discriminator (logsumexp score) and MLP generator",
)
def ssgan_mlp(
    data_shape: tuple[int, ...],
    latent_dim: int,
    num_classes: int,
    *,
    g_hidden: Sequence[int] = (500, 500),
    d_hidden: Sequence[int] = (1000, 500, 250, 250, 250),
    input_noise: float = 0.3,
    hidden_noise: float = 0.5,
    weight_norm: bool = True,
) -> GanPair:
    """Salimans et al. 2016's MNIST networks; ``num_classes`` (>= 2) real classes."""
    if num_classes < 2:
        raise UserError(
            "ssgan-mlp is a K+1-class discriminator: build it with num_classes >= 2 (the "
            "labeled classes)"
        )
    if input_noise < 0 or hidden_noise < 0:
        raise UserError("ssgan-mlp: noise standard deviations must be >= 0")
    generator = SSGANGenerator(data_shape, latent_dim, _sizes("g_hidden", g_hidden), weight_norm)
    discriminator = SSGANDiscriminator(
        data_shape,
        num_classes,
        _sizes("d_hidden", d_hidden),
        input_noise,
        hidden_noise,
        weight_norm,
    )
    return GanPair(generator, discriminator, latent_dim, num_classes)
