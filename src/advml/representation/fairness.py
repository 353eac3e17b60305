r"""Adversarially fair representations (Edwards & Storkey 2015, "Censoring Representations with
an Adversary", ICLR 2016; Madras, Creager, Pitassi & Zemel 2018, "Learning Adversarially Fair and
Transferable Representations" (LAFTR), ICML; Zhang, Lemoine & Mitchell 2018, "Mitigating
Unwanted Biases with Adversarial Learning", AIES).

An encoder :math:`f` maps inputs to codes :math:`z = f(x)`, a task head :math:`g` predicts the
label from :math:`z`, and an adversary :math:`h` predicts the sensitive attribute :math:`a`. The
game (LAFTR eq. 1, with a cross-entropy adversary as in Edwards & Storkey eq. 2):

.. math::  \min_{f, g} \max_h \; L_{task}(g(f(x)), y) - w \, L_{adv}(h(\cdot), a)

* **demographic parity** (``objective="dp"``): the adversary sees :math:`z` only;
* **equalized odds** (``objective="eo"``): the adversary sees :math:`z` and the label
  :math:`y` (LAFTR §3; Zhang et al. §4), so only information about :math:`a` *beyond* :math:`y`
  is penalised.

The adversary's loss is group-normalized (each group -- values of :math:`a`, or of
:math:`(a, y)` for equalized odds -- weighs equally; LAFTR §4 motivates this normalization), so
the majority group cannot be predicted for free. A gradient reversal layer (scale ``w``) between
the encoder and the adversary makes the game one loss for the trainer's one optimizer: the
adversary descends :math:`L_{adv}`, the encoder ascends :math:`w L_{adv}`. With ``w = 0`` the
adversary still trains but the encoder ignores it (the unconstrained baseline).

The trainer batches ``(x, y)`` only, so the recipe takes the sensitive attribute packed into
the label: ``y_joint = y + 2 * a`` (:func:`pack_labels`); validation labels stay plain.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError
from advml.representation.grl import grad_reverse
from advml.training.recipe import Recipe, StepInfo, register_recipe

OBJECTIVES: tuple[str, ...] = ("dp", "eo")


def pack_labels(y: torch.Tensor, sensitive: torch.Tensor) -> torch.Tensor:
    """Joint labels ``y + 2 * a`` that carry the binary sensitive attribute through the
    trainer's ``(x, y)`` batches."""
    if y.shape != sensitive.shape:
        raise UserError(f"labels {tuple(y.shape)} and attribute {tuple(sensitive.shape)} differ")
    return y.long() + 2 * sensitive.long()


def unpack_labels(joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, a)`` from :func:`pack_labels`'s joint labels."""
    return joint % 2, joint // 2


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FairNet(nn.Module):
    """Encoder, task head and adversary for tabular inputs.

    Args:
        features: input width.
        code: width of the representation :math:`z`.
        hidden: hidden width of the encoder (one hidden layer) and of the adversary.
        objective: ``"dp"`` (adversary sees z) or ``"eo"`` (adversary sees z and y).

    ``forward(x)`` returns two task logits; ``forward(x, adversary_scale=w, y=y)`` also returns
    the adversary's logit of :math:`a = 1` behind the gradient reversal layer.
    """

    def __init__(
        self, features: int, *, code: int = 16, hidden: int = 64, objective: str = "dp"
    ) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise UserError(f"unknown fairness objective {objective!r}; use 'dp' or 'eo'")
        if features < 1 or code < 1 or hidden < 1:
            raise UserError("FairNet needs features, code and hidden >= 1")
        self.objective = objective
        self.encoder = nn.Sequential(_mlp([features, hidden, code]), nn.ReLU())
        self.task = _mlp([code, hidden, 2])
        self.adversary = _mlp([code + (1 if objective == "eo" else 0), hidden, 1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The representation :math:`z = f(x)`."""
        return self.encoder(x)

    def adversary_logit(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Adversary :math:`h` on codes (and labels for ``"eo"``): logit of :math:`a = 1`."""
        if self.objective == "eo":
            if y is None:
                raise UserError("the equalized-odds adversary needs the labels y")
            z = torch.cat([z, y.to(z.dtype).unsqueeze(1)], 1)
        return self.adversary(z).squeeze(1)

    def forward(
        self,
        x: torch.Tensor,
        adversary_scale: float | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        logits = self.task(z)
        if adversary_scale is None:
            return logits
        return logits, self.adversary_logit(grad_reverse(z, adversary_scale), y)


def group_normalized_bce(
    logit: torch.Tensor, target: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy averaged within each group, then over the groups present."""
    losses = F.binary_cross_entropy_with_logits(logit, target.to(logit.dtype), reduction="none")
    counts = torch.bincount(groups, minlength=int(groups.max()) + 1).to(logit.dtype)
    sums = torch.zeros_like(counts).index_add_(0, groups, losses)
    present = counts > 0
    return (sums[present] / counts[present]).mean()


@register_recipe("fair")
class FairRecipe(Recipe):
    """The adversarial fairness game (see the module docstring) on joint labels
    ``y + 2 * a``.

    Args:
        adversary_weight: ``w``, the scale of the reversed adversary gradient into the encoder.
        objective: ``"dp"`` or ``"eo"``; must match the model's.
    """

    def __init__(self, adversary_weight: float = 1.0, objective: str = "dp") -> None:
        if not adversary_weight >= 0:
            raise UserError(f"adversary weight must be >= 0, got {adversary_weight}")
        if objective not in OBJECTIVES:
            raise UserError(f"unknown fairness objective {objective!r}; use 'dp' or 'eo'")
        self.adversary_weight = float(adversary_weight)
        self.objective = objective

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if bool((y < 0).any()) or bool((y > 3).any()):
            raise UserError("the fair recipe needs joint labels y + 2*a in 0..3 (pack_labels)")
        label, sensitive = unpack_labels(y)
        logits, adversary = model(x, adversary_scale=self.adversary_weight, y=label)
        task = F.cross_entropy(logits, label)
        groups = sensitive if self.objective == "dp" else 2 * sensitive + label
        adversary_loss = group_normalized_bce(adversary, sensitive, groups)
        loss = task + adversary_loss
        with torch.no_grad():
            accuracy = (logits.argmax(1) == label).float().mean()
            adversary_accuracy = ((adversary > 0).long() == sensitive).float().mean()
        return loss, {
            "loss": loss.item(),
            "task": task.item(),
            "adversary_loss": adversary_loss.item(),
            "acc": accuracy.item(),
            "adversary_acc": adversary_accuracy.item(),
        }

    def settings(self) -> dict[str, Any]:
        return {"adversary_weight": self.adversary_weight, "objective": self.objective}
