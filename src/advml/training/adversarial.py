r"""Adversarial training as a minimax game (Madry et al. 2018, "Towards Deep Learning Models
Resistant to Adversarial Attacks", eq. 2.1):

.. math::  \min_\theta\; \mathbb{E}_{(x,y)}\Big[\max_{\delta \in S} J(\theta, x + \delta, y)\Big]

The inner maximization is approximately solved by an attack from :mod:`advml.attacks` (PGD by
default, run on the unwrapped model in eval mode so batch-norm statistics are not polluted by
adversarial batches); the outer minimization is the trainer's optimizer step on the
cross-entropy of the adversarial batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError
from advml.training.recipe import Recipe, StepInfo, register_recipe


@register_recipe("pgd")
class PGDTraining(Recipe):
    """PGD adversarial training (Madry et al. 2018).

    Args:
        threat: ``linf``, ``l2`` or ``l1``.
        eps: budget of the threat model during training.
        attack: registry name of the inner maximizer (default ``pgd``).
        steps: attack iterations (Madry et al. use 40 on MNIST, 7 on CIFAR-10).
        step_size: attack step; default ``2.5 * eps / steps``.
    """

    def __init__(
        self,
        threat: str = "linf",
        eps: float = 0.3,
        attack: str = "pgd",
        steps: int = 10,
        step_size: float | None = None,
    ) -> None:
        if not eps > 0:
            raise UserError(f"adversarial training needs eps > 0, got {eps}")
        self.threat_name, self.eps, self.attack_name = threat, float(eps), attack
        self.steps, self.step_size = int(steps), step_size
        from advml import attacks, threats

        self.threat = threats.make(threat, eps)

        self.attack = attacks.get(attack)

    def adversarial_batch(self, x: torch.Tensor, y: torch.Tensor, step: StepInfo) -> torch.Tensor:
        kwargs: dict[str, Any] = {
            "steps": self.steps,
            "generator": step.generator,
            "seed": None,
            "early_stop": False,
        }
        if self.step_size is not None:
            kwargs["step_size"] = self.step_size
        return self.attack(step.module, x, y, self.threat, **kwargs).x_adv.detach()

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x_adv = self.adversarial_batch(x, y, step)
        logits = model(x_adv)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "adv_acc": (logits.argmax(1) == y).float().mean().item()}

    def settings(self) -> dict[str, Any]:
        return {
            "threat": self.threat_name,
            "eps": self.eps,
            "attack": self.attack_name,
            "steps": self.steps,
            "step_size": self.step_size,
        }
