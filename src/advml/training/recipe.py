"""The recipe seam of the one trainer: what a training step optimizes.

The trainer owns epochs, batching, the optimizer, LR schedule, progress, logging, checkpoints
and DDP. A recipe owns the game: given a batch, it returns the loss of the minimizing player
(after running whatever maximizing player it needs) and metrics to log. Standard training is
empirical risk minimization, ``min_theta E[J(theta, x, y)]``; adversarial recipes (issue 5) plug
an inner maximizer in front of the same loss.

A recipe must compute the training loss through ``model`` (which may be wrapped in
``DistributedDataParallel``) and run attacks on ``step.module`` (the unwrapped network), so that
gradient synchronisation happens once per step.

Games with several learned players (GANs: a generator and a discriminator) declare them with
:meth:`Recipe.players` — each player a module with its own optimizer settings (Adam betas,
a learning-rate multiplier for the two time-scale update rule of Heusel et al. 2017) — and run
their own alternating updates in :meth:`Recipe.train_step`. The default implementations are
the single-player game: one player ``"model"`` holding every trainable parameter, and one
``loss -> backward -> step`` per replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError


@dataclass
class StepInfo:
    """Context of one optimizer step handed to :meth:`Recipe.loss`."""

    module: nn.Module  # the unwrapped model (use for attacks / inner maximization)
    epoch: int  # 1-based epoch
    step: int  # 0-based step within the epoch
    progress: float  # fraction of all training steps done, in [0, 1)
    generator: torch.Generator  # per-step, per-rank seeded randomness for the recipe
    #: per-step seed shared by all ranks; attacks called with ``seed=step.seed`` key their
    #: randomness on each sample's contents, so DDP shards reproduce the single-process batch
    seed: int = 0
    #: base learning rate of this step after the schedule (players scale it by ``lr_scale``)
    lr: float = 0.0


#: Name of the one player of single-player recipes.
SINGLE_PLAYER = "model"


@dataclass
class PlayerSpec:
    """One learned player of a game: the module it owns and how its optimizer is set up.

    The trainer builds one optimizer per player over ``module``'s trainable parameters with
    the run's optimizer type and weight decay unless overridden here. Its learning rate is
    ``config.lr * lr_scale * schedule(progress)``, so a schedule applies to every player and
    ``lr_scale`` realises the two time-scale update rule (TTUR, Heusel et al. 2017: e.g.
    discriminator 4e-4, generator 1e-4). ``betas`` sets Adam's ``(beta1, beta2)``
    (e.g. ``(0.0, 0.9)`` for WGAN-GP, ``(0.5, 0.999)`` for DCGAN). Under ``torchrun`` the
    trainer wraps each player's module in its own ``DistributedDataParallel``.
    """

    module: nn.Module
    lr_scale: float = 1.0
    betas: tuple[float, float] | None = None
    optimizer: str | None = None
    weight_decay: float | None = None


class Recipe:
    """Base class: override :meth:`loss`. ``name`` keys the registry used by the CLI."""

    name: ClassVar[str] = ""
    #: Optimizer steps taken on each minibatch (Free-AT replays a batch m times).
    replays: int = 1

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def players(self, module: nn.Module) -> dict[str, PlayerSpec]:
        """The learned players of the game (called once, before any checkpoint is restored).

        Default: one player ``"model"`` owning ``module`` with the run's optimizer settings.
        """
        return {SINGLE_PLAYER: PlayerSpec(module)}

    def train_step(
        self,
        nets: dict[str, nn.Module],
        x: torch.Tensor,
        y: torch.Tensor,
        step: StepInfo,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> dict[str, float]:
        """Update the players on one batch; returns the metrics to average over the epoch.

        ``nets[name]`` is player ``name``'s module, wrapped in ``DistributedDataParallel``
        under ``torchrun`` (compute each backward through it, once); ``optimizers[name]`` its
        optimizer, learning rate already set. The default is single-player training:
        ``replays`` times ``loss -> backward -> after_backward -> step``.
        """
        net, optimizer = nets[SINGLE_PLAYER], optimizers[SINGLE_PLAYER]
        metrics: dict[str, float] = {}
        for _ in range(self.replays):
            loss, metrics = self.loss(net, x, y, step)
            check_finite(loss, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.after_backward()
            optimizer.step()
        return metrics

    def end_epoch(self, module: nn.Module, epoch: int) -> dict[str, float]:
        """Called on every process after each epoch; extra metrics for the epoch's row
        (e.g. a GAN's mode coverage). Default: none."""
        return {}

    def after_backward(self) -> None:
        """Called after each ``loss.backward()``, before the optimizer step (e.g. to read the
        input gradient that the same backward pass produced)."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors the recipe carries from step to step (saved in trainer checkpoints)."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned (on resume)."""

    def settings(self) -> dict[str, Any]:
        """Hyperparameters recorded in ``config.json`` and the model card."""
        return {}


def check_finite(loss: torch.Tensor, step: StepInfo, what: str = "loss") -> None:
    """Raise a :class:`UserError` when a training loss is NaN or infinite."""
    if not torch.isfinite(loss):
        raise UserError(
            f"training diverged: {what} is {loss.item()} at epoch {step.epoch} "
            f"step {step.step}; lower the learning rate (now {step.lr:g})"
        )


_RECIPES: dict[str, Callable[..., Recipe]] = {}


def register_recipe(name: str) -> Callable[[type[Recipe]], type[Recipe]]:
    """Class decorator adding a recipe to the registry under ``name``."""

    def decorate(cls: type[Recipe]) -> type[Recipe]:
        cls.name = name
        _RECIPES[name] = cls
        return cls

    return decorate


def recipe_names() -> list[str]:
    return sorted(_RECIPES)


def get_recipe(name: str, **settings: Any) -> Recipe:
    """Build the recipe ``name`` with ``settings``; unknown names give a :class:`UserError`."""
    try:
        factory = _RECIPES[name]
    except KeyError:
        raise UserError(
            f"unknown recipe {name!r}; choose one of {', '.join(recipe_names())}"
        ) from None
    try:
        return factory(**settings)
    except TypeError as error:
        raise UserError(f"recipe {name!r}: {error}") from None


@register_recipe("standard")
class StandardRecipe(Recipe):
    """Empirical risk minimization: mean cross-entropy of the clean batch."""

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(1) == y).float().mean()
        return loss, {"loss": loss.item(), "acc": accuracy.item()}
