r"""Domain-adversarial neural networks (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation
by Backpropagation", ICML; Ganin et al. 2016, "Domain-Adversarial Training of Neural Networks",
JMLR 17).

Three parts: a feature extractor :math:`G_f(\cdot;\theta_f)`, a label predictor
:math:`G_y(\cdot;\theta_y)` and a domain classifier :math:`G_d(\cdot;\theta_d)`. DANN seeks the
saddle point of (eq. 1 of the ICML paper)

.. math::  E(\theta_f,\theta_y,\theta_d) = \sum_{i \in S} L_y^i(\theta_f,\theta_y)
           - \lambda \sum_{i \in S \cup T} L_d^i(\theta_f,\theta_d),

minimized over :math:`(\theta_f,\theta_y)` and maximized over :math:`\theta_d`. With the
gradient reversal layer :math:`R_\lambda` between :math:`G_f` and :math:`G_d` (eqs. 7–9) the
saddle point is a stationary point of the single loss
:math:`\sum_S L_y + \sum_{S\cup T} L_d(G_d(R_\lambda(G_f(x))))`, so the trainer's one optimizer
plays both players: :math:`\theta_d` descends :math:`L_d`, :math:`\theta_f` ascends it scaled by
:math:`\lambda_p` (:func:`~advml.representation.grl.grl_lambda`).

:class:`DANNNet` is the paper's MNIST→MNIST-M architecture (JMLR appendix / ICML Fig. 4 small
nets): conv 5x5x32 - ReLU - max-pool 2 - conv 5x5x48 - ReLU - max-pool 2 as features; label
predictor FC 100 - FC 100 - FC 10; domain classifier FC 100 - FC 1 (binary: source 0, target 1).
Its ``forward(x)`` returns class logits, so the adapted network is an ordinary advml model
(evaluation, attacks, checkpoints); ``forward(x, domain_lambda=lam)`` also returns the domain
logit behind :math:`R_\lambda` (keyword arguments pass through ``DistributedDataParallel``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError
from advml.models import Normalize, register
from advml.representation.grl import grad_reverse, grl_lambda
from advml.training.recipe import Recipe, StepInfo, register_recipe


class DANNNet(nn.Module):
    """Feature extractor, label predictor and domain classifier of Ganin & Lempitsky (2015).

    Args:
        input_shape: ``(C, H, W)`` of the images (both domains share it), H, W >= 16.
        num_classes: number of labels.
        channels: output channels of the two 5x5 convolutions (paper: 32, 48).
        hidden: width of the label predictor's two hidden layers (paper: 100).
        domain_hidden: width of the domain classifier's hidden layer (paper: 100).
        norm_mean, norm_std: one ``Normalize`` for all channels and both domains (a model
            cannot know the domain of a test input).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        channels: Sequence[int] = (32, 48),
        hidden: int = 100,
        domain_hidden: int = 100,
        norm_mean: float = 0.5,
        norm_std: float = 0.5,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(input_shape[1:]) < 16:
            raise UserError(
                f"DANN needs (C, H, W) images of at least 16x16, got input shape "
                f"{tuple(input_shape)}"
            )
        c1, c2 = (int(c) for c in channels)
        self.normalize = Normalize([norm_mean] * input_shape[0], [norm_std] * input_shape[0])
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], c1, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            width = self.features(torch.zeros(1, *input_shape)).shape[1]
        self.classifier = nn.Sequential(
            nn.Linear(width, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        self.domain = nn.Sequential(
            nn.Linear(width, domain_hidden), nn.ReLU(), nn.Linear(domain_hidden, 1)
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features :math:`G_f(x)` (flattened)."""
        return self.features(self.normalize(x))

    def forward(
        self, x: torch.Tensor, domain_lambda: float | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.embed(x)
        logits = self.classifier(features)
        if domain_lambda is None:
            return logits
        return logits, self.domain(grad_reverse(features, domain_lambda)).squeeze(1)

    @torch.no_grad()
    def domain_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Domain classifier logit :math:`G_d(G_f(x))` (positive: target)."""
        return self.domain(self.embed(x)).squeeze(1)


@register(
    "dann-digits",
    paper="Ganin & Lempitsky 2015, 'Unsupervised Domain Adaptation by Backpropagation', ICML "
    "(MNIST->MNIST-M architecture)",
)
def dann_digits(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    channels: tuple[int, int] = (32, 48),
    hidden: int = 100,
    domain_hidden: int = 100,
    norm_mean: float = 0.5,
    norm_std: float = 0.5,
) -> nn.Module:
    """DANN digits net: 2 conv features, 3-layer label predictor, 2-layer domain classifier."""
    return DANNNet(
        input_shape,
        num_classes,
        channels=channels,
        hidden=hidden,
        domain_hidden=domain_hidden,
        norm_mean=norm_mean,
        norm_std=norm_std,
    )


@register_recipe("dann")
class DANN(Recipe):
    """The DANN game on the trainer's labeled source batches and unlabeled target images.

    Each step draws ``target_batch`` target images (default: as many as the source batch) with
    replacement from ``target`` using the step's generator, and minimizes
    ``CE(source) + domain_weight * BCE(domain)``, both means over their batch, where the domain
    logits come through the gradient reversal layer with
    :math:`\\lambda = \\lambda_{max} \\lambda_p` (``gamma = 10``). With equal batches this is
    Ganin et al. (2016, JMLR eq. 18) with the domain term halved (``domain_weight = 2`` gives
    eq. 18 exactly); the halved weight trained better in our short MNIST→MNIST-M runs.
    The model must accept ``model(x, domain_lambda=lam) -> (logits, domain_logits)``
    (:class:`DANNNet`).

    Args:
        target: unlabeled target-domain inputs, same shape as the source inputs.
        domain_weight: weight of the domain loss (1 in the paper).
        gamma: steepness of the :math:`\\lambda_p` schedule (10 in the paper).
        lambda_max: final adaptation factor (1 in the paper).
        target_batch: target images per step.
    """

    def __init__(
        self,
        target: torch.Tensor | None = None,
        *,
        domain_weight: float = 1.0,
        gamma: float = 10.0,
        lambda_max: float = 1.0,
        target_batch: int | None = None,
    ) -> None:
        if target is None or not isinstance(target, torch.Tensor) or target.shape[0] == 0:
            raise UserError("the dann recipe needs unlabeled target inputs: DANN(target=x_target)")
        if domain_weight < 0 or gamma < 0 or lambda_max < 0:
            raise UserError("dann needs domain_weight, gamma and lambda_max >= 0")
        if target_batch is not None and target_batch < 1:
            raise UserError(f"dann: target_batch must be >= 1, got {target_batch}")
        self.target = target
        self.domain_weight, self.gamma = float(domain_weight), float(gamma)
        self.lambda_max = float(lambda_max)
        self.target_batch = target_batch

    def adaptation_factor(self, progress: float) -> float:
        """:math:`\\lambda_{max} \\lambda_p` at training progress ``progress``."""
        return self.lambda_max * grl_lambda(progress, self.gamma)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if tuple(self.target.shape[1:]) != tuple(x.shape[1:]):
            raise UserError(
                f"dann: target inputs have shape {tuple(self.target.shape[1:])}, source inputs "
                f"{tuple(x.shape[1:])}; resize/convert one domain to match"
            )
        n_source = x.shape[0]
        n_target = self.target_batch or n_source
        pick = torch.randint(
            0,
            self.target.shape[0],
            (n_target,),
            generator=step.generator,
            device=step.generator.device,
        )
        x_target = self.target[pick.to(self.target.device)].to(x.device)
        lam = self.adaptation_factor(step.progress)
        logits, domain_logits = model(torch.cat([x, x_target]), domain_lambda=lam)
        ce = F.cross_entropy(logits[:n_source], y)
        domain_labels = torch.cat([x.new_zeros(n_source), x.new_ones(n_target)])
        # mean over the concatenated batch: half of JMLR eq. 18 (source mean + target mean)
        # when both batches have the same size; domain_weight=2 recovers eq. 18
        domain_loss = F.binary_cross_entropy_with_logits(domain_logits, domain_labels)
        loss = ce + self.domain_weight * domain_loss
        with torch.no_grad():
            accuracy = (logits[:n_source].argmax(1) == y).float().mean()
            domain_accuracy = ((domain_logits > 0).float() == domain_labels).float().mean()
        return loss, {
            "loss": loss.item(),
            "ce": ce.item(),
            "domain_loss": domain_loss.item(),
            "acc": accuracy.item(),
            "domain_acc": domain_accuracy.item(),
            "lambda": lam,
        }

    def settings(self) -> dict[str, Any]:
        return {
            "domain_weight": self.domain_weight,
            "gamma": self.gamma,
            "lambda_max": self.lambda_max,
            "target_batch": self.target_batch,
            "target_samples": int(self.target.shape[0]),
        }
