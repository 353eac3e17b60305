r"""Basic iterative method and iterative least-likely class (Kurakin, Goodfellow & Bengio 2017,
"Adversarial examples in the physical world", ICLR workshop; arXiv 2016).

BIM repeats a small fast-gradient step and projects after each one:

.. math::  x_0 = x, \qquad x_{t+1} = \Pi_{S(x)}\big(x_t + \alpha\, d(\nabla_x J(x_t, y))\big)

(:math:`d` = sign for L∞, the threat's ascent direction otherwise). ILLC targets the class the
clean model finds least likely, :math:`y_{LL} = \arg\min_j z_j(x)`, descending its
cross-entropy; it succeeds when the input is misclassified (reaching :math:`y_{LL}` is the
means, not the criterion). Defaults: 10 steps of ``alpha = eps/8`` (the paper's
``min(eps + 4, 1.25 eps)`` steps of 1/255 are tied to 8-bit pixels; 10 steps of eps/8 reach
the boundary with room to spare).
"""

from __future__ import annotations

from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, frozen_eval
from advml.attacks.iterative import check_positive_int, run_iterative, step_sizes
from advml.attacks.losses import Loss, get_loss, objective
from advml.attacks.registry import register
from advml.attacks.rng import make_rng
from advml.threats import ThreatModel

__all__ = ["bim", "illc"]

_PAPER = "Kurakin, Goodfellow & Bengio 2017, Adversarial Examples in the Physical World"


@register(
    "bim",
    norms=("linf", "l2", "l1"),
    targeted=True,
    paper=_PAPER,
    defaults="steps = 10, step = eps/8, loss = ce",
)
def bim(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    steps: int = 10,
    step_size: float | Tensor | None = None,
    loss: str | Loss = "ce",
    early_stop: bool = True,
) -> AttackResult:
    """BIM (I-FGSM): ``steps`` projected steps of ``step_size`` (default ``eps/8``) from ``x``.

    Deterministic (no random start). Returns the best iterate per sample.
    """
    check_positive_int(steps, "steps")
    with frozen_eval(model):
        problem = Problem("bim", model, x, y, threat, targeted, keep_clean_graph=True)
        goal = objective(loss, problem.y, problem.targeted)
        step = step_sizes(problem, step_size, 1.0 / 8.0)
        x_adv = run_iterative(
            problem,
            goal,
            steps=steps,
            step=step,
            random_start=False,
            restarts=1,
            rng=make_rng(problem.x, None, None),
            early_stop=early_stop,
        )
        return problem.finish(x_adv, goal)


@register(
    "illc",
    norms=("linf", "l2", "l1"),
    targeted=False,
    paper=_PAPER,
    defaults="steps = 10, step = eps/8, target = least-likely clean class",
)
def illc(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    steps: int = 10,
    step_size: float | Tensor | None = None,
    loss: str | Loss = "ce",
    early_stop: bool = True,
) -> AttackResult:
    """Iterative least-likely class: BIM towards ``argmin`` of the clean logits.

    ``y`` holds the true labels; success means misclassification. ``result.loss`` is the
    targeted objective towards the least-likely class.
    """
    check_positive_int(steps, "steps")
    fn = get_loss(loss)
    with frozen_eval(model):
        problem = Problem("illc", model, x, y, threat, targeted, keep_clean_graph=True)
        least = problem.clean_logits.argmin(dim=1) if problem.n else problem.y

        def goal(logits: Tensor, sid: Tensor) -> Tensor:
            return fn(logits, least[sid], True)

        step = step_sizes(problem, step_size, 1.0 / 8.0)
        x_adv = run_iterative(
            problem,
            goal,
            steps=steps,
            step=step,
            random_start=False,
            restarts=1,
            rng=make_rng(problem.x, None, None),
            early_stop=early_stop,
        )
        return problem.finish(x_adv, goal)
