r"""Jacobian-based saliency map attack (Papernot, McDaniel, Jha, Fredrikson, Celik & Swami 2016,
"The Limitations of Deep Learning in Adversarial Settings", IEEE EuroS&P): a targeted attack that
changes few features, two at a time, chosen by a saliency map over pairs.

At the current input, with :math:`a = \nabla_x Z_t` (the target's logit) and :math:`b =
\nabla_x \sum_{j \ne t} Z_j` (the other logits), for every pair :math:`p \ne q` of the search
domain :math:`\Gamma`

.. math::
    \alpha_{pq} = \theta' (a_p + a_q), \qquad \beta_{pq} = \theta' (b_p + b_q), \qquad
    (p^*, q^*) = \arg\max_{\alpha_{pq} > 0,\ \beta_{pq} < 0} \; \alpha_{pq} \cdot |\beta_{pq}|

(:math:`\theta' = \mathrm{sign}(\theta)`), and both features move by :math:`\theta (high -
low)`, clipped to the box. :math:`\theta = +1` (the default, the paper's MNIST setting) sets
them to ``high``; features that reach the bound leave :math:`\Gamma` (which starts as the
features that can still move in the direction of :math:`\theta`). The loop stops when the
target is reached, when ``min(k, floor(gamma * D))`` features have changed (``k`` from the
``L0(k)`` threat model, ``gamma`` the paper's maximum distortion), or when no pair is left.
Gradients are those of the logits (the paper's forward derivative of the softmax saturates).

If no pair has :math:`\alpha > 0` and :math:`\beta < 0`, the pair with the largest
:math:`\alpha - \beta` (the linearized gain of :math:`Z_t - \sum_{j \ne t} Z_j`) is taken
when that gain is positive, and the sample stops otherwise (the paper leaves the case open;
CleverHans then changes an arbitrary pair).

**Untargeted** (``targeted=False``): the target of each sample is the second most likely class
at the clean input (deterministic), and the attack stops as soon as the label changes to any
class.

**Batched pair search.** All samples advance together; the pair scores of a sample form a
``D × D`` matrix, built for ``max(1, chunk // D**2)`` samples at a time (``chunk`` = 2**22
elements by default: about 16 MB per float32 tensor, a handful alive at once; for MNIST's
D = 784 that is 6 samples per chunk, for 8x8 digits the whole batch). Each iteration costs one
forward and two backward passes (one query).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, frozen_eval
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import margin
from advml.attacks.registry import register
from advml.errors import UserError
from advml.threats import ThreatModel

__all__ = ["jsma", "pair_search"]

_PAPER = (
    "Papernot, McDaniel, Jha, Fredrikson, Celik & Swami 2016, The Limitations of Deep "
    "Learning in Adversarial Settings"
)


def pair_search(
    alpha: Tensor, beta: Tensor, domain: Tensor, new: Tensor, room: Tensor, chunk: int = 1 << 22
) -> tuple[Tensor, Tensor, Tensor]:
    """The saliency-map pair of each row.

    Args:
        alpha, beta: ``(n, D)`` per-feature derivatives of the target logit and of the sum of
            the other logits, already multiplied by ``sign(theta)``.
        domain: ``(n, D)`` bool, features that may be picked.
        new: ``(n, D)`` bool, features not changed yet (each costs one unit of ``room``).
        room: ``(n,)`` how many more features may change.

    Returns:
        ``(p, q, ok)``: the chosen features (``p != q``) and whether a pair was found, by the
        paper's rule (``alpha > 0``, ``beta < 0``, max ``alpha * |beta|``) or else the largest
        positive ``alpha - beta``.
    """
    n, d = alpha.shape
    rows_per = max(1, chunk // max(d * d, 1))
    ps, qs, oks = [], [], []
    eye = torch.eye(d, dtype=torch.bool, device=alpha.device)
    for start in range(0, n, rows_per):
        sl = slice(start, start + rows_per)
        a = alpha[sl, :, None] + alpha[sl, None, :]
        b = beta[sl, :, None] + beta[sl, None, :]
        cost = new[sl, :, None].to(torch.int64) + new[sl, None, :].to(torch.int64)
        allowed = domain[sl, :, None] & domain[sl, None, :] & ~eye
        allowed &= cost <= room[sl, None, None]
        ninf = torch.tensor(-math.inf, dtype=a.dtype, device=a.device)
        saliency = torch.where(allowed & (a > 0) & (b < 0), a * (-b), ninf).flatten(1)
        best, idx = saliency.max(dim=1)
        gain = torch.where(allowed, a - b, ninf).flatten(1)
        best_gain, idx_gain = gain.max(dim=1)
        paper = torch.isfinite(best)
        idx = torch.where(paper, idx, idx_gain)
        ok = paper | (best_gain > 0)
        ps.append(idx // d)
        qs.append(idx % d)
        oks.append(ok)
    return torch.cat(ps), torch.cat(qs), torch.cat(oks)


@register(
    "jsma",
    norms=("l0",),
    targeted=True,
    minimum_norm=True,
    paper=_PAPER,
    defaults="theta = +1, gamma = 1 (the L0 threat's k is the budget); untargeted: 2nd class",
)
def jsma(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    theta: float = 1.0,
    gamma: float = 1.0,
    chunk: int = 1 << 22,
    early_stop: bool = True,
) -> AttackResult:
    """JSMA against an ``L0(k)`` threat model; see the module docstring.

    Args:
        theta: the change of a picked feature, as a fraction of the box (``+1``: set to
            ``high``; negative values decrease features).
        gamma: maximum fraction of the features that may change (the budget is
            ``min(k, floor(gamma * D))``).
        chunk: elements per pair-score tensor (memory bound of the pair search).
        early_stop: stop a sample once it succeeds (``False``: spend the whole budget).

    ``result.loss`` is the logit margin of the target (untargeted: of the true label) at
    ``x_adv``; ``result.norm`` the number of changed features.
    """
    if not (
        isinstance(theta, (int, float))
        and not isinstance(theta, bool)
        and math.isfinite(theta)
        and 0 < abs(theta) <= 1
    ):
        raise UserError(f"jsma: theta must be in [-1, 0) or (0, 1]; got {theta!r}")
    if not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and 0 < gamma <= 1):
        raise UserError(f"jsma: gamma must be in (0, 1]; got {gamma!r}")
    check_positive_int(chunk, "chunk")
    with frozen_eval(model):
        problem = Problem("jsma", model, x, y, threat, targeted)
        labels = problem.y

        def goal(logits: Tensor, sid: Tensor) -> Tensor:
            return margin(logits, labels[sid], targeted)

        best = problem.start_best(goal)
        if problem.n == 0:
            return problem.finish(best.x, goal)
        if targeted:
            target = labels
        else:
            others = problem.clean_logits.scatter(1, labels.reshape(-1, 1), -math.inf)
            target = others.argmax(dim=1)
        low, high = threat.low, threat.high
        sign = 1.0 if theta > 0 else -1.0
        shift = theta * (high - low)
        d = problem.x[0].numel()
        budget = problem.eps.nan_to_num(posinf=d).clamp(max=d).to(torch.int64)
        budget = budget.clamp(max=math.floor(gamma * d + 1e-9))
        iterations = math.ceil(d / 2) * math.ceil(1 / abs(theta))

        def logit_pair(logits: Tensor, sid: Tensor) -> Tensor:
            own = logits.gather(1, target[sid].reshape(-1, 1))
            return torch.cat([own, logits.sum(dim=1, keepdim=True) - own], dim=1)

        todo = ~best.success if early_stop else torch.ones_like(best.success)
        sid = (todo & (budget >= 2)).nonzero().squeeze(1)
        x0 = problem.x[sid].reshape(sid.numel(), d)
        cur = x0.clone()
        domain = (cur < high) if sign > 0 else (cur > low)
        for it in range(iterations + 1):
            if sid.numel() == 0:
                break
            shaped = cur.reshape((-1, *problem.x.shape[1:]))
            last = it == iterations
            if last:
                logits = problem.forward(shaped, sid)
            else:
                _, jac, logits = problem.values_and_jacobian(shaped, sid, logit_pair)
            success = problem.succeeded(logits, sid)
            best.update(sid, shaped, goal(logits, sid), success, unique=True)
            if last:
                break
            changed = cur != x0
            room = budget[sid] - changed.sum(dim=1)
            jac = jac.reshape(sid.numel(), 2, d).to(torch.promote_types(jac.dtype, torch.float32))
            p, q, ok = pair_search(
                sign * jac[:, 0], sign * jac[:, 1], domain, ~changed, room, chunk
            )
            keep = ok & (room > 0)
            if early_stop:
                keep &= ~success
            if not bool(keep.all()):
                sid, x0, cur, domain = sid[keep], x0[keep], cur[keep], domain[keep]
                p, q = p[keep], q[keep]
                if sid.numel() == 0:
                    break
            rows = torch.arange(sid.numel(), device=sid.device)
            for feat in (p, q):
                value = (cur[rows, feat] + shift).clamp(low, high)
                cur[rows, feat] = value.to(cur.dtype)
                domain[rows, feat] = (value < high) if sign > 0 else (value > low)
        return problem.finish(best.x, goal)
