"""SimGAN: refine simulated images with an adversarial network (recipe ``"simgan"``).

Shrivastava, Pfister, Tuzel, Susskind, Wang & Webb 2017, "Learning from Simulated and
Unsupervised Images through Adversarial Training", CVPR. A refiner ``R_theta`` maps a
synthetic image ``x`` to a refined one; a *local* discriminator ``D_phi`` classifies every
image patch as real or refined. The refiner minimises (eq. 1, 4)

    L_R = sum_i  -log D(R(x_i))  +  lambda || psi(R(x_i)) - psi(x_i) ||_1,

the second term being the self-regularization that keeps the annotation (here the digit's
label) valid (``psi`` the identity, as in the paper's digit-like experiments); the
discriminator minimises (eq. 2) ``-sum log D(y_real) - sum log(1 - D(R(x)))`` over patches,
where half of the refined images come from a history of earlier refinements (§2.3). Per step
the refiner takes ``refiner_steps`` updates (``K_g = 2``), the discriminator one (``K_d``).

Networks (scaled to digits): the refiner is a ResNet (3x3 convolution, ``blocks`` residual
blocks of two 3x3 convolutions with ReLU, a 1x1 convolution) whose output is added to the
input's logit, ``R(x) = sigmoid(logit(x) + r(x))`` with the last layer zero-initialised, so
``R`` starts as the identity (this replaces the paper's refiner pre-training on the
self-regularization loss alone); the discriminator is a PatchGAN with one stride-2 layer, so
each logit sees a small patch (the paper's local adversarial loss, §2.2).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.errors import UserError
from advml.generative.cyclegan import PatchDiscriminator
from advml.generative.history import (
    ImageHistory,
    draw_indices,
    histories_state,
    load_histories_state,
)
from advml.generative.training import adversary_players
from advml.training.recipe import PlayerSpec, Recipe, StepInfo, check_finite, register_recipe

__all__ = [
    "Refiner",
    "SimGanGame",
    "SimGanRecipe",
    "build_simgan",
    "refine",
    "self_regularization",
]

_EPS = 1e-3


def self_regularization(refined: Tensor, synthetic: Tensor) -> Tensor:
    """``|| psi(R(x)) - psi(x) ||_1`` per pixel, ``psi`` the identity (Shrivastava et al.
    2017, eq. 4, averaged instead of summed)."""
    return (refined - synthetic).abs().mean()


class _Block(nn.Module):
    """``x + conv3(ReLU(conv3(x)))`` then ReLU (SimGAN's ResNet block, Fig. 3)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class Refiner(nn.Module):
    """``R(x) = sigmoid(logit(x) + r(x))``; starts as the identity (last layer zero)."""

    def __init__(self, channels: int, width: int = 32, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*(_Block(width) for _ in range(blocks)))
        self.out = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        residual = self.out(self.blocks(F.relu(self.stem(x))))
        return torch.sigmoid(torch.logit(x.clamp(_EPS, 1 - _EPS)) + residual)


class SimGanGame(nn.Module):
    """The refiner (``generator``), the local discriminator and their ``spec``."""

    def __init__(self, refiner: Refiner, discriminator: nn.Module, spec: dict[str, Any]):
        super().__init__()
        self.generator = refiner
        self.discriminator = discriminator
        self.spec = spec

    def forward(self, x: Tensor) -> Tensor:
        return self.generator(x)


def build_simgan(
    data_shape: tuple[int, ...], *, width: int = 32, blocks: int = 3, d_width: int = 32
) -> SimGanGame:
    """A refiner and a local patch discriminator for images of ``data_shape``."""
    if len(data_shape) != 3:
        raise UserError(f"SimGAN refines images (C, H, W), got shape {tuple(data_shape)}")
    if min(width, blocks, d_width) < 1:
        raise UserError("SimGAN widths and block count must be >= 1")
    channels = int(data_shape[0])
    spec = {
        "kind": "simgan",
        "data_shape": list(data_shape),
        "options": {"width": width, "blocks": blocks, "d_width": d_width},
    }
    discriminator = PatchDiscriminator(channels, d_width, downsamples=1, depth=1)
    return SimGanGame(Refiner(channels, width, blocks), discriminator, spec)


@torch.no_grad()
def refine(game: SimGanGame, x: Tensor, batch_size: int = 1000) -> Tensor:
    """``R(x)`` in eval mode, in batches."""
    was_training = game.training
    game.eval()
    try:
        device = next(game.parameters()).device
        parts = [
            game.generator(x[i : i + batch_size].to(device)).cpu()
            for i in range(0, len(x), batch_size)
        ]
    finally:
        game.train(was_training)
    return torch.cat(parts)


@register_recipe("simgan")
class SimGanRecipe(Recipe):
    """SimGAN's Algorithm 1 on a :class:`SimGanGame`: the trainer's data are the synthetic
    images (labels unused); ``real_images`` are the unlabeled real ones, a minibatch of
    which is drawn per step with the step's seeded generator."""

    def __init__(
        self,
        real_images: Tensor,
        reg_weight: float = 1.0,
        history: int = 50,
        refiner_steps: int = 2,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_d_scale: float = 1.0,
        seed: int = 0,
        monitor: Any = None,
    ) -> None:
        if real_images.dim() != 4 or len(real_images) == 0:
            raise UserError("real_images must be a non-empty (N, C, H, W) tensor")
        if not reg_weight >= 0:
            raise UserError(f"reg_weight must be >= 0, got {reg_weight}")
        if refiner_steps < 1:
            raise UserError(f"refiner_steps must be >= 1, got {refiner_steps}")
        self.real_images = real_images
        self.reg_weight = float(reg_weight)
        self.history = ImageHistory(history, seed)
        self.refiner_steps = int(refiner_steps)
        self.betas = (float(betas[0]), float(betas[1]))
        self.lr_d_scale = float(lr_d_scale)
        self.monitor = monitor

    def players(self, module: nn.Module) -> dict[str, PlayerSpec]:
        if not isinstance(module, SimGanGame):
            raise UserError(f"the simgan recipe trains a SimGanGame, got {type(module).__name__}")
        if tuple(self.real_images.shape[1:]) != tuple(module.spec["data_shape"]):
            raise UserError(
                f"real images have shape {tuple(self.real_images.shape[1:])}, the refiner "
                f"was built for {tuple(module.spec['data_shape'])}"
            )
        return adversary_players(
            module.generator, module.discriminator, betas=self.betas, lr_d_scale=self.lr_d_scale
        )

    def settings(self) -> dict[str, Any]:
        return {
            "reg_weight": self.reg_weight,
            "history": self.history.capacity,
            "refiner_steps": self.refiner_steps,
            "betas": list(self.betas),
            "lr_d_scale": self.lr_d_scale,
            "real_images": len(self.real_images),
        }

    def state_tensors(self) -> dict[str, Tensor]:
        return histories_state({"history": self.history})

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        load_histories_state({"history": self.history}, tensors)

    def train_step(
        self,
        nets: dict[str, nn.Module],
        x: Tensor,
        y: Tensor,
        step: StepInfo,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> dict[str, float]:
        game: SimGanGame = step.module
        metrics: dict[str, float] = {}
        frozen = [p for p in game.discriminator.parameters() if p.requires_grad]
        for param in frozen:
            param.requires_grad_(False)
        try:
            for _ in range(self.refiner_steps):
                refined = nets["generator"](x)
                adversarial = F.softplus(-game.discriminator(refined)).mean()
                regular = self_regularization(refined, x)
                loss = adversarial + self.reg_weight * regular
                check_finite(loss, step, "the refiner loss")
                optimizers["generator"].zero_grad(set_to_none=True)
                loss.backward()
                optimizers["generator"].step()
        finally:
            for param in frozen:
                param.requires_grad_(True)
        metrics.update(r_adv=adversarial.item(), r_reg=regular.item(), r_loss=loss.item())
        index = draw_indices(len(self.real_images), x.shape[0], step.generator)
        real = self.real_images[index.to(self.real_images.device)].to(x.device)
        with torch.no_grad():
            refined = game.generator(x)
        scores = nets["discriminator"](torch.cat([real, self.history.query(refined)]))
        s_real, s_fake = scores.chunk(2)
        d_loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
        check_finite(d_loss, step, "the discriminator loss")
        optimizers["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        optimizers["discriminator"].step()
        metrics["d_loss"] = d_loss.item()
        return metrics

    def end_epoch(self, module: nn.Module, epoch: int) -> dict[str, float]:
        return {} if self.monitor is None else self.monitor(module, epoch)
