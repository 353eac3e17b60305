"""GAN objectives: the value function of each game, split into the two players' losses.

Every loss takes the discriminator's raw scores ``f = D(x)`` (logits or critic values, shape
``(N,)``) and returns a scalar mean over the batch. ``sigma`` is the logistic sigmoid, so
``log D(x) = -softplus(-f)`` and ``log(1 - D(x)) = -softplus(f)``.

=================  ===============================================  ==========================
loss               discriminator minimises                          generator minimises
=================  ===============================================  ==========================
``minimax``        ``softplus(-f_r) + softplus(f_f)``               ``-softplus(f_f)``
``nonsaturating``  ``softplus(-f_r) + softplus(f_f)``               ``softplus(-f_f)``
``hinge``          ``relu(1 - f_r) + relu(1 + f_f)``                ``-f_f``
``wgan-gp``        ``f_f - f_r`` (+ gradient penalty)               ``-f_f``
``lsgan``          ``((f_r - 1)^2 + f_f^2) / 2``                    ``(f_f - 1)^2 / 2``
=================  ===============================================  ==========================

* minimax: Goodfellow et al. 2014, "Generative Adversarial Nets", eq. 1,
  ``min_G max_D E[log D(x)] + E[log(1 - D(G(z)))]``; the generator minimises
  ``log(1 - D(G(z)))``, which saturates when D rejects the samples.
* nonsaturating: the same paper, sec. 3: G maximises ``log D(G(z))`` instead.
* hinge: Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018, "Spectral Normalization for
  GANs", eq. 16-17.
* wgan-gp: Arjovsky et al. 2017, "Wasserstein GAN", eq. 3 (the Kantorovich-Rubinstein dual),
  with the gradient penalty of Gulrajani et al. 2017, "Improved Training of Wasserstein GANs",
  eq. 3, ``lambda E[(||grad D(x_hat)||_2 - 1)^2]`` on ``x_hat = eps x + (1 - eps) x_tilde``,
  ``lambda = 10``.
* lsgan: Mao et al. 2017, "Least Squares GANs", eq. 2 with ``a = 0, b = c = 1``.

Regularisers of the discriminator: :func:`r1_penalty` (Mescheder et al. 2018, "Which Training
Methods for GANs do actually Converge?", eq. 9) and :func:`apply_spectral_norm` (Miyato et al.
2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.errors import UserError

__all__ = [
    "LOSSES",
    "apply_spectral_norm",
    "check_loss",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "interpolate",
    "r1_penalty",
]

#: Names of the GAN losses.
LOSSES: tuple[str, ...] = ("minimax", "nonsaturating", "hinge", "wgan-gp", "lsgan")


def check_loss(name: str) -> str:
    """``name`` if it is a known loss, else a :class:`UserError` listing the names."""
    if name not in LOSSES:
        raise UserError(f"unknown GAN loss {name!r}; choose one of {', '.join(LOSSES)}")
    return name


def discriminator_loss(name: str, real: Tensor, fake: Tensor) -> Tensor:
    """The discriminator's loss on scores of real and generated samples (see the table above).

    For ``wgan-gp`` this is the critic's Wasserstein term only; add :func:`gradient_penalty`.
    """
    check_loss(name)
    if name in ("minimax", "nonsaturating"):
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if name == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if name == "wgan-gp":
        return fake.mean() - real.mean()
    return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake**2).mean()


def generator_loss(name: str, fake: Tensor) -> Tensor:
    """The generator's loss on the discriminator's scores of generated samples."""
    check_loss(name)
    if name == "minimax":
        return -F.softplus(fake).mean()  # E[log(1 - D(G(z)))]
    if name == "nonsaturating":
        return F.softplus(-fake).mean()  # -E[log D(G(z))]
    if name in ("hinge", "wgan-gp"):
        return -fake.mean()
    return 0.5 * ((fake - 1.0) ** 2).mean()


def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample (Gulrajani et al.
    2017, Algorithm 1, line 6)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, device=real.device, dtype=real.dtype)
    return eps * real + (1.0 - eps) * fake


def _input_gradients(scores: Tensor, inputs: Tensor) -> Tensor:
    """``d scores_i / d inputs`` reshaped to one row per score (a packed discriminator scores
    several input rows at once, so rows are grouped by score)."""
    (grad,) = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
    return grad.reshape(scores.shape[0], -1)


def gradient_penalty(scores: Tensor, inputs: Tensor, weight: float = 10.0) -> Tensor:
    """WGAN-GP's two-sided penalty ``lambda E[(||grad_x D(x)||_2 - 1)^2]`` (Gulrajani et al.
    2017, eq. 3), with ``scores = D(inputs)`` computed on interpolates that require grad."""
    norms = _input_gradients(scores, inputs).norm(dim=1)
    return weight * ((norms - 1.0) ** 2).mean()


def r1_penalty(scores: Tensor, inputs: Tensor, gamma: float) -> Tensor:
    """R1 regulariser ``gamma / 2 E_real[||grad_x D(x)||_2^2]`` (Mescheder et al. 2018, eq. 9),
    with ``scores = D(inputs)`` on real inputs that require grad."""
    return 0.5 * gamma * _input_gradients(scores, inputs).pow(2).sum(dim=1).mean()


_NORMALIZED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalization (Miyato et al. 2018, eq. 8: ``W / sigma(W)``, ``sigma`` by one
    power iteration per forward pass) on every Linear/Conv layer of ``module``, in place.

    Uses :func:`torch.nn.utils.parametrizations.spectral_norm`; layers already normalized are
    left alone. Returns ``module``.
    """
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm

    layers = [m for m in module.modules() if isinstance(m, _NORMALIZED)]
    for layer in layers:
        if not parametrize.is_parametrized(layer, "weight"):
            spectral_norm(layer)
    return module
