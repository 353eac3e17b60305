r"""Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR).

From a uniform random point of the threat model, ascend the loss along the threat's
steepest-ascent direction and project back:

.. math::  x_0 \sim U(S(x)), \qquad
           x_{t+1} = \Pi_{S(x)}\big(x_t + \alpha\, d(\nabla_x J(x_t, y))\big)

:math:`d` is sign for L∞, ``g/||g||_2`` for L2 and the sparse top-k sign direction for L1
(SLIDE, Tramèr & Boneh 2019), with the exact projection onto ball ∩ box. ``restarts`` random
starts run side by side on the batch dimension (``stack_restarts`` at a time); each sample
keeps its best iterate over all restarts and steps; restarts after the first run only on
samples not yet broken.

Defaults: 40 steps of ``alpha = 2.5 eps / steps`` (Madry et al.'s rule of thumb, enough to
cross the ball and come back), 1 restart, cross-entropy loss (``"margin"`` = CW, ``"dlr"``).
"""

from __future__ import annotations

from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, frozen_eval
from advml.attacks.iterative import check_positive_int, run_iterative, step_sizes
from advml.attacks.losses import Loss, objective
from advml.attacks.registry import register
from advml.attacks.rng import make_rng
from advml.threats import ThreatModel

__all__ = ["pgd"]


@register(
    "pgd",
    norms=("linf", "l2", "l1"),
    targeted=True,
    paper="Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks",
    defaults="steps = 40, step = 2.5 eps/steps, restarts = 1, random start, loss = ce",
)
def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    steps: int = 40,
    step_size: float | Tensor | None = None,
    restarts: int = 1,
    random_start: bool = True,
    loss: str | Loss = "ce",
    early_stop: bool = True,
    stack_restarts: int | None = None,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """PGD with random starts and best-iterate tracking.

    Args:
        steps: gradient steps per restart.
        step_size: absolute step (float or per-sample); default ``2.5 * eps / steps``.
        restarts: random restarts (ignored, i.e. 1, when ``random_start=False``).
        random_start: start from a uniform point of the ball ∩ box (``False``: from ``x``).
        loss: ``"ce"``, ``"margin"`` (CW), ``"dlr"`` or a callable ``(logits, labels, targeted)``.
        early_stop: stop attacking a sample once it succeeds (``False``: run every step on
            every sample and return the highest-loss iterate among the best, e.g. for training).
        stack_restarts: how many restarts share one batch (default: all).
        seed: random starts keyed per sample: identical whatever the batching (default 0);
            ``None`` with ``generator=None`` uses torch's global generator.
        generator: a ``torch.Generator`` instead of ``seed`` (reproducible for the same batch).
    """
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    with frozen_eval(model):
        problem = Problem("pgd", model, x, y, threat, targeted, keep_clean_graph=not random_start)
        goal = objective(loss, problem.y, problem.targeted)
        step = step_sizes(problem, step_size, 2.5 / steps)
        rng = make_rng(problem.x, seed, generator)
        x_adv = run_iterative(
            problem,
            goal,
            steps=steps,
            step=step,
            random_start=random_start,
            restarts=restarts,
            rng=rng,
            early_stop=early_stop,
            stack_restarts=stack_restarts,
        )
        return problem.finish(x_adv, goal)
