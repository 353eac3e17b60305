"""UNIT: unpaired translation through a shared latent space (Liu, Breuel & Kautz 2017,
"Unsupervised Image-to-Image Translation Networks", NeurIPS).

Each domain has a VAE-style encoder ``E_A``, ``E_B`` and a generator ``G_A``, ``G_B``; the
encoders share their last layer and the generators their first (the weight-sharing
constraint of §2, Fig. 1), so that a pair of corresponding images maps to one code ``z``.
The encoder outputs the mean ``mu`` of ``q(z | x) = N(mu, I)`` and ``z = mu + eta`` with
``eta ~ N(0, I)`` (the reparametrization of §2, unit variance as in the authors' code).

Translation ``A -> B`` is ``G_B(E_A(a))``. The generators' loss terms (eq. 2-5, without the
adversarial ones, which the recipe adds):

* ``recon``: within-domain VAE reconstruction ``||G_A(z_a) - a||_1 + ||G_B(z_b) - b||_1``
  (eq. 3's likelihood term with a Laplacian decoder, lambda_2 = 10);
* ``kl``: ``KL(q(z|x) || N(0, I)) = ||mu||^2 / 2`` per unit for both encoders (lambda_1 =
  0.01 on the mean of ``mu^2``, as the authors' code);
* ``cycle``: ``||G_A(E_B(G_B(z_a))) - a||_1 + ||G_B(E_A(G_A(z_b))) - b||_1`` (eq. 5,
  lambda_4 = 10) and ``cycle_kl`` the KL term of the re-encoded codes (lambda_3 = 0.01).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from torch import Tensor, nn

from advml.generative.cyclegan import (
    ResidualBlock,
    cycle_loss,
    decoder_layers,
    encoder_layers,
)

__all__ = ["UnitGenerators", "kl_to_standard_normal"]


def kl_to_standard_normal(mu: Tensor) -> Tensor:
    """Mean of ``mu^2`` over units: ``KL(N(mu, I) || N(0, I))`` up to the factor ``1/2`` and
    the normalization by the number of units (Liu et al. 2017, eq. 3; authors' code)."""
    return mu.pow(2).mean()


class UnitGenerators(nn.Module):
    """Encoders and generators of both domains, with the shared latent layers.

    ``forward(a, b, skip)`` returns ``fake_b = G_B(E_A(a))``, ``fake_a = G_A(E_B(b))`` and the
    unweighted terms ``recon``, ``kl``, ``cycle`` and ``cycle_kl`` (``cycle`` and
    ``cycle_kl`` omitted when ``"cycle"`` is in ``skip``).
    """

    terms: tuple[str, ...] = ("recon", "kl", "cycle", "cycle_kl")

    def __init__(self, channels: int, width: int, blocks: int, downsamples: int) -> None:
        super().__init__()
        private = max(blocks - 1, 0)

        def encoder() -> nn.Sequential:
            layers, inner = encoder_layers(channels, width, downsamples)
            return nn.Sequential(*layers, *(ResidualBlock(inner) for _ in range(private)))

        def generator() -> nn.Sequential:
            inner = width * 2**downsamples
            blocks_ = [ResidualBlock(inner) for _ in range(private)]
            return nn.Sequential(*blocks_, *decoder_layers(channels, inner, downsamples))

        inner = width * 2**downsamples
        self.enc_a, self.enc_b = encoder(), encoder()
        self.enc_shared = ResidualBlock(inner)  # last encoder layer, shared (Fig. 1)
        self.gen_shared = ResidualBlock(inner)  # first generator layer, shared
        self.gen_a, self.gen_b = generator(), generator()

    def encode(self, x: Tensor, domain: str) -> Tensor:
        """The code mean ``mu = E_domain(x)``."""
        return self.enc_shared((self.enc_a if domain == "a" else self.enc_b)(x))

    def decode(self, z: Tensor, domain: str) -> Tensor:
        """``G_domain(z)`` in ``[0, 1]``."""
        return (self.gen_a if domain == "a" else self.gen_b)(self.gen_shared(z))

    def _sample(self, mu: Tensor) -> Tensor:
        return mu + mu.new_empty(mu.shape).normal_() if self.training else mu

    def forward(self, a: Tensor, b: Tensor, skip: Collection[str] = ()) -> dict[str, Any]:
        mu_a, mu_b = self.encode(a, "a"), self.encode(b, "b")
        z_a, z_b = self._sample(mu_a), self._sample(mu_b)
        fake_b, fake_a = self.decode(z_a, "b"), self.decode(z_b, "a")
        terms = {
            "recon": cycle_loss(a, self.decode(z_a, "a")) + cycle_loss(b, self.decode(z_b, "b")),
            "kl": kl_to_standard_normal(mu_a) + kl_to_standard_normal(mu_b),
        }
        if "cycle" not in skip:
            mu_ab, mu_ba = self.encode(fake_b, "b"), self.encode(fake_a, "a")
            back_a = self.decode(self._sample(mu_ab), "a")
            back_b = self.decode(self._sample(mu_ba), "b")
            terms["cycle"] = cycle_loss(a, back_a) + cycle_loss(b, back_b)
            terms["cycle_kl"] = kl_to_standard_normal(mu_ab) + kl_to_standard_normal(mu_ba)
        return {"fake_b": fake_b, "fake_a": fake_a, "terms": terms}

    def translate(self, x: Tensor, direction: str = "ab") -> Tensor:
        """``G_B(E_A(x))`` for ``"ab"``, ``G_A(E_B(x))`` for ``"ba"`` (codes' means in eval)."""
        source, target = ("a", "b") if direction == "ab" else ("b", "a")
        return self.decode(self._sample(self.encode(x, source)), target)

    def reconstruct(self, x: Tensor, direction: str = "ab") -> Tensor:
        """The cycle through the other domain and back."""
        back = "ba" if direction == "ab" else "ab"
        return self.translate(self.translate(x, direction), back)
