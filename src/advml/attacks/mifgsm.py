r"""Momentum iterative FGSM (Dong et al. 2018, "Boosting Adversarial Attacks with Momentum",
CVPR).

Gradients are L1-normalized and accumulated with decay :math:`\mu`, and the step follows the
accumulated direction:

.. math::  g_{t+1} = \mu\, g_t + \frac{\nabla_x J(x_t, y)}{\|\nabla_x J(x_t, y)\|_1}, \qquad
           x_{t+1} = \Pi_{S(x)}\big(x_t + \alpha\, d(g_{t+1})\big)

with :math:`d` = sign for L∞ and :math:`g/\|g\|_2` for L2 (the threat's ascent direction).
Defaults from the paper: 10 steps, :math:`\mu = 1`, :math:`\alpha = \varepsilon / 10`.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, frozen_eval
from advml.attacks.iterative import check_positive_int, run_iterative, step_sizes
from advml.attacks.losses import Loss, objective
from advml.attacks.registry import register
from advml.attacks.rng import make_rng
from advml.errors import UserError
from advml.threats import ThreatModel

__all__ = ["mifgsm"]


@register(
    "mifgsm",
    norms=("linf", "l2", "l1"),
    targeted=True,
    paper="Dong et al. 2018, Boosting Adversarial Attacks with Momentum",
    defaults="steps = 10, mu = 1.0, step = eps/steps, loss = ce",
)
def mifgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    steps: int = 10,
    momentum: float = 1.0,
    step_size: float | Tensor | None = None,
    loss: str | Loss = "ce",
    early_stop: bool = True,
) -> AttackResult:
    """MI-FGSM: ``steps`` momentum steps of ``step_size`` (default ``eps/steps``) from ``x``."""
    check_positive_int(steps, "steps")
    if not (isinstance(momentum, (int, float)) and math.isfinite(momentum) and momentum >= 0):
        raise UserError(f"mifgsm: momentum must be a finite number >= 0; got {momentum!r}")
    with frozen_eval(model):
        problem = Problem("mifgsm", model, x, y, threat, targeted, keep_clean_graph=True)
        goal = objective(loss, problem.y, problem.targeted)
        step = step_sizes(problem, step_size, 1.0 / steps)
        x_adv = run_iterative(
            problem,
            goal,
            steps=steps,
            step=step,
            random_start=False,
            restarts=1,
            rng=make_rng(problem.x, None, None),
            momentum=float(momentum),
            early_stop=early_stop,
        )
        return problem.finish(x_adv, goal)
