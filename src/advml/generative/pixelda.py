"""PixelDA: pixel-level domain adaptation with a GAN and a task classifier (recipe
``"pixelda"``).

Bousmalis, Silberman, Dohan, Erhan & Krishnan 2017, "Unsupervised Pixel-Level Domain
Adaptation with Generative Adversarial Networks", CVPR. A generator ``G(x^s, z)`` maps a
labeled source image and noise to a target-like image; a discriminator ``D`` tells real
target images from generated ones; a task classifier ``T`` is trained on source and generated
images with the source labels. The game (eq. 1-4, without the optional content-similarity
loss, which needs foreground masks):

    min_{G, T} max_D  alpha L_d(D, G) + beta L_t(G, T),
    L_d = E log D(x^t) + E log(1 - D(G(x^s, z))),
    L_t = E -y^s log T(G(x^s, z)) + E -y^s log T(x^s).

``D`` minimises ``-L_d`` (logistic loss on patch logits); ``G`` and ``T`` minimise
``alpha * softplus(-D(G)) + beta * L_t`` (the non-saturating generator loss) in one
backward pass, each with its own optimizer. ``T`` then classifies target images; its accuracy
on the target test set is PixelDA's reported number.

Networks (scaled to digits): the generator maps ``z`` (``noise_dim``, uniform in [-1, 1] as in
the paper) to one extra input channel via a linear layer, then a 3x3 convolution, ``blocks``
residual blocks (conv-BN-ReLU-conv-BN, as the paper) and a 3x3 convolution added to the
source image's logit (zero-initialised, so ``G`` starts near the identity); ``D`` is a
PatchGAN; ``T`` is any advml classifier (``classifier=``, default ``cnn-small``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.errors import UserError
from advml.generative.cyclegan import PatchDiscriminator
from advml.generative.history import draw_indices
from advml.generative.training import adversary_players
from advml.training.recipe import PlayerSpec, Recipe, StepInfo, check_finite, register_recipe

__all__ = ["PixelDAGame", "PixelDAGenerator", "PixelDARecipe", "build_pixelda", "generate"]

_EPS = 1e-3


class _Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class PixelDAGenerator(nn.Module):
    """``G(x^s, z) -> x^f`` in ``[0, 1]`` (Bousmalis et al. 2017, §3.1, Fig. 2)."""

    def __init__(
        self, data_shape: tuple[int, ...], noise_dim: int = 10, width: int = 32, blocks: int = 3
    ):
        super().__init__()
        c, h, w = data_shape
        self.noise_dim, self.hw = noise_dim, (h, w)
        self.noise = nn.Linear(noise_dim, h * w) if noise_dim > 0 else None
        self.stem = nn.Conv2d(c + (1 if noise_dim > 0 else 0), width, 3, padding=1)
        self.blocks = nn.Sequential(*(_Block(width) for _ in range(blocks)))
        self.out = nn.Conv2d(width, c, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        h = x
        if self.noise is not None:
            if z is None:
                z = torch.zeros(x.shape[0], self.noise_dim, device=x.device, dtype=x.dtype)
            h = torch.cat([x, self.noise(z).reshape(x.shape[0], 1, *self.hw)], 1)
        residual = self.out(self.blocks(F.relu(self.stem(h))))
        return torch.sigmoid(torch.logit(x.clamp(_EPS, 1 - _EPS)) + residual)


class PixelDAGame(nn.Module):
    """Generator, discriminator and task classifier, plus their ``spec``."""

    def __init__(
        self,
        generator: PixelDAGenerator,
        discriminator: nn.Module,
        classifier: nn.Module,
        spec: dict[str, Any],
    ) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.classifier = classifier
        self.spec = spec

    def forward(self, x: Tensor) -> Tensor:
        """The task classifier's logits (the model PixelDA deploys on the target domain)."""
        return self.classifier(x)


def build_pixelda(
    data_shape: tuple[int, ...],
    num_classes: int = 10,
    *,
    noise_dim: int = 10,
    width: int = 32,
    blocks: int = 3,
    d_width: int = 32,
    classifier: str = "cnn-small",
) -> PixelDAGame:
    """PixelDA's three networks for images of ``data_shape`` and ``num_classes`` labels."""
    from advml.models import build

    shape = tuple(int(d) for d in data_shape)
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise UserError(f"PixelDA needs images (C, H, W) with sides divisible by 4, got {shape}")
    if noise_dim < 0 or min(width, blocks, d_width) < 1 or num_classes < 2:
        raise UserError("PixelDA: noise_dim >= 0, widths/blocks >= 1 and >= 2 classes")
    generator = PixelDAGenerator(shape, noise_dim, width, blocks)
    discriminator = PatchDiscriminator(shape[0], d_width, downsamples=2, depth=1)
    task = build(classifier, shape, num_classes)
    spec = {
        "kind": "pixelda",
        "data_shape": list(shape),
        "num_classes": num_classes,
        "options": {
            "noise_dim": noise_dim,
            "width": width,
            "blocks": blocks,
            "d_width": d_width,
            "classifier": classifier,
        },
    }
    return PixelDAGame(generator, discriminator, task, spec)


def _noise(n: int, dim: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
    z = torch.rand(n, dim, generator=generator, device=like.device, dtype=like.dtype)
    return 2 * z - 1


@torch.no_grad()
def generate(game: PixelDAGame, x: Tensor, seed: int = 0, batch_size: int = 1000) -> Tensor:
    """``G(x, z)`` in eval mode with noise drawn from ``seed`` (independent of batching)."""
    was_training = game.training
    game.eval()
    try:
        device = next(game.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        z = _noise(len(x), game.generator.noise_dim, gen, x)
        parts = [
            game.generator(x[i : i + batch_size].to(device), z[i : i + batch_size].to(device))
            for i in range(0, len(x), batch_size)
        ]
    finally:
        game.train(was_training)
    return torch.cat(parts).cpu()


@register_recipe("pixelda")
class PixelDARecipe(Recipe):
    """PixelDA's alternating updates; the trainer's data are the labeled source images,
    ``target_images`` the unlabeled target ones (a minibatch drawn per step)."""

    def __init__(
        self,
        target_images: Tensor,
        adversarial_weight: float = 1.0,
        task_weight: float = 1.0,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_d_scale: float = 1.0,
        monitor: Any = None,
    ) -> None:
        if target_images.dim() != 4 or len(target_images) == 0:
            raise UserError("target_images must be a non-empty (N, C, H, W) tensor")
        if not (adversarial_weight >= 0 and task_weight >= 0):
            raise UserError("PixelDA loss weights must be >= 0")
        self.target_images = target_images
        self.alpha, self.beta = float(adversarial_weight), float(task_weight)
        self.betas = (float(betas[0]), float(betas[1]))
        self.lr_d_scale = float(lr_d_scale)
        self.monitor = monitor

    def players(self, module: nn.Module) -> dict[str, PlayerSpec]:
        if not isinstance(module, PixelDAGame):
            raise UserError(f"the pixelda recipe trains a PixelDAGame, got {type(module).__name__}")
        if tuple(self.target_images.shape[1:]) != tuple(module.spec["data_shape"]):
            raise UserError(
                f"target images have shape {tuple(self.target_images.shape[1:])}, the game "
                f"was built for {tuple(module.spec['data_shape'])}"
            )
        players = adversary_players(
            module.generator, module.discriminator, betas=self.betas, lr_d_scale=self.lr_d_scale
        )
        return {**players, "classifier": PlayerSpec(module.classifier, betas=self.betas)}

    def settings(self) -> dict[str, Any]:
        return {
            "adversarial_weight": self.alpha,
            "task_weight": self.beta,
            "betas": list(self.betas),
            "lr_d_scale": self.lr_d_scale,
            "target_images": len(self.target_images),
        }

    def train_step(
        self,
        nets: dict[str, nn.Module],
        x: Tensor,
        y: Tensor,
        step: StepInfo,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> dict[str, float]:
        game: PixelDAGame = step.module
        n, dim = x.shape[0], game.generator.noise_dim
        index = draw_indices(len(self.target_images), n, step.generator)
        target = self.target_images[index.to(self.target_images.device)].to(x.device)
        # discriminator: real target vs generated
        with torch.no_grad():
            fake = game.generator(x, _noise(n, dim, step.generator, x))
        scores = nets["discriminator"](torch.cat([target, fake]))
        s_real, s_fake = scores.chunk(2)
        d_loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
        check_finite(d_loss, step, "the discriminator loss")
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()
        # generator + task classifier, discriminator frozen
        frozen = [p for p in game.discriminator.parameters() if p.requires_grad]
        for param in frozen:
            param.requires_grad_(False)
        try:
            fake = nets["generator"](x, _noise(n, dim, step.generator, x))
            adversarial = F.softplus(-game.discriminator(fake)).mean()
            logits = nets["classifier"](torch.cat([fake, x]))
            task = 2 * F.cross_entropy(logits, torch.cat([y, y]))  # both terms of L_t
            loss = self.alpha * adversarial + self.beta * task
            check_finite(loss, step, "the generator/classifier loss")
            optimizers["generator"].zero_grad(set_to_none=True)
            optimizers["classifier"].zero_grad(set_to_none=True)
            loss.backward()
            optimizers["generator"].step()
            optimizers["classifier"].step()
        finally:
            for param in frozen:
                param.requires_grad_(True)
        accuracy = (logits[:n].argmax(1) == y).float().mean().item()
        return {
            "d_loss": d_loss.item(),
            "g_adv": adversarial.item(),
            "task": task.item(),
            "fake_acc": accuracy,
        }

    def end_epoch(self, module: nn.Module, epoch: int) -> dict[str, float]:
        return {} if self.monitor is None else self.monitor(module, epoch)
