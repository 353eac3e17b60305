"""The recipe seam of the one trainer: what a training step optimizes.

The trainer owns epochs, batching, the optimizer, LR schedule, progress, logging, checkpoints
and DDP. A recipe owns the game: given a batch, it returns the loss of the minimizing player
(after running whatever maximizing player it needs) and metrics to log. Standard training is
empirical risk minimization, ``min_theta E[J(theta, x, y)]``; adversarial recipes (issue 5) plug
an inner maximizer in front of the same loss.

A recipe must compute the training loss through ``model`` (which may be wrapped in
``DistributedDataParallel``) and run attacks on ``step.module`` (the unwrapped network), so that
gradient synchronisation happens once per step.
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


class Recipe:
    """Base class: override :meth:`loss`. ``name`` keys the registry used by the CLI."""

    name: ClassVar[str] = ""
    #: Optimizer steps taken on each minibatch (Free-AT replays a batch m times).
    replays: int = 1

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

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
