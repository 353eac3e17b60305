r"""Certified training with interval bound propagation (Gowal et al. 2018, eq. 8):

.. math::  L = \kappa\, \mathrm{CE}(z(x), y) + (1 - \kappa)\, \mathrm{CE}(\hat z(x, \epsilon), y),
           \qquad \hat z_j = -\underline{m}_j,\; \underline m_j \le z_y - z_j

where ``m`` are IBP lower bounds on the margins over the L∞ ball (∩ box). Schedules, as in the
paper: ``eps`` ramps linearly from 0 to ``eps * eps_train_factor`` and ``kappa`` from 1 to
``kappa_final`` between ``warmup`` and ``ramp_end`` (fractions of training), then both stay.
The bounds go through the unwrapped model, so BatchNorm must not be in the network (IBP needs
fixed statistics); use Linear/Conv/ReLU/pooling/Normalize models.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError
from advml.training.recipe import Recipe, StepInfo, register_recipe
from advml.training.schedules import ramp as linear_ramp


@register_recipe("ibp")
class IBPTraining(Recipe):
    """IBP certified training (Gowal et al. 2018).

    Args:
        eps: L∞ budget to certify.
        kappa_final: weight of the clean loss after the ramp (0.5 in the paper).
        warmup: fraction of training with eps = 0 and kappa = 1.
        ramp_end: fraction of training at which eps and kappa reach their final values.
        eps_train_factor: train at ``factor * eps`` (the paper uses 1.1 to 1.4 on MNIST).
    """

    def __init__(
        self,
        eps: float = 0.3,
        threat: str = "linf",
        kappa_final: float = 0.5,
        warmup: float = 0.05,
        ramp_end: float = 0.5,
        eps_train_factor: float = 1.0,
        steps: int | None = None,
    ) -> None:
        if threat != "linf":
            raise UserError("ibp certifies the L∞ ball; use --threat linf")
        if steps is not None:
            raise UserError("ibp has no attack steps; drop --attack-steps")
        if not eps > 0 or not 0 <= kappa_final <= 1 or not 0 <= warmup < ramp_end <= 1:
            raise UserError(
                "ibp needs eps > 0, 0 <= kappa_final <= 1 and 0 <= warmup < ramp_end <= 1"
            )
        self.eps, self.kappa_final = float(eps), float(kappa_final)
        self.warmup, self.ramp_end = float(warmup), float(ramp_end)
        self.eps_train_factor = float(eps_train_factor)

    def schedule(self, progress: float) -> tuple[float, float]:
        """``(eps_t, kappa_t)`` at ``progress`` in [0, 1]."""
        ramp = linear_ramp(progress, self.warmup, self.ramp_end)
        return (self.eps * self.eps_train_factor * ramp, 1.0 - (1.0 - self.kappa_final) * ramp)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        from advml.verification.ibp import input_box, margin_lower_bounds

        eps_t, kappa = self.schedule(step.progress)
        logits = model(x)
        fit = F.cross_entropy(logits, y)
        metrics = {
            "acc": (logits.argmax(1) == y).float().mean().item(),
            "eps": eps_t,
            "kappa": kappa,
        }
        if eps_t == 0.0:
            return fit, {"loss": fit.item(), **metrics}
        margins = margin_lower_bounds(step.module, *input_box(x, eps_t), y)
        spec = F.cross_entropy(-margins, y)
        loss = kappa * fit + (1.0 - kappa) * spec
        verified = (margins.scatter(1, y[:, None], float("inf")) > 0).all(1)
        metrics["verified_acc"] = verified.float().mean().item()
        return loss, {"loss": loss.item(), **metrics}

    def settings(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "kappa_final": self.kappa_final,
            "warmup": self.warmup,
            "ramp_end": self.ramp_end,
            "eps_train_factor": self.eps_train_factor,
        }
