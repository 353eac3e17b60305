r"""Robust Physical Perturbations, RP2 (Eykholt, Evtimov, Fernandes, Li, Rahmati, Xiao, Prakash,
Kohno & Song 2018, "Robust Physical-World Attacks on Deep Learning Visual Classification",
CVPR): a perturbation confined to a mask (stickers: e.g. two black-and-white stripes on a stop
sign) that fools the classifier under the physical conditions it will be seen in.

The paper's objective, for a mask :math:`M_x` and a distribution of conditions (here the
transforms :math:`t \sim T` of :mod:`advml.transforms`, as in EOT):

.. math::  \arg\min_\delta \; \lambda \|M_x \cdot \delta\|_p + \mathrm{NPS}(M_x \cdot \delta)
           + \mathbb{E}_{t \sim T}\, J\big(f(t(x + M_x \cdot \delta)), y^*\big)

* :math:`J` is the attack loss: for a target :math:`y^*` the cross-entropy
  :math:`-\log p_{y^*}`; untargeted, minus the cross-entropy of the true class (or
  ``loss="margin"``). The expectation is estimated with ``samples`` transforms per step,
  averaging logits (:class:`advml.attacks.eot.EOTModel`, whose docstring says why).
* :math:`\lambda \|M_x\cdot\delta\|_p` keeps the stickers faint: ``reg_norm=1`` (the paper's
  first pass, which concentrates the perturbation where it matters and can be turned into a
  mask with :func:`mask_from_perturbation`) or ``reg_norm=2`` (the final pass).
* NPS, the non-printability score (Sharif et al. 2016), is optional: given printable colors
  :math:`P`, :math:`\mathrm{NPS} = \frac{1}{|M|}\sum_{\hat p \in M} \prod_{p' \in P}
  \|\hat p - p'\|_2` over the masked pixels' colors; weight ``nps_weight``.

It is minimized with Adam (as in the paper) on :math:`\delta`, one independent problem per
input, batched; after every step :math:`x + M\delta` is projected onto the threat model (ball ∩
box; the projections never move a feature outside the mask). Pass ``Linf(1.0)`` (the box) for
the paper's unbounded stickers. The best iterate per input is kept: one that fools the EOT
model (the average over that step's transforms), then the lowest objective.

Contract, checked on the output: outside the mask ``x_adv == x`` exactly; every feature is in
the box (:func:`advml.attacks.patch.check_confined`); ``x_adv`` lies in ``threat``.
``success`` is the majority over ``eval_samples`` fresh transforms, as for :func:`eot` (an
:class:`~advml.attacks.eot.EOTResult` with ``expected_success``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advml.attacks.base import Best, Problem, frozen_eval
from advml.attacks.eot import (
    EOTModel,
    EOTResult,
    _check_average,
    _check_transforms,
    finish_under_transforms,
)
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import Loss, objective
from advml.attacks.patch import check_confined
from advml.attacks.registry import register
from advml.errors import UserError
from advml.threats import ThreatModel
from advml.transforms import RandomTransform

__all__ = ["mask_from_perturbation", "nps", "sticker", "stripes"]


def stripes(
    height: int,
    width: int,
    *,
    count: int = 2,
    thickness: int = 1,
    orientation: str = "horizontal",
    positions: list[int] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Tensor:
    """A boolean ``(height, width)`` mask of ``count`` stripes ``thickness`` pixels thick.

    Stripes run ``"horizontal"`` (rows) or ``"vertical"`` (columns), at ``positions`` (first
    row/column of each) or evenly spaced; ``start``/``stop`` limit their extent along the
    other axis (default: the whole image), like the paper's stickers on a sign.
    """
    height = check_positive_int(height, "height")
    width = check_positive_int(width, "width")
    count = check_positive_int(count, "count")
    thickness = check_positive_int(thickness, "thickness")
    if orientation not in ("horizontal", "vertical"):
        raise UserError(f"orientation must be 'horizontal' or 'vertical'; got {orientation!r}")
    across, along = (height, width) if orientation == "horizontal" else (width, height)
    if positions is None:
        positions = [round((i + 1) * across / (count + 1) - thickness / 2) for i in range(count)]
    if len(positions) != count:
        raise UserError(f"positions must list {count} stripe positions; got {positions!r}")
    stop = along if stop is None else stop
    if not 0 <= start < stop <= along:
        raise UserError(f"need 0 <= start < stop <= {along}; got start={start}, stop={stop}")
    mask = torch.zeros(across, along, dtype=torch.bool)
    for pos in positions:
        if not 0 <= pos <= across - thickness:
            raise UserError(f"stripe position {pos} does not fit in {across} pixels")
        mask[pos : pos + thickness, start:stop] = True
    return mask if orientation == "horizontal" else mask.T.contiguous()


def _full_mask(mask: Tensor | None, x: Tensor) -> Tensor:
    """``mask`` as a bool tensor of ``x``'s shape (``None``: everything)."""
    if mask is None:
        return torch.ones_like(x, dtype=torch.bool)
    mask = torch.as_tensor(mask, device=x.device)
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise UserError("the mask must be boolean or hold only 0 and 1")
        mask = mask != 0
    if mask.ndim == 2 and x.ndim == 4:  # (H, W) for NCHW images
        mask = mask.reshape(1, 1, *mask.shape)
    elif mask.ndim == x.ndim - 1:  # one mask for every input
        mask = mask.unsqueeze(0)
    try:
        return torch.broadcast_to(mask, x.shape)
    except RuntimeError:
        raise UserError(
            f"the mask of shape {tuple(mask.shape)} does not broadcast to the inputs "
            f"{tuple(x.shape)}; give (H, W), (C, H, W), (N, C, H, W) or the input's shape"
        ) from None


def nps(x: Tensor, mask: Tensor, printable: Tensor) -> Tensor:
    """Non-printability score per input: mean over masked pixels of the product of the
    distances of the pixel's color (``x`` is NCHW, colors along C) to the printable colors
    ``printable`` ``(P, C)``."""
    n, c = x.shape[0], x.shape[1]
    colors = x.movedim(1, -1).reshape(n, -1, c)  # (n, pixels, C)
    where = mask.any(dim=1).reshape(n, -1).to(x.dtype)  # pixel masked in any channel
    diff = colors.unsqueeze(2) - printable.to(x).reshape(1, 1, -1, c)
    dist = torch.sqrt(diff.square().sum(dim=3) + 1e-12)  # (n, pixels, P)
    score = dist.prod(dim=2)
    return (score * where).sum(dim=1) / where.sum(dim=1).clamp_min(1)


def mask_from_perturbation(delta: Tensor, fraction: float) -> Tensor:
    """The paper's mask step: keep the ``fraction`` of pixels with the largest perturbation
    (summed over channels) of an ``reg_norm=1`` run. ``delta`` is ``(N, C, H, W)``
    (or ``(C, H, W)``); returns a bool ``(N, 1, H, W)`` mask (one per input)."""
    if delta.ndim == 3:
        delta = delta.unsqueeze(0)
    if delta.ndim != 4:
        raise UserError(f"delta must be (N, C, H, W) or (C, H, W); got {tuple(delta.shape)}")
    if not 0 < fraction <= 1:
        raise UserError(f"fraction must be in (0, 1]; got {fraction!r}")
    n, _, h, w = delta.shape
    score = delta.abs().sum(dim=1).reshape(n, -1)
    k = max(1, round(fraction * h * w))
    top = score.topk(k, dim=1).indices
    mask = torch.zeros_like(score, dtype=torch.bool).scatter_(1, top, True)
    return mask.reshape(n, 1, h, w)


@register(
    "sticker",
    norms=("linf", "l2", "l1"),
    targeted=True,
    kind="gradient",
    paper="Eykholt et al. 2018, Robust Physical-World Attacks on Deep Learning Visual "
    "Classification (RP2)",
    defaults="mask = whole input, 100 Adam steps (lr 0.05), lambda = 1e-3 (L2), samples = 8, "
    "eval_samples = 64",
)
def sticker(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    mask: Tensor | None = None,
    transforms: RandomTransform | None = None,
    samples: int = 8,
    steps: int = 100,
    lr: float = 0.05,
    reg: float = 1e-3,
    reg_norm: int = 2,
    printable: Tensor | None = None,
    nps_weight: float = 0.0,
    loss: str | Loss = "ce",
    average: str = "logits",
    eval_samples: int = 64,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> EOTResult:
    """RP2: a masked perturbation optimized under transforms (see the module docstring).

    Args:
        mask: where the stickers go: bool (or 0/1) of shape ``(H, W)``, ``(C, H, W)``,
            ``(N, C, H, W)`` or the input's shape (see :func:`stripes`); ``None``: the whole
            input.
        transforms, samples, average: the EOT distribution and its per-step sample size.
        steps, lr: Adam steps on the perturbation.
        reg, reg_norm: :math:`\\lambda` and :math:`p \\in \\{1, 2\\}` of the mask penalty.
        printable, nps_weight: printable colors ``(P, C)`` and the NPS weight (NCHW only).
        loss: ``"ce"``, ``"margin"`` or a callable, maximized as by every attack (``J`` above
            is its negative).
        eval_samples, seed, generator: as for :func:`advml.attacks.eot.eot`.
    """
    steps = check_positive_int(steps, "steps")
    samples = check_positive_int(samples, "samples")
    eval_samples = check_positive_int(eval_samples, "eval_samples")
    average = _check_average(average)
    transforms = _check_transforms(transforms)
    if reg_norm not in (1, 2):
        raise UserError(f"reg_norm must be 1 or 2; got {reg_norm!r}")
    for value, what in ((lr, "lr"), (reg, "reg"), (nps_weight, "nps_weight")):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (math.isfinite(value) and value >= 0)
        ):
            raise UserError(f"{what} must be a finite number >= 0; got {value!r}")
    with frozen_eval(model):
        problem = Problem("sticker", model, x, y, threat, targeted)
        x0 = problem.x
        region = _full_mask(mask, x0)
        if nps_weight > 0:
            if printable is None or x0.ndim != 4:
                raise UserError("the NPS term needs NCHW images and printable colors (P, C)")
            printable = torch.as_tensor(printable, dtype=x0.dtype, device=x0.device)
            if printable.ndim != 2 or printable.shape[1] != x0.shape[1]:
                raise UserError(
                    f"printable must have shape (P, {x0.shape[1]}); got {tuple(printable.shape)}"
                )
        if problem.n == 0:
            return finish_under_transforms(
                problem,
                x0,
                transforms=transforms,
                eval_samples=eval_samples,
                average=average,
                seed=seed,
                generator=generator,
            )
        wrapped = EOTModel(
            model, transforms, samples, average=average, seed=seed, generator=generator
        )
        goal = objective(loss, problem.y, problem.targeted)
        keep = region.to(x0.dtype)
        all_rows = problem.all

        def total(x_adv: Tensor, delta: Tensor, logits: Tensor) -> Tensor:
            """The objective to minimize, per input."""
            flat = (delta * keep).reshape(problem.n, -1)
            penalty = (
                flat.abs().sum(dim=1) if reg_norm == 1 else torch.linalg.vector_norm(flat, dim=1)
            )
            value = reg * penalty - goal(logits, all_rows)
            if nps_weight > 0:
                value = value + nps_weight * nps(x_adv, region, printable)
            return value

        best = Best(
            x0,
            torch.full((problem.n,), -math.inf, dtype=x0.dtype, device=x0.device),
            problem.clean_success.clone(),
        )
        best.success[:] = False  # judged on the EOT model from the first step on
        delta = torch.zeros_like(x0, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=lr)
        current = x0
        for t in range(steps + 1):
            with torch.enable_grad():
                # the clamp only absorbs the rounding of x0 + (projected - x0): the projection
                # below already put every iterate in the box
                current = (x0 + delta * keep).clamp(threat.low, threat.high)
                problem.queries += samples
                logits = wrapped(current)
                value = total(current, delta, logits)
            with torch.no_grad():
                success = problem.succeeded(logits.detach(), all_rows)
                best.update(all_rows, current.detach(), -value.detach(), success, unique=True)
            if t == steps:
                break
            optimizer.zero_grad(set_to_none=True)
            value.sum().backward()
            optimizer.step()
            with torch.no_grad():
                projected = threat.project(x0 + delta * keep, x0)
                delta.copy_((projected - x0) * keep)
        x_adv = torch.where(region, best.x, x0)  # exact zeros outside the mask
        check_confined(x_adv, x0, region, threat.low, threat.high, "sticker")
        with torch.no_grad():
            final = total(x_adv, x_adv - x0, wrapped(x_adv))
        problem.queries += samples
        return finish_under_transforms(
            problem,
            x_adv,
            transforms=transforms,
            eval_samples=eval_samples,
            average=average,
            seed=seed,
            generator=generator,
            loss=-final,
        )
