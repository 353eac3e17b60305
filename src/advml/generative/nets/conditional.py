"""Class conditioning for image GANs: conditional batch norm, BigGAN's shared embedding with
hierarchical latents, the projection and auxiliary-classifier discriminator heads, and the
truncation trick.

* :class:`ConditionalBatchNorm2d` — BN whose gain and bias are looked up per class,
  ``h = (1 + γ_y) · BN(x) + β_y`` (de Vries et al., NeurIPS 2017; Dumoulin, Shlens & Kudlur,
  ICLR 2017, Eq. 2; the generator of Miyato & Koyama, ICLR 2018).
* :class:`VectorConditionalBatchNorm2d` + :class:`SharedClassEmbedding` — BigGAN (Brock,
  Donahue & Simonyan, ICLR 2019, §3 and Fig. 15): one class embedding shared by every layer,
  concatenated with that layer's chunk of ``z``; each CBN maps it linearly to its gain/bias.
* :class:`DiscriminatorHead` — ``score = ψ(φ(x))`` (unconditional), the projection
  discriminator ``score = ψ(φ(x)) + yᵀ V φ(x)`` (Miyato & Koyama 2018, Eq. 3), or AC-GAN's
  auxiliary classifier returning class logits (Odena, Olah & Shlens, ICML 2017, Eq. 2-3).
* :func:`truncated_normal` — BigGAN's truncation trick (Brock et al. 2019, §4.1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advml.errors import UserError

__all__ = [
    "CONDITIONINGS",
    "BatchNorm2d",
    "ConditionalBatchNorm2d",
    "DiscriminatorHead",
    "SharedClassEmbedding",
    "VectorConditionalBatchNorm2d",
    "make_norm",
    "truncated_normal",
]

#: How a discriminator uses labels when ``num_classes > 0``.
CONDITIONINGS = ("projection", "acgan")


def check_conditioning(arch: str, conditioning: str) -> str:
    """``conditioning`` if it names a discriminator head, else a UserError naming ``arch``."""
    if conditioning not in CONDITIONINGS:
        raise UserError(
            f"{arch}: conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}"
        )
    return conditioning


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that accepts (and ignores) a condition, so blocks call every norm
    as ``norm(x, c)`` (Ioffe & Szegedy, ICML 2015, Alg. 1)."""

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:  # type: ignore[override]
        return super().forward(x)


class ConditionalBatchNorm2d(nn.Module):
    """Class-conditional BN: ``(1 + γ[y]) · BN(x) + β[y]`` (Dumoulin et al. 2017, Eq. 2).

    ``γ`` and ``β`` are per-class embeddings initialised to zero, so the layer starts as
    plain BN with unit gain.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if y is None:
            raise UserError("conditional batch norm needs class labels y")
        gain = 1 + self.gain(y)[:, :, None, None]
        return gain * self.bn(x) + self.bias(y)[:, :, None, None]


class VectorConditionalBatchNorm2d(nn.Module):
    """BN with gain and bias linear in a condition vector ``c``: ``(1 + W_γ c) · BN(x) + W_β c``
    (BigGAN, Brock et al. 2019, Appendix B: "linear projections to BatchNorm gains/biases")."""

    def __init__(self, num_features: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        if c is None:
            raise UserError("conditional batch norm needs a condition vector")
        gain = 1 + self.gain(c)[:, :, None, None]
        return gain * self.bn(x) + self.bias(c)[:, :, None, None]


def make_norm(channels: int, num_classes: int = 0, cond_dim: int = 0) -> nn.Module:
    """The norm a generator block uses: plain BN, class-conditional BN (``num_classes``) or
    vector-conditional BN (``cond_dim``, BigGAN); each is called as ``norm(x, c)``."""
    if cond_dim:
        return VectorConditionalBatchNorm2d(channels, cond_dim)
    if num_classes:
        return ConditionalBatchNorm2d(channels, num_classes)
    return BatchNorm2d(channels)


class SharedClassEmbedding(nn.Module):
    """BigGAN's shared embedding and hierarchical latent (Brock et al. 2019, §3, Fig. 15a).

    ``z`` is split into ``blocks + 1`` chunks; the first feeds the generator's input layer,
    chunk ``i`` is concatenated with the shared embedding ``e(y)`` to condition block ``i``.
    Without classes (``num_classes = 0``) only the chunks are used (hierarchical latent).
    """

    def __init__(self, latent_dim: int, num_classes: int, embed_dim: int, blocks: int) -> None:
        super().__init__()
        if latent_dim < blocks + 1:
            raise UserError(
                f"the hierarchical latent splits z into {blocks + 1} chunks: latent_dim must be "
                f">= {blocks + 1}, got {latent_dim}"
            )
        self.sizes = [len(c) for c in torch.arange(latent_dim).tensor_split(blocks + 1)]
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.num_classes = num_classes

    @property
    def cond_dims(self) -> list[int]:
        """Width of each block's condition vector."""
        extra = self.embed.embedding_dim if self.embed is not None else 0
        return [size + extra for size in self.sizes[1:]]

    def forward(self, z: Tensor, y: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        chunks = list(z.split(self.sizes, dim=1))
        if self.embed is None:
            return chunks[0], chunks[1:]
        shared = self.embed(y)
        return chunks[0], [torch.cat([shared, chunk], dim=1) for chunk in chunks[1:]]


class DiscriminatorHead(nn.Module):
    """Final layer of a discriminator on features ``φ(x)`` of shape ``(N, features)``.

    * no classes: ``score = ψ(φ)`` with ``ψ`` linear; logits ``None``;
    * ``"projection"``: ``score = ψ(φ) + ⟨V[y], φ⟩`` (Miyato & Koyama 2018, Eq. 3);
    * ``"acgan"``: ``score = ψ(φ)`` and ``class_logits = W φ`` (Odena et al. 2017, Eq. 2-3:
      the discriminator's auxiliary classifier ``P(C | X)``).
    """

    def __init__(self, features: int, num_classes: int, conditioning: str = "projection") -> None:
        super().__init__()
        if num_classes and conditioning not in CONDITIONINGS:
            raise UserError(
                f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}"
            )
        self.num_classes = num_classes
        self.conditioning = conditioning if num_classes else "none"
        self.linear = nn.Linear(features, 1)
        self.embed: nn.Embedding | None = None
        self.classifier: nn.Linear | None = None
        if self.conditioning == "projection":
            self.embed = nn.Embedding(num_classes, features)
            nn.init.uniform_(self.embed.weight, -1 / math.sqrt(features), 1 / math.sqrt(features))
        elif self.conditioning == "acgan":
            self.classifier = nn.Linear(features, num_classes)

    def forward(self, phi: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        score = self.linear(phi).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise UserError("a projection discriminator needs the labels y of its inputs")
            score = score + (self.embed(y) * phi).sum(dim=1)
        logits = self.classifier(phi) if self.classifier is not None else None
        return score, logits


def truncated_normal(
    n: int,
    dim: int,
    threshold: float,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    max_rounds: int = 64,
) -> Tensor:
    """``(n, dim)`` standard normal values, each redrawn while ``|v| > threshold`` — BigGAN's
    truncation trick (Brock et al. 2019, §4.1): sampling ``z`` from a truncated normal trades
    variety for fidelity.

    Values still outside after ``max_rounds`` redraws (only for tiny thresholds) are drawn
    from the same truncated normal by inverting its CDF, so the result is exact either way.

    Raises:
        UserError: ``threshold <= 0`` or a negative size.
    """
    if not threshold > 0:
        raise UserError(f"truncation threshold must be > 0, got {threshold}")
    if n < 0 or dim < 0:
        raise UserError(f"truncated_normal: sizes must be >= 0, got ({n}, {dim})")
    if generator is not None and device is None:
        device = generator.device
    z = torch.randn(n, dim, generator=generator, device=device, dtype=dtype)
    for _ in range(max_rounds):
        outside = z.abs() > threshold
        count = int(outside.sum())
        if count == 0:
            return z
        z[outside] = torch.randn(count, generator=generator, device=z.device, dtype=dtype)
    outside = z.abs() > threshold
    count = int(outside.sum())
    if count:
        normal = torch.distributions.Normal(0.0, 1.0)
        lo = normal.cdf(torch.tensor(-float(threshold), dtype=torch.float64))
        u = torch.rand(count, generator=generator, device=z.device, dtype=torch.float64)
        values = normal.icdf(lo + u.cpu() * (1 - 2 * lo)).clamp(-threshold, threshold)
        z[outside] = values.to(device=z.device, dtype=dtype)
    return z
