"""CycleGAN: unpaired image-to-image translation with two generators and two discriminators.

Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks", ICCV. Generators ``G: A -> B`` and ``F: B -> A``, discriminators
``D_B`` (real B vs ``G(a)``) and ``D_A``; the full objective (eq. 3) is

    L(G, F, D_A, D_B) = L_GAN(G, D_B) + L_GAN(F, D_A) + lambda L_cyc(G, F),
    L_cyc = E_a ||F(G(a)) - a||_1 + E_b ||G(F(b)) - b||_1          (eq. 2),

with the least-squares adversarial loss (§4, Mao et al. 2017), ``lambda = 10``, and the
identity loss ``E_b ||G(b) - b||_1 + E_a ||F(a) - a||_1`` (§5.2, weight ``0.5 lambda``).

Networks (Zhu et al. 2017, App. 7.2, scaled down for digits): the generator is
``c7s1-w, d2w, d4w, R4w x blocks, u2w, uw, c7s1-C`` with instance normalization and
reflection padding, its output mapped to ``[0, 1]`` by a sigmoid; the discriminator is a
PatchGAN (Isola et al. 2017): strided 4x4 convolutions with LeakyReLU 0.2 (instance norm
after the first), then 3x3 convolutions down to one logit per patch.

:class:`TranslationGame` holds one pair of translators (``game.generator``: CycleGAN's
:class:`CycleGenerators` or UNIT's :class:`~advml.generative.unit.UnitGenerators`) and the
two discriminators (``game.discriminator``), so the one trainer, its checkpoints and
:func:`advml.generative.checkpoint.save_gan` see a single module with two players.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from advml.errors import UserError

__all__ = [
    "VARIANTS",
    "CycleGenerators",
    "DomainDiscriminators",
    "PatchDiscriminator",
    "ResidualBlock",
    "ResnetTranslator",
    "TranslationGame",
    "build_translation",
    "cycle_loss",
    "rebuild_translation",
]

#: Translation models :func:`build_translation` knows.
VARIANTS: tuple[str, ...] = ("cyclegan", "unit")


def cycle_loss(x: Tensor, reconstruction: Tensor) -> Tensor:
    """``E ||reconstruction - x||_1`` per pixel (Zhu et al. 2017, eq. 2, one direction)."""
    return (reconstruction - x).abs().mean()


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class ResidualBlock(nn.Module):
    """``x + IN(conv3(ReLU(IN(conv3(x)))))`` with reflection padding (Zhu et al. 2017, R_k)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _norm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def encoder_layers(channels: int, width: int, downsamples: int) -> tuple[list[nn.Module], int]:
    """``c7s1-w`` then ``downsamples`` stride-2 3x3 convolutions doubling the width."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(channels, width, 7),
        _norm(width),
        nn.ReLU(),
    ]
    c = width
    for _ in range(downsamples):
        layers += [nn.Conv2d(c, 2 * c, 3, 2, 1), _norm(2 * c), nn.ReLU()]
        c *= 2
    return layers, c


def decoder_layers(channels: int, inner: int, upsamples: int) -> list[nn.Module]:
    """``upsamples`` stride-2 transposed convolutions halving the width, then ``c7s1-C`` and
    a sigmoid to ``[0, 1]``."""
    layers: list[nn.Module] = []
    c = inner
    for _ in range(upsamples):
        layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1), _norm(c // 2)]
        layers.append(nn.ReLU())
        c //= 2
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, channels, 7), nn.Sigmoid()]
    return layers


class ResnetTranslator(nn.Module):
    """One generator ``G: A -> B`` on ``(N, C, H, W)`` images in ``[0, 1]``."""

    def __init__(self, channels: int, width: int = 32, blocks: int = 3, downsamples: int = 2):
        super().__init__()
        layers, inner = encoder_layers(channels, width, downsamples)
        layers += [ResidualBlock(inner) for _ in range(blocks)]
        layers += decoder_layers(channels, inner, downsamples)
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017; Zhu et al. 2017, App. 7.2): one logit per
    overlapping image patch, shape ``(N, 1, h, w)``.

    ``downsamples`` strided 4x4 convolutions (width doubling, instance norm after the first),
    ``depth`` 3x3 convolutions at the last resolution, then a 3x3 convolution to one channel.
    Fewer downsamples give smaller patches (SimGAN's local discriminator).
    """

    def __init__(self, channels: int, width: int = 32, downsamples: int = 2, depth: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c = channels, width
        for i in range(downsamples):
            layers.append(nn.Conv2d(c_in, c, 4, 2, 1))
            if i > 0:
                layers.append(_norm(c))
            layers.append(nn.LeakyReLU(0.2))
            c_in, c = c, 2 * c
        for _ in range(depth):
            layers += [nn.Conv2d(c_in, c, 3, 1, 1), _norm(c), nn.LeakyReLU(0.2)]
            c_in = c
        layers.append(nn.Conv2d(c_in, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CycleGenerators(nn.Module):
    """CycleGAN's two generators; one forward pass computes every generator output of a step.

    ``forward(a, b, skip)`` returns ``fake_b = G(a)``, ``fake_a = F(b)`` and the unweighted
    loss terms ``cycle`` (eq. 2, both directions) and ``identity`` (§5.2; omitted when
    ``"identity"`` is in ``skip``).
    """

    terms: tuple[str, ...] = ("cycle", "identity")

    def __init__(self, channels: int, width: int, blocks: int, downsamples: int) -> None:
        super().__init__()
        self.ab = ResnetTranslator(channels, width, blocks, downsamples)
        self.ba = ResnetTranslator(channels, width, blocks, downsamples)

    def forward(self, a: Tensor, b: Tensor, skip: Collection[str] = ()) -> dict[str, Any]:
        fake_b, fake_a = self.ab(a), self.ba(b)
        terms = {"cycle": cycle_loss(a, self.ba(fake_b)) + cycle_loss(b, self.ab(fake_a))}
        if "identity" not in skip:
            terms["identity"] = cycle_loss(b, self.ab(b)) + cycle_loss(a, self.ba(a))
        return {"fake_b": fake_b, "fake_a": fake_a, "terms": terms}

    def translate(self, x: Tensor, direction: str = "ab") -> Tensor:
        """``G(x)`` for ``direction="ab"``, ``F(x)`` for ``"ba"``."""
        return self.ab(x) if direction == "ab" else self.ba(x)

    def reconstruct(self, x: Tensor, direction: str = "ab") -> Tensor:
        """The cycle ``F(G(x))`` (``"ab"``) or ``G(F(x))`` (``"ba"``)."""
        if direction == "ab":
            return self.ba(self.ab(x))
        return self.ab(self.ba(x))


class DomainDiscriminators(nn.Module):
    """``D_A`` and ``D_B``; ``forward(images_a, images_b) -> (patch logits A, patch logits B)``
    in one call, so one backward updates both (one player)."""

    def __init__(self, channels: int, width: int, downsamples: int, depth: int) -> None:
        super().__init__()
        self.a = PatchDiscriminator(channels, width, downsamples, depth)
        self.b = PatchDiscriminator(channels, width, downsamples, depth)

    def forward(self, images_a: Tensor, images_b: Tensor) -> tuple[Tensor, Tensor]:
        return self.a(images_a), self.b(images_b)


class TranslationGame(nn.Module):
    """Translators (``generator``) and the two discriminators (``discriminator``) plus the
    ``spec`` they were built from (kept in the checkpoint card)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, spec: dict[str, Any]):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.spec = spec

    @property
    def variant(self) -> str:
        return str(self.spec["variant"])

    def forward(self, x: Tensor, direction: str = "ab") -> Tensor:
        """Translate ``x`` from A to B (``"ab"``) or from B to A (``"ba"``)."""
        return self.generator.translate(x, direction)

    @torch.no_grad()
    def translate(self, x: Tensor, direction: str = "ab", batch_size: int = 500) -> Tensor:
        """Batched translation in eval mode, without gradients."""
        return _batched(self, lambda xb: self.generator.translate(xb, direction), x, batch_size)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, direction: str = "ab", batch_size: int = 500) -> Tensor:
        """Batched cycle reconstruction in eval mode, without gradients."""
        return _batched(self, lambda xb: self.generator.reconstruct(xb, direction), x, batch_size)


def _batched(module: nn.Module, fn, x: Tensor, batch_size: int) -> Tensor:
    was_training = module.training
    module.eval()
    try:
        device = next(module.parameters()).device
        parts = [fn(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    finally:
        module.train(was_training)
    return torch.cat(parts) if parts else x.clone()


def _check_shape(data_shape: Sequence[int], downsamples: int) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in data_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"translation needs images (C, H, W), got shape {shape}")
    c, h, w = shape
    step = 2**downsamples
    if h % step or w % step:
        raise UserError(
            f"images of {h}x{w} cannot be halved {downsamples} times; use sides divisible by "
            f"{step} (28x28 digits take downsamples <= 2)"
        )
    return c, h, w


def build_translation(
    variant: str,
    data_shape: Sequence[int],
    *,
    width: int = 32,
    blocks: int = 3,
    downsamples: int = 2,
    d_width: int = 32,
    d_downsamples: int = 2,
    d_depth: int = 1,
) -> TranslationGame:
    """CycleGAN (``"cyclegan"``) or UNIT (``"unit"``) between two domains of images of
    ``data_shape`` (both domains share it: repeat grey to RGB, resize USPS to 28x28)."""
    if variant not in VARIANTS:
        raise UserError(f"unknown translation model {variant!r}; choose one of {VARIANTS}")
    for name, value in (("width", width), ("blocks", blocks), ("d_width", d_width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be an integer >= 1, got {value!r}")
    for name, value in (("downsamples", downsamples), ("d_downsamples", d_downsamples)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4:
            raise UserError(f"{name} must be an integer in 0..4, got {value!r}")
    channels, _, _ = _check_shape(data_shape, max(downsamples, d_downsamples))
    if variant == "cyclegan":
        generator: nn.Module = CycleGenerators(channels, width, blocks, downsamples)
    else:
        from advml.generative.unit import UnitGenerators

        generator = UnitGenerators(channels, width, blocks, downsamples)
    discriminator = DomainDiscriminators(channels, d_width, d_downsamples, d_depth)
    options = {
        "width": width,
        "blocks": blocks,
        "downsamples": downsamples,
        "d_width": d_width,
        "d_downsamples": d_downsamples,
        "d_depth": d_depth,
    }
    spec = {
        "kind": "translation",
        "variant": variant,
        "data_shape": list(data_shape),
        "options": options,
    }
    return TranslationGame(generator, discriminator, spec)


def rebuild_translation(spec: dict[str, Any]) -> TranslationGame:
    """The game a :attr:`TranslationGame.spec` describes (fresh weights)."""
    try:
        with torch.random.fork_rng(devices=[]):
            return build_translation(
                spec["variant"], tuple(spec["data_shape"]), **dict(spec.get("options") or {})
            )
    except (KeyError, TypeError) as error:
        raise UserError(f"incomplete translation spec: {error}") from None
