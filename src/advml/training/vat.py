r"""Virtual adversarial training (Miyato, Maeda, Koyama & Ishii 2018, "Virtual Adversarial
Training: a Regularization Method for Supervised and Semi-Supervised Learning", TPAMI).

The local distributional smoothness penalty needs no labels:

.. math::  \mathrm{LDS}(x, \theta) = \mathrm{KL}\big(p(\cdot \mid x, \hat\theta) \,\|\,
           p(\cdot \mid x + r_{\mathrm{vadv}}, \theta)\big), \qquad
           r_{\mathrm{vadv}} = \epsilon\, \frac{g}{\|g\|_2},\;
           g = \nabla_r \mathrm{KL}\big(p(\cdot\mid x,\hat\theta) \,\|\, p(\cdot\mid x + r,
           \hat\theta)\big)\big|_{r = \xi d}

with ``d`` a random unit vector refined by ``power_iterations`` steps of the power method
(eq. 12–13; one step suffices in the paper). The objective is
``CE(labeled) + alpha * mean LDS(all inputs)`` (eq. 4).

Semi-supervised use: pass the labeled subset as ``labeled=(x_l, y_l)`` and train on all inputs,
with the labels of unlabeled samples set to ``-1``. Each step then draws its own labeled
minibatch of ``labeled_batch`` samples (with replacement, from the step's generator), as the
paper does (64 labeled and the trainer's batch of unlabeled inputs). Labels ``-1`` in the
trainer's batch are ignored.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError
from advml.training.recipe import Recipe, StepInfo, register_recipe


def _unit_l2(v: torch.Tensor) -> torch.Tensor:
    flat = v.flatten(1)
    return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(v)


def virtual_adversarial_direction(
    module: nn.Module,
    x: torch.Tensor,
    log_p: torch.Tensor,
    *,
    xi: float,
    power_iterations: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Unit direction of largest KL increase around ``x`` (power method, eq. 12–13)."""
    d = _unit_l2(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
    for _ in range(power_iterations):
        d = (xi * d).requires_grad_(True)
        kl = F.kl_div(
            F.log_softmax(module(x + d), 1), log_p, log_target=True, reduction="batchmean"
        )
        (grad,) = torch.autograd.grad(kl, d)
        d = _unit_l2(grad.detach())
    return d


@register_recipe("vat")
class VAT(Recipe):
    """Virtual adversarial training; semi-supervised when ``labeled`` is given.

    Args:
        eps: L2 norm of the virtual adversarial perturbation (the paper tunes it per data set).
        alpha: weight of the LDS term.
        xi: finite-difference scale of the power method (1e-6 in the paper).
        power_iterations: power-method steps (1 in the paper).
        labeled: ``(x_l, y_l)`` labeled subset for semi-supervised training.
        labeled_batch: labeled samples per step in semi-supervised training.
    """

    def __init__(
        self,
        eps: float = 2.0,
        alpha: float = 1.0,
        xi: float = 1e-6,
        power_iterations: int = 1,
        labeled: tuple[torch.Tensor, torch.Tensor] | None = None,
        labeled_batch: int = 64,
        threat: str = "l2",
        steps: int | None = None,
    ) -> None:
        if threat != "l2":
            raise UserError("vat perturbs in L2 (Miyato et al. 2018); use --threat l2")
        if steps is not None:
            raise UserError("vat has no attack steps; its power method has 1 iteration")
        if not eps > 0 or alpha < 0 or not xi > 0 or power_iterations < 1:
            raise UserError("vat needs eps > 0, alpha >= 0, xi > 0 and power_iterations >= 1")
        if labeled is not None and (labeled[0].shape[0] == 0 or (labeled[1] < 0).any()):
            raise UserError("vat: the labeled subset must be non-empty with labels >= 0")
        self.eps, self.alpha, self.xi = float(eps), float(alpha), float(xi)
        self.power_iterations = int(power_iterations)
        self.labeled, self.labeled_batch = labeled, int(labeled_batch)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if self.labeled is not None:
            x_l, y_l = self.labeled
            pick = torch.randint(
                0,
                x_l.shape[0],
                (self.labeled_batch,),
                generator=step.generator,
                device=step.generator.device,
            )
            x_l, y_l = x_l.to(x.device)[pick.to(x.device)], y_l.to(x.device)[pick.to(x.device)]
        # p(x) comes from a forward of the batch x alone, like the perturbed forwards below:
        # a batch mixed with the labeled samples would be normalized differently by batch
        # norm, and the LDS would measure that difference instead of the perturbation.
        logits_all = model(x)
        if self.labeled is not None:
            labeled_logits = model(x_l)
        else:
            x_l, y_l = x[y >= 0], y[y >= 0]
            labeled_logits = logits_all[y >= 0]
        ce = F.cross_entropy(labeled_logits, y_l) if len(x_l) else logits_all.sum() * 0.0
        log_p = F.log_softmax(logits_all.detach(), 1)
        direction = virtual_adversarial_direction(
            step.module,
            x,
            log_p,
            xi=self.xi,
            power_iterations=self.power_iterations,
            generator=step.generator,
        )
        lds = F.kl_div(
            F.log_softmax(model(x + self.eps * direction), 1),
            log_p,
            log_target=True,
            reduction="batchmean",
        )
        loss = ce + self.alpha * lds
        accuracy = (labeled_logits.argmax(1) == y_l).float().mean() if len(x_l) else ce
        return loss, {
            "loss": loss.item(),
            "ce": ce.item(),
            "lds": lds.item(),
            "acc": float(accuracy),
        }

    def settings(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "alpha": self.alpha,
            "xi": self.xi,
            "power_iterations": self.power_iterations,
            "labeled_batch": self.labeled_batch,
            "labeled": None if self.labeled is None else int(self.labeled[0].shape[0]),
        }
