"""The GAN game as a recipe of the one trainer (recipe ``"gan"``).

Two players (Goodfellow et al. 2014, Algorithm 1): per trainer step the discriminator takes
``n_critic`` steps, then the generator takes one. The trainer's batch of real samples is split
into ``n_critic`` equal minibatches, one per discriminator step (WGAN-GP's Algorithm 1 draws a
fresh real minibatch for each critic iteration); each discriminator step draws as many latent
codes as it has real samples, and the generator step as many as one minibatch. With packing
(PacGAN), a minibatch of ``m * B`` points is ``B`` packs of ``m``.

Options (all recorded in ``config.json`` and the checkpoint card):

* ``loss``: one of :data:`advml.generative.losses.LOSSES`;
* ``n_critic``: discriminator steps per generator step (5 for WGAN-GP);
* ``lr_d_scale``: discriminator learning rate / generator learning rate (TTUR, Heusel et al.
  2017); ``betas_g``, ``betas_d``: Adam betas of each player;
* ``gp``: WGAN-GP's lambda (Gulrajani et al. 2017, 10), used with ``loss="wgan-gp"``;
* ``r1``: R1 gamma (Mescheder et al. 2018), any loss; 0 disables;
* ``ema``: decay of the generator's weight average (0 disables; e.g. 0.999);
* ``conditional``: give the labels to both players (pairs built with ``num_classes > 0``);
  fake samples get the labels of the real minibatch. A discriminator that returns class
  logits adds AC-GAN's auxiliary cross-entropy (Odena et al. 2017, eq. 2-3: ``L_C`` for both
  players, weight ``ac_weight``).

DDP: the trainer wraps generator and discriminator separately. A discriminator step runs one
forward pass of the wrapped discriminator on ``cat(real, fake[, interpolates])`` (fakes made by
the unwrapped generator without gradients) and one backward; the generator step runs the
wrapped generator and the *unwrapped* discriminator with its parameters frozen. Each backward
therefore synchronises exactly one player's gradients, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advml.errors import UserError
from advml.generative.ema import EMA
from advml.generative.game import GanGame
from advml.generative.losses import (
    check_loss,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    interpolate,
    r1_penalty,
)
from advml.training.recipe import PlayerSpec, Recipe, StepInfo, check_finite, register_recipe

__all__ = ["GanRecipe", "Monitor"]

#: ``monitor(game, epoch, ema) -> metrics``: called after each epoch (e.g. sample PNGs, modes).
Monitor = Callable[[GanGame, int, "EMA | None"], dict[str, float]]


def _betas(name: str, value: Any) -> tuple[float, float]:
    try:
        b1, b2 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be two numbers (beta1, beta2), got {value!r}") from None
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise UserError(f"{name} must lie in [0, 1), got ({b1}, {b2})")
    return b1, b2


def adversary_players(
    generator: nn.Module,
    discriminator: nn.Module,
    *,
    betas: tuple[float, float],
    lr_d_scale: float = 1.0,
    betas_d: tuple[float, float] | None = None,
) -> dict[str, PlayerSpec]:
    """The two players of every generator-vs-discriminator game here: the generator at the base
    learning rate, the discriminator at ``lr_d_scale`` times it (TTUR, Heusel et al. 2017),
    Adam ``betas`` for both unless ``betas_d`` sets the discriminator's."""
    return {
        "generator": PlayerSpec(generator, betas=betas),
        "discriminator": PlayerSpec(
            discriminator, lr_scale=lr_d_scale, betas=betas if betas_d is None else betas_d
        ),
    }


@register_recipe("gan")
class GanRecipe(Recipe):
    """Alternating discriminator/generator updates of a :class:`GanGame`."""

    def __init__(
        self,
        loss: str = "nonsaturating",
        n_critic: int = 1,
        lr_d_scale: float = 1.0,
        betas_g: tuple[float, float] = (0.5, 0.999),
        betas_d: tuple[float, float] = (0.5, 0.999),
        gp: float = 10.0,
        r1: float = 0.0,
        ema: float = 0.0,
        conditional: bool = False,
        ac_weight: float = 1.0,
        monitor: Monitor | None = None,
    ) -> None:
        self.loss_name = check_loss(loss)
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            raise UserError(f"n_critic must be an integer >= 1, got {n_critic!r}")
        if not lr_d_scale > 0:
            raise UserError(f"lr_d_scale must be > 0, got {lr_d_scale}")
        for name, value in (("gp", gp), ("r1", r1), ("ac_weight", ac_weight)):
            if not value >= 0:
                raise UserError(f"{name} must be >= 0, got {value}")
        if not 0.0 <= ema < 1.0:
            raise UserError(f"ema decay must be in [0, 1) (0 disables), got {ema}")
        self.n_critic = n_critic
        self.lr_d_scale = float(lr_d_scale)
        self.betas_g, self.betas_d = _betas("betas_g", betas_g), _betas("betas_d", betas_d)
        self.gp, self.r1, self.ema_decay = float(gp), float(r1), float(ema)
        self.conditional, self.ac_weight = bool(conditional), float(ac_weight)
        self.monitor = monitor
        self.ema: EMA | None = None

    # ------------------------------------------------------------------ players and state

    def players(self, module: nn.Module) -> dict[str, PlayerSpec]:
        if not isinstance(module, GanGame):
            raise UserError(
                f"the gan recipe trains a GanGame (generator + discriminator), got "
                f"{type(module).__name__}; build one with advml.generative.build_game"
            )
        if self.conditional and module.num_classes == 0:
            raise UserError("conditional training needs a pair built with num_classes > 0")
        if not self.conditional and module.num_classes > 0:
            raise UserError(
                "this pair is class-conditional (num_classes > 0): train it with "
                "conditional=True (--conditional)"
            )
        if self.ema_decay > 0:
            self.ema = EMA(module.generator, self.ema_decay)
        return adversary_players(
            module.generator,
            module.discriminator,
            betas=self.betas_g,
            lr_d_scale=self.lr_d_scale,
            betas_d=self.betas_d,
        )

    def state_tensors(self) -> dict[str, Tensor]:
        if self.ema is None:
            return {}
        return {f"ema.{k}": v for k, v in self.ema.state_tensors().items()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        if self.ema is not None:
            self.ema.load_state_tensors(
                {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
            )

    def settings(self) -> dict[str, Any]:
        return {
            "loss": self.loss_name,
            "n_critic": self.n_critic,
            "lr_d_scale": self.lr_d_scale,
            "betas_g": list(self.betas_g),
            "betas_d": list(self.betas_d),
            "gp": self.gp if self.loss_name == "wgan-gp" else 0.0,
            "r1": self.r1,
            "ema": self.ema_decay,
            "conditional": self.conditional,
            "ac_weight": self.ac_weight,
        }

    # ------------------------------------------------------------------ one step

    def _labels(self, y: Tensor) -> Tensor | None:
        return y if self.conditional else None

    def _latent(self, game: GanGame, n: int, step: StepInfo, like: Tensor) -> Tensor:
        return torch.randn(
            n, game.latent_dim, generator=step.generator, device=like.device, dtype=like.dtype
        )

    def _auxiliary(self, logits: Tensor | None, y: Tensor | None) -> Tensor | None:
        """AC-GAN's class term ``L_C`` (mean cross-entropy), when the discriminator has one."""
        if logits is None or y is None or self.ac_weight == 0:
            return None
        return self.ac_weight * F.cross_entropy(logits, y)

    def discriminator_step(
        self, disc: nn.Module, game: GanGame, real: Tensor, y: Tensor, step: StepInfo
    ) -> tuple[Tensor, dict[str, float]]:
        """Loss of one discriminator update (one forward through ``disc``)."""
        labels = self._labels(y)
        with torch.no_grad():
            fake = game.generator(self._latent(game, real.shape[0], step, real), labels)
        real = real.detach().requires_grad_(self.r1 > 0)
        parts = [real, fake]
        gp = self.loss_name == "wgan-gp" and self.gp > 0
        if gp:
            parts.append(interpolate(real.detach(), fake, step.generator).requires_grad_(True))
        all_labels = None if labels is None else torch.cat([labels] * len(parts))
        scores, logits = disc(torch.cat(parts), all_labels)
        chunks = scores.chunk(len(parts))
        loss = discriminator_loss(self.loss_name, chunks[0], chunks[1])
        metrics = {"d_real": chunks[0].mean().item(), "d_fake": chunks[1].mean().item()}
        if gp:
            penalty = gradient_penalty(chunks[2], parts[2], self.gp)
            loss = loss + penalty
            metrics["gp"] = penalty.item()
        if self.r1 > 0:
            penalty = r1_penalty(chunks[0], real, self.r1)
            loss = loss + penalty
            metrics["r1"] = penalty.item()
        if logits is not None and labels is not None:
            per_part = logits.chunk(len(parts))
            aux = self._auxiliary(torch.cat(per_part[:2]), torch.cat([labels, labels]))
            if aux is not None:
                loss = loss + aux
                metrics["d_aux"] = aux.item()
        metrics["d_loss"] = loss.item()
        return loss, metrics

    def generator_step(
        self, gen: nn.Module, game: GanGame, n: int, y: Tensor, step: StepInfo, like: Tensor
    ) -> tuple[Tensor, dict[str, float]]:
        """Loss of one generator update (through ``gen``; the discriminator unwrapped)."""
        labels = self._labels(y)
        fake = gen(self._latent(game, n, step, like), labels)
        scores, logits = game.discriminator(fake, labels)
        loss = generator_loss(self.loss_name, scores)
        metrics: dict[str, float] = {}
        aux = self._auxiliary(logits, labels)
        if aux is not None:
            loss = loss + aux
            metrics["g_aux"] = aux.item()
        metrics["g_loss"] = loss.item()
        return loss, metrics

    def train_step(
        self,
        nets: dict[str, nn.Module],
        x: Tensor,
        y: Tensor,
        step: StepInfo,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> dict[str, float]:
        game = step.module
        if x.shape[0] % self.n_critic:
            raise UserError(
                f"a batch of {x.shape[0]} samples cannot be split into {self.n_critic} "
                "discriminator minibatches; make the batch size a multiple of n_critic"
            )
        opt_d, opt_g = optimizers["discriminator"], optimizers["generator"]
        metrics: dict[str, float] = {}
        xs, ys = x.chunk(self.n_critic), y.chunk(self.n_critic)
        for real, labels in zip(xs, ys, strict=True):
            loss, metrics = self.discriminator_step(nets["discriminator"], game, real, labels, step)
            check_finite(loss, step, "the discriminator loss")
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
        frozen = [p for p in game.discriminator.parameters() if p.requires_grad]
        for param in frozen:
            param.requires_grad_(False)
        try:
            loss, g_metrics = self.generator_step(
                nets["generator"], game, xs[-1].shape[0], ys[-1], step, x
            )
            check_finite(loss, step, "the generator loss")
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
        finally:
            for param in frozen:
                param.requires_grad_(True)
        if self.ema is not None:
            self.ema.update(game.generator)
        return {**metrics, **g_metrics}

    def end_epoch(self, module: nn.Module, epoch: int) -> dict[str, float]:
        if self.monitor is None:
            return {}
        return self.monitor(module, epoch, self.ema)
