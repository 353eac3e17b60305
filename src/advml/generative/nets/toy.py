"""Generators and discriminators for vector data such as the 2-D mixtures ``toy-ring`` and
``toy-grid`` (shape ``(2,)``).

* ``toy-mlp``: a small MLP pair (ReLU generator, LeakyReLU discriminator) for quick runs.
* ``pacgan-mlp``: the networks of the PacGAN synthetic experiments (Lin, Khetan, Fanti & Oh,
  NeurIPS 2018, sec. 4.1, after VEEGAN, Srivastava et al. 2017): generator with four hidden
  layers of 400 ReLU units and batch normalization, no biases but the output's; discriminator
  with three linear-maxout layers (Goodfellow et al. 2013) of 200 units and 5 pieces, no batch
  normalization; weights drawn from N(0, 0.02^2), biases zero. (The authors' code also lists
  a 2-D standard-normal latent, Adam lr 1e-4 with beta1 = 0.8 and batches of 100 packs.)

Both are class-conditional when ``num_classes > 0``: one-hot labels are concatenated to the
latent code and to the discriminator's input. ``aux_classifier=True`` adds an AC-GAN head
(Odena et al. 2017) returning class logits from the discriminator's last hidden layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.errors import UserError
from advml.generative.nets.registry import GanPair, register_gan

__all__ = ["Maxout", "ToyDiscriminator", "ToyGenerator", "pacgan_mlp", "toy_mlp"]


def _vector_dim(arch: str, data_shape: Sequence[int]) -> int:
    shape = tuple(data_shape)
    if len(shape) != 1 or shape[0] < 1:
        raise UserError(
            f"{arch} is for vector data such as toy-ring or toy-grid (shape (2,)), got data "
            f"of shape {shape}; pick an image architecture for images"
        )
    return int(shape[0])


def _with_labels(h: Tensor, y: Tensor | None, num_classes: int, who: str) -> Tensor:
    if num_classes == 0:
        if y is not None:
            raise ValueError(f"this {who} is unconditional; call it without labels")
        return h
    if y is None:
        raise ValueError(f"this {who} is class-conditional: pass labels y")
    return torch.cat([h, F.one_hot(y.long(), num_classes).to(h.dtype)], dim=1)


class Maxout(nn.Module):
    """Linear maxout: ``h_i = max_k (W x + b)_{i,k}`` over ``pieces`` (Goodfellow et al. 2013,
    "Maxout Networks", eq. 1)."""

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(x.shape[0], self.out_features, self.pieces).amax(dim=2)


class ToyGenerator(nn.Module):
    """MLP ``z (+ one-hot y) -> R^d``: ``layers`` hidden layers of ``hidden`` ReLU units."""

    def __init__(
        self,
        latent_dim: int,
        out_dim: int,
        num_classes: int,
        hidden: int,
        layers: int,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        blocks: list[nn.Module] = []
        width = latent_dim + num_classes
        for _ in range(layers):
            blocks.append(nn.Linear(width, hidden, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm1d(hidden, momentum=0.05))
            blocks.append(nn.ReLU())
            width = hidden
        blocks.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*blocks)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(_with_labels(z, y, self.num_classes, "generator"))


class ToyDiscriminator(nn.Module):
    """MLP ``x (+ one-hot y) -> (score, class_logits)`` with LeakyReLU(0.2) or maxout units."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden: int,
        layers: int,
        pieces: int,
        aux_classifier: bool,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conditional = num_classes > 0 and not aux_classifier
        blocks: list[nn.Module] = []
        width = in_dim + (num_classes if self.conditional else 0)
        for _ in range(layers):
            if pieces > 1:
                blocks.append(Maxout(width, hidden, pieces))
            else:
                blocks += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.score = nn.Linear(width, 1)
        self.classifier = nn.Linear(width, num_classes) if aux_classifier else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if self.conditional:
            x = _with_labels(x, y, self.num_classes, "discriminator")
        h = self.body(x)
        logits = self.classifier(h) if self.classifier is not None else None
        return self.score(h).squeeze(1), logits


def _normal_init(module: nn.Module, std: float) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _check(name: str, value: int, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"option {name} must be an integer >= {low}, got {value!r}")
    return value


def _check_aux(aux_classifier: bool, num_classes: int) -> None:
    if aux_classifier and num_classes == 0:
        raise UserError("aux_classifier needs labelled data (num_classes > 0)")


@register_gan(
    "toy-mlp",
    paper="Goodfellow et al., 'Generative Adversarial Nets', NeurIPS 2014 (MLP players)",
)
def toy_mlp(
    data_shape: Sequence[int],
    latent_dim: int,
    num_classes: int,
    *,
    hidden: int = 128,
    layers: int = 3,
    aux_classifier: bool = False,
) -> GanPair:
    """Small MLP generator and LeakyReLU discriminator for 2-D toy data."""
    dim = _vector_dim("toy-mlp", data_shape)
    _check_aux(aux_classifier, num_classes)
    hidden, layers = _check("hidden", hidden), _check("layers", layers)
    return GanPair(
        generator=ToyGenerator(latent_dim, dim, num_classes, hidden, layers, batch_norm=False),
        discriminator=ToyDiscriminator(dim, num_classes, hidden, layers, 1, aux_classifier),
        latent_dim=latent_dim,
        num_classes=num_classes,
    )


@register_gan(
    "pacgan-mlp",
    paper="Lin, Khetan, Fanti & Oh, 'PacGAN: The power of two samples in generative "
    "adversarial networks', NeurIPS 2018 (sec. 4.1)",
)
def pacgan_mlp(
    data_shape: Sequence[int],
    latent_dim: int,
    num_classes: int,
    *,
    g_hidden: int = 400,
    g_layers: int = 4,
    d_hidden: int = 200,
    d_layers: int = 3,
    pieces: int = 5,
    init_std: float = 0.02,
    aux_classifier: bool = False,
) -> GanPair:
    """PacGAN's 2-D networks: 4x400 ReLU+BN generator, 3x200 maxout (5 pieces) discriminator."""
    dim = _vector_dim("pacgan-mlp", data_shape)
    _check_aux(aux_classifier, num_classes)
    if not init_std > 0:
        raise UserError(f"option init_std must be > 0, got {init_std}")
    generator = ToyGenerator(
        latent_dim,
        dim,
        num_classes,
        _check("g_hidden", g_hidden),
        _check("g_layers", g_layers),
        batch_norm=True,
    )
    discriminator = ToyDiscriminator(
        dim,
        num_classes,
        _check("d_hidden", d_hidden),
        _check("d_layers", d_layers),
        _check("pieces", pieces, low=2),
        aux_classifier,
    )
    _normal_init(generator, init_std)
    _normal_init(discriminator, init_std)
    return GanPair(generator, discriminator, latent_dim=latent_dim, num_classes=num_classes)
