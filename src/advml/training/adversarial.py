r"""Adversarial training as a minimax game (Madry et al. 2018, "Towards Deep Learning Models
Resistant to Adversarial Attacks", eq. 2.1):

.. math::  \min_\theta\; \mathbb{E}_{(x,y)}\Big[\max_{\delta \in S} J(\theta, x + \delta, y)\Big]

The inner maximization is approximately solved by an attack from :mod:`advml.attacks` (PGD by
default, run on the unwrapped model in eval mode so batch-norm statistics are not polluted by
adversarial batches); the outer minimization is the trainer's optimizer step on the
cross-entropy of the adversarial batch.

**ε warm-up.** Every recipe here takes ``eps_warmup``, a fraction of training over which the
budget ramps linearly from 0 to ``eps`` (a pure function of progress, so resume stays exact);
the attack's step size scales with it. From ε = 0.3 at the first step, PGD training of a fresh
MNIST CNN can stay at chance (the adversary wins before the network has learned anything);
Gowal et al. 2018 ramp ε for the same reason. During the warm-up a batch with ε = 0 is the
clean batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advml.errors import UserError
from advml.training.recipe import Recipe, StepInfo, register_recipe
from advml.training.schedules import ramp


def check_warmup(eps_warmup: float) -> float:
    """A valid ``eps_warmup`` fraction in [0, 1), else a UserError."""
    if not 0.0 <= eps_warmup < 1.0:
        raise UserError(f"eps_warmup is a fraction of training in [0, 1), got {eps_warmup}")
    return float(eps_warmup)


class EpsWarmup:
    """ε of an adversarial recipe at a training step: ``eps * ramp(progress, 0, eps_warmup)``.

    Subclasses set ``eps``, ``eps_warmup`` and ``threat`` (the threat model at full ε).
    """

    eps: float
    eps_warmup: float = 0.0
    threat: Any

    def eps_factor(self, step: StepInfo) -> float:
        """Fraction of the full budget at this step (1 once the warm-up is over)."""
        return ramp(step.progress, 0.0, self.eps_warmup) if self.eps_warmup > 0 else 1.0

    def threat_at(self, step: StepInfo) -> Any:
        """The threat model with this step's budget (the full one after the warm-up)."""
        factor = self.eps_factor(step)
        return self.threat if factor == 1.0 else self.threat.with_eps(self.eps * factor)


@register_recipe("pgd")
class PGDTraining(EpsWarmup, Recipe):
    """PGD adversarial training (Madry et al. 2018).

    Args:
        threat: ``linf``, ``l2`` or ``l1``.
        eps: budget of the threat model during training.
        attack: registry name of the inner maximizer (default ``pgd``).
        steps: attack iterations (Madry et al. use 40 on MNIST, 7 on CIFAR-10).
        step_size: attack step; default ``2.5 * eps / steps``.
        eps_warmup: fraction of training over which ε ramps linearly from 0 (default 0).
    """

    def __init__(
        self,
        threat: str = "linf",
        eps: float = 0.3,
        attack: str = "pgd",
        steps: int = 10,
        step_size: float | None = None,
        eps_warmup: float = 0.0,
    ) -> None:
        if not eps > 0:
            raise UserError(f"adversarial training needs eps > 0, got {eps}")
        self.threat_name, self.eps, self.attack_name = threat, float(eps), attack
        self.steps, self.step_size = int(steps), step_size
        self.eps_warmup = check_warmup(eps_warmup)
        from advml import attacks, threats

        self.threat = threats.make(threat, eps)

        self.attack = attacks.get(attack)

    def step_size_at(self, step: StepInfo) -> float:
        """The attack step at this step's ε (the default or given step size, scaled)."""
        full = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        return full * self.eps_factor(step)

    def adversarial_batch(self, x: torch.Tensor, y: torch.Tensor, step: StepInfo) -> torch.Tensor:
        if self.eps_factor(step) == 0.0:
            return x
        kwargs: dict[str, Any] = {"steps": self.steps, "seed": step.seed, "early_stop": False}
        if self.step_size is not None:  # else the attack's default, relative to this step's ε
            kwargs["step_size"] = self.step_size_at(step)
        return self.attack(step.module, x, y, self.threat_at(step), **kwargs).x_adv.detach()

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
            "eps_warmup": self.eps_warmup,
        }


@register_recipe("fgsm")
class FGSMMixture(EpsWarmup, Recipe):
    r"""FGSM adversarial training (Goodfellow, Shlens & Szegedy 2015, §6, eq. 2):

    .. math::  \tilde J(\theta, x, y) = \alpha J(\theta, x, y)
               + (1 - \alpha) J(\theta, x + \epsilon\,\mathrm{sign}(\nabla_x J(\theta, x, y)), y)

    The paper uses α = 0.5 and ε = 0.25 on MNIST. α = 1 is standard training.
    """

    def __init__(
        self, threat: str = "linf", eps: float = 0.25, alpha: float = 0.5, eps_warmup: float = 0.0
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise UserError(f"fgsm recipe: alpha must be in [0, 1], got {alpha}")
        if not eps > 0:
            raise UserError(f"adversarial training needs eps > 0, got {eps}")
        from advml import attacks, threats

        self.threat_name, self.eps, self.alpha = threat, float(eps), float(alpha)
        self.eps_warmup = check_warmup(eps_warmup)
        self.threat = threats.make(threat, eps)
        self.attack = attacks.get("fgm")

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        clean_logits = model(x)
        clean = F.cross_entropy(clean_logits, y)
        metrics = {
            "clean_loss": clean.item(),
            "acc": (clean_logits.argmax(1) == y).float().mean().item(),
        }
        if self.alpha == 1.0 or self.eps_factor(step) == 0.0:
            return clean, {"loss": clean.item(), **metrics}
        x_adv = self.attack(
            step.module, x, y, self.threat_at(step), early_stop=False, seed=step.seed
        ).x_adv.detach()
        adv_logits = model(x_adv)
        adversarial = F.cross_entropy(adv_logits, y)
        loss = self.alpha * clean + (1.0 - self.alpha) * adversarial
        metrics["adv_acc"] = (adv_logits.argmax(1) == y).float().mean().item()
        return loss, {"loss": loss.item(), **metrics}

    def settings(self) -> dict[str, Any]:
        return {
            "threat": self.threat_name,
            "eps": self.eps,
            "alpha": self.alpha,
            "eps_warmup": self.eps_warmup,
        }


@register_recipe("fgsm-rs")
class FGSMRandomStart(PGDTraining):
    r"""Fast adversarial training: FGSM from a random start (Wong, Rice & Kolter 2020, Alg. 3):

    .. math::  \delta_0 \sim U(-\epsilon, \epsilon)^d, \quad
               \delta = \Pi_{\epsilon,\,\mathrm{box}}\big(\delta_0 + \alpha\,\mathrm{sign}(
               \nabla_\delta J(\theta, x + \delta_0, y))\big), \quad
               \min_\theta J(\theta, x + \delta, y)

    α = 1.25 ε by default (the paper's choice; on MNIST it uses ε = 0.3, α = 0.375). Pair it
    with the trainer's ``cyclic`` schedule as the paper does. L∞ only.

    As in the paper's code, the gradient is taken at ``x + δ₀`` *before* clipping to the input
    box (``clip_start=False``); only the training input ``x + δ`` is projected onto ball ∩ box.
    This matters: on MNIST (ε = 0.3, wong-mnist, 10 epochs) a start clipped to the box (most
    pixels are 0, so half of δ₀ is cut away) left PGD-10 accuracy at 1-4 % after two epochs
    where the paper's start gave 15-23 % and 86 % by epoch 6 (diagnosis runs of 2026-11-26,
    docs/training.md). ``clip_start=True`` gives the clipped start.
    The start δ₀ is keyed on each sample's contents and the step's seed, as the attacks'
    randomness is, so DDP shards reproduce the single-process batch.
    """

    def __init__(
        self,
        threat: str = "linf",
        eps: float = 0.3,
        step_size: float | None = None,
        steps: int = 1,
        eps_warmup: float = 0.0,
        clip_start: bool = False,
    ) -> None:
        if steps != 1:
            raise UserError("fgsm-rs takes exactly one gradient step; drop --attack-steps")
        if threat != "linf":
            raise UserError(f"fgsm-rs is an L∞ method (sign steps); got --threat {threat}")
        super().__init__(
            threat=threat,
            eps=eps,
            attack="fgsm",
            steps=1,
            step_size=step_size if step_size is not None else 1.25 * eps,
            eps_warmup=eps_warmup,
        )
        self.clip_start = bool(clip_start)

    def adversarial_batch(self, x: torch.Tensor, y: torch.Tensor, step: StepInfo) -> torch.Tensor:
        from advml.attacks import frozen_eval
        from advml.attacks.rng import KeyedRNG

        if self.eps_factor(step) == 0.0:
            return x
        threat, alpha = self.threat_at(step), self.step_size_at(step)
        eps = float(threat.eps)
        rows = torch.arange(x.shape[0], device=x.device)
        u = (
            KeyedRNG.for_inputs(x, step.seed)
            .rows(rows)
            .uniform(tuple(x.shape), dtype=x.dtype, device=x.device)
        )
        delta = (2.0 * u - 1.0) * eps
        if self.clip_start:
            delta = threat.project(x + delta, x) - x
        module = step.module
        with frozen_eval(module), torch.enable_grad():
            delta.requires_grad_(True)
            loss = F.cross_entropy(module(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
        return threat.project(x + delta.detach() + alpha * grad.sign(), x).detach()

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "clip_start": self.clip_start}


def _kl_rows(log_p_clean: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(p_clean || softmax(logits))."""
    return F.kl_div(F.log_softmax(logits, 1), log_p_clean, log_target=True, reduction="none").sum(1)


@register_recipe("trades")
class TRADES(PGDTraining):
    r"""TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and
    Accuracy", eq. 5):

    .. math::  \min_\theta\; \mathrm{CE}(f_\theta(x), y)
               + \beta \max_{x' \in S(x)} \mathrm{KL}\big(f_\theta(x) \,\|\, f_\theta(x')\big)

    The inner maximization is PGD on the KL term from ``x + 0.001 N(0, I)`` (the paper's
    start), on the unwrapped model in eval mode. β = 6 is the paper's MNIST/CIFAR setting;
    β = 0 is standard training.
    """

    def __init__(
        self,
        threat: str = "linf",
        eps: float = 0.3,
        beta: float = 6.0,
        steps: int = 10,
        step_size: float | None = None,
        eps_warmup: float = 0.0,
    ) -> None:
        super().__init__(
            threat=threat, eps=eps, steps=steps, step_size=step_size, eps_warmup=eps_warmup
        )
        if beta < 0:
            raise UserError(f"trades: beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def adversarial_batch(self, x: torch.Tensor, y: torch.Tensor, step: StepInfo) -> torch.Tensor:
        from advml.attacks import frozen_eval

        module = step.module
        if self.eps_factor(step) == 0.0:
            return x
        alpha, threat = self.step_size_at(step), self.threat_at(step)
        with frozen_eval(module):
            with torch.no_grad():
                log_p_clean = F.log_softmax(module(x), 1)
            noise = torch.randn(x.shape, generator=step.generator, device=x.device, dtype=x.dtype)
            x_adv = threat.project(x + 0.001 * noise, x)
            for _ in range(self.steps):
                x_adv.requires_grad_(True)
                kl = _kl_rows(log_p_clean, module(x_adv)).sum()
                (grad,) = torch.autograd.grad(kl, x_adv)
                x_adv = threat.project(x_adv.detach() + alpha * threat.ascent_direction(grad), x)
        return x_adv.detach()

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(x)
        natural = F.cross_entropy(logits, y)
        metrics = {
            "acc": (logits.argmax(1) == y).float().mean().item(),
            "natural_loss": natural.item(),
        }
        if self.beta == 0.0:
            return natural, {"loss": natural.item(), **metrics}
        x_adv = self.adversarial_batch(x, y, step)
        adv_logits = model(x_adv)
        robust = _kl_rows(F.log_softmax(logits, 1), adv_logits).mean()
        loss = natural + self.beta * robust
        metrics["robust_kl"] = robust.item()
        metrics["adv_acc"] = (adv_logits.argmax(1) == y).float().mean().item()
        return loss, {"loss": loss.item(), **metrics}

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "attack": "pgd-kl", "beta": self.beta}


@register_recipe("mart")
class MART(PGDTraining):
    r"""MART (Wang et al. 2020, "Improving Adversarial Robustness Requires Revisiting
    Misclassified Examples", eq. 9):

    .. math::  \mathrm{BCE}(p(x'), y) + \lambda\, \mathrm{KL}(p(x) \| p(x'))\,(1 - p_y(x)),
    .. math::  \mathrm{BCE}(p, y) = -\log p_y - \log\big(1 - \max_{k \ne y} p_k\big)

    with ``x'`` from PGD on the cross-entropy. λ = 5 by default (the paper uses 5–6).
    """

    def __init__(
        self,
        threat: str = "linf",
        eps: float = 0.3,
        lam: float = 5.0,
        steps: int = 10,
        step_size: float | None = None,
        eps_warmup: float = 0.0,
    ) -> None:
        super().__init__(
            threat=threat, eps=eps, steps=steps, step_size=step_size, eps_warmup=eps_warmup
        )
        self.lam = float(lam)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x_adv = self.adversarial_batch(x, y, step)
        logits = model(torch.cat([x, x_adv]))
        clean_logits, adv_logits = logits[: len(x)], logits[len(x) :]
        p_adv = adv_logits.softmax(1)
        p_true_adv = p_adv.gather(1, y[:, None]).squeeze(1)
        others = p_adv.scatter(1, y[:, None], 0.0).amax(1)
        bce = (
            -torch.log(p_true_adv.clamp_min(1e-12)) - torch.log((1.0 - others).clamp_min(1e-12))
        ).mean()
        p_clean = clean_logits.softmax(1)
        p_true_clean = p_clean.gather(1, y[:, None]).squeeze(1)
        kl = _kl_rows(F.log_softmax(clean_logits, 1), adv_logits)
        loss = bce + self.lam * (kl * (1.0 - p_true_clean)).mean()
        return loss, {
            "loss": loss.item(),
            "acc": (clean_logits.argmax(1) == y).float().mean().item(),
            "adv_acc": (adv_logits.argmax(1) == y).float().mean().item(),
        }

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "lam": self.lam}


@register_recipe("free")
class FreeAT(EpsWarmup, Recipe):
    r"""Free adversarial training (Shafahi et al. 2019, "Adversarial Training for Free!",
    Alg. 1): each minibatch is replayed ``replays`` (m) times; one backward pass gives both the
    parameter gradient (used by the optimizer) and the input gradient, which updates a
    perturbation δ that persists across replays and minibatches:

    .. math::  g_\theta, g_\delta = \nabla_{\theta,\delta} J(\theta, x + \delta, y);\quad
               \theta \leftarrow \mathrm{opt}(\theta, g_\theta);\quad
               \delta \leftarrow \Pi_\epsilon\big(\delta + \epsilon\, d(g_\delta)\big)

    Train for ``epochs / m`` epochs to match the cost of standard training. δ is saved in the
    trainer's checkpoints, so resume is exact in a single process; under DDP each rank keeps its
    own δ and a resumed run restarts every rank from rank 0's.
    """

    def __init__(
        self,
        threat: str = "linf",
        eps: float = 0.3,
        replays: int = 8,
        steps: int | None = None,
        eps_warmup: float = 0.0,
    ) -> None:
        if not eps > 0:
            raise UserError(f"adversarial training needs eps > 0, got {eps}")
        if replays < 1:
            raise UserError(f"free: replays must be >= 1, got {replays}")
        from advml import threats

        self.threat_name, self.eps = threat, float(eps)
        self.replays = int(steps if steps is not None else replays)
        self.eps_warmup = check_warmup(eps_warmup)
        self.threat = threats.make(threat, eps)
        self.delta: torch.Tensor | None = None
        self._x: torch.Tensor | None = None
        self._threat = self.threat

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: StepInfo
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if self.delta is None or self.delta.shape != x.shape:
            self.delta = torch.zeros_like(x)
        self.delta = self.delta.to(x.device, x.dtype)
        self._threat = self.threat_at(step)
        x_adv = self._threat.project(x + self.delta, x)
        self._x = x
        self.delta = (x_adv - x).detach().requires_grad_(True)
        logits = model(x + self.delta)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "adv_acc": (logits.argmax(1) == y).float().mean().item()}

    def after_backward(self) -> None:
        if self.delta is None or self.delta.grad is None or self._x is None:
            return
        threat = self._threat
        step = threat.eps * threat.ascent_direction(self.delta.grad)
        x = self._x
        self.delta = (threat.project(x + self.delta.detach() + step, x) - x).detach()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.delta is None else {"delta": self.delta.detach()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.delta = tensors.get("delta")

    def settings(self) -> dict[str, Any]:
        return {
            "threat": self.threat_name,
            "eps": self.eps,
            "replays": self.replays,
            "eps_warmup": self.eps_warmup,
        }
