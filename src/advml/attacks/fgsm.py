r"""Fast gradient sign method and its other-norm form (Goodfellow, Shlens & Szegedy 2015,
"Explaining and Harnessing Adversarial Examples", ICLR).

One step of size :math:`\varepsilon` along the threat's steepest-ascent direction of the loss
:math:`J` (cross-entropy by default), projected on the threat model:

.. math::  x' = \Pi_{S(x)}\big(x + \varepsilon \, \mathrm{sign}(\nabla_x J(x, y))\big)
           \quad (L_\infty)

For targeted attacks the objective is :math:`-J(x, t)`, i.e. a step *down* the loss of the
target. ``fgm`` uses the threat's ascent direction instead of the sign: ``grad/||grad||_2``
for L2, the sparse top-k sign direction for L1. With ``random_start=True`` the step starts
from a uniform point of the ball and has size ``1.25 eps`` (FGSM-RS, Wong et al. 2020).
The clean input competes as an iterate: a sample already misclassified stays a success.
"""

from __future__ import annotations

from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, frozen_eval
from advml.attacks.iterative import run_iterative, step_sizes
from advml.attacks.losses import Loss, objective
from advml.attacks.registry import register
from advml.attacks.rng import make_rng
from advml.threats import ThreatModel

__all__ = ["fgm", "fgsm"]

_PAPER = "Goodfellow, Shlens & Szegedy 2015, Explaining and Harnessing Adversarial Examples"


def _fast_gradient(
    name: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    targeted: bool,
    loss: str | Loss,
    random_start: bool,
    step_size: float | Tensor | None,
    early_stop: bool,
    seed: int | None,
    generator,
) -> AttackResult:
    with frozen_eval(model):
        problem = Problem(name, model, x, y, threat, targeted, keep_clean_graph=not random_start)
        goal = objective(loss, problem.y, problem.targeted)
        step = step_sizes(problem, step_size, 1.25 if random_start else 1.0)
        rng = make_rng(problem.x, seed, generator)
        x_adv = run_iterative(
            problem,
            goal,
            steps=1,
            step=step,
            random_start=random_start,
            restarts=1,
            rng=rng,
            early_stop=early_stop,
        )
        return problem.finish(x_adv, goal)


@register(
    "fgsm",
    norms=("linf",),
    targeted=True,
    paper=_PAPER,
    defaults="step = eps, loss = ce",
)
def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    loss: str | Loss = "ce",
    random_start: bool = False,
    step_size: float | Tensor | None = None,
    early_stop: bool = True,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """FGSM: ``x + eps * sign(grad)`` projected on the L∞ threat.

    Args:
        loss: ``"ce"`` (default), ``"margin"``, ``"dlr"`` or a callable
            ``(logits, labels, targeted)``.
        random_start: start from a uniform point of the ball (FGSM-RS) with step ``1.25 eps``.
        step_size: absolute step (float or per-sample); default ``eps`` (``1.25 eps`` with a
            random start).
        early_stop: leave samples already misclassified at the clean input (set ``False`` to
            perturb every sample, e.g. for adversarial training).
        seed, generator: randomness of the random start (see :func:`advml.attacks.rng.make_rng`).
    """
    return _fast_gradient(
        "fgsm",
        model,
        x,
        y,
        threat,
        targeted,
        loss,
        random_start,
        step_size,
        early_stop,
        seed,
        generator,
    )


@register(
    "fgm",
    norms=("linf", "l2", "l1"),
    targeted=True,
    paper=_PAPER,
    defaults="step = eps, loss = ce",
)
def fgm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    loss: str | Loss = "ce",
    random_start: bool = False,
    step_size: float | Tensor | None = None,
    early_stop: bool = True,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """Fast gradient method: one step of size eps along ``threat.ascent_direction(grad)``.

    Same arguments as :func:`fgsm`; works for L∞ (equals FGSM), L2 and L1.
    """
    return _fast_gradient(
        "fgm",
        model,
        x,
        y,
        threat,
        targeted,
        loss,
        random_start,
        step_size,
        early_stop,
        seed,
        generator,
    )
