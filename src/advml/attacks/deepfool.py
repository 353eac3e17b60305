r"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016, "DeepFool: a simple and accurate method
to fool deep neural networks", CVPR): a minimum-norm attack that linearizes the classifier.

At the current point, for each candidate class :math:`k \ne y` let
:math:`f_k = z_k - z_y` and :math:`w_k = \nabla_x f_k`. The closest linearized boundary is
:math:`l = \arg\min_k |f_k| / \|w_k\|_q` (:math:`q` dual to the threat's norm: 2 for L2, 1 for
L∞), reached by the step

.. math::  r = \frac{|f_l| + 10^{-4}}{\|w_l\|_2^2} w_l \;(L_2), \qquad
           r = \frac{|f_l| + 10^{-4}}{\|w_l\|_1} \mathrm{sign}(w_l) \;(L_\infty).

Steps accumulate, :math:`x_{i} = \Pi_{S(x)}(x + (1 + \text{overshoot}) \sum r)`, until the label
changes. Candidates are the ``candidates - 1`` most likely wrong classes at the clean point;
their gradients come from one forward and ``candidates - 1`` backward passes per step.

With a finite eps every iterate is projected onto the threat model (ball ∩ box), so this is
also a fixed-budget attack; with ``eps = inf`` it is the original minimum-norm attack (box
only) and ``result.norm`` is the perturbation found. The smallest successful iterate is
returned.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, frozen_eval, view_rows
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import margin
from advml.attacks.registry import register
from advml.errors import UserError
from advml.threats import ThreatModel

__all__ = ["deepfool"]


@register(
    "deepfool",
    norms=("l2", "linf"),
    targeted=False,
    minimum_norm=True,
    paper="Moosavi-Dezfooli, Fawzi & Frossard 2016, DeepFool",
    defaults="steps = 50, overshoot = 0.02, candidates = 10",
)
def deepfool(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    steps: int = 50,
    overshoot: float = 0.02,
    candidates: int = 10,
    early_stop: bool = True,
) -> AttackResult:
    """DeepFool for L2 and L∞ (untargeted). ``result.loss`` is the logit margin at ``x_adv``."""
    check_positive_int(steps, "steps")
    check_positive_int(candidates, "candidates", minimum=2)
    if not (isinstance(overshoot, (int, float)) and math.isfinite(overshoot) and overshoot >= 0):
        raise UserError(f"deepfool: overshoot must be a finite number >= 0; got {overshoot!r}")
    with frozen_eval(model):
        problem = Problem("deepfool", model, x, y, threat, targeted)
        labels = problem.y

        def goal(logits: Tensor, sid: Tensor) -> Tensor:
            return margin(logits, labels[sid], False)

        best = problem.start_best(goal)
        if problem.n == 0:
            return problem.finish(best.x, goal)
        best.score = torch.where(best.success, torch.zeros_like(best.score), best.score)
        k = min(candidates, problem.n_classes) - 1
        others = problem.clean_logits.scatter(1, labels.reshape(-1, 1), float("-inf"))
        classes = others.topk(k, dim=1).indices  # (N, k)

        def gaps(logits: Tensor, sid: Tensor) -> Tensor:
            own = logits.gather(1, labels[sid].reshape(-1, 1))
            return logits.gather(1, classes[sid]) - own

        sid = (~best.success if early_stop else torch.ones_like(best.success)).nonzero().squeeze(1)
        x0 = problem.x[sid]
        current = x0.clone()
        total = torch.zeros_like(x0)
        l2 = threat.name == "l2"
        for t in range(steps + 1):
            if sid.numel() == 0:
                break
            threat_rows = problem.threat_rows(sid)
            if t == steps:
                logits = problem.forward(current, sid)
            else:
                f, w, logits = problem.values_and_jacobian(current, sid, gaps)
            success = problem.succeeded(logits, sid)
            size = threat_rows.norm(current - x0)
            score = torch.where(success, -size, goal(logits, sid))
            best.update(sid, current, score, success, unique=True, logits=logits)
            if t == steps:
                break
            if early_stop:
                keep = ~best.success[sid]
                sid, x0, current, total, f, w = (
                    sid[keep],
                    x0[keep],
                    current[keep],
                    total[keep],
                    f[keep],
                    w[keep],
                )
                if sid.numel() == 0:
                    break
                threat_rows = problem.threat_rows(sid)
            flat = w.reshape(w.shape[0], w.shape[1], -1)
            dual = flat.norm(dim=2) if l2 else flat.abs().sum(dim=2)
            dist = f.abs() / dual.clamp_min(1e-12)
            pick = dist.argmin(dim=1)
            rows = torch.arange(sid.numel(), device=sid.device)
            f_l, w_l, d_l = f[rows, pick].abs(), w[rows, pick], dual[rows, pick].clamp_min(1e-12)
            if l2:
                r = view_rows((f_l + 1e-4) / d_l.square(), w_l) * w_l
            else:
                r = view_rows((f_l + 1e-4) / d_l, w_l) * w_l.sign()
            total = total + r
            current = threat_rows.project(x0 + (1.0 + overshoot) * total, x0)
        return problem.finish(best.x, goal)
