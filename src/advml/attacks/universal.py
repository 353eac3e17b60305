r"""Universal adversarial perturbations (Moosavi-Dezfooli, Fawzi, Fawzi & Frossard 2017,
"Universal adversarial perturbations", CVPR): **one** perturbation :math:`v` with
:math:`\|v\|_p \le \xi` that fools the classifier on most inputs of a distribution.

The paper's algorithm (its Algorithm 1), with :math:`\hat k` the label to move away from:

.. code-block:: text

    v = 0
    repeat (a pass over the data, in random order)
        for x_i not yet fooled, i.e. k(clip(x_i + v)) == k_i:
            dv_i = argmin ||r||_p  s.t.  k(clip(x_i + v) + r) != k_i     (DeepFool)
            v    = P_{p, xi}(v + dv_i)
    until fooling rate on X >= 1 - delta  or  max_passes
    return the v with the highest fooling rate on X at the end of a pass

:math:`P_{p,\xi}` is the projection onto the :math:`\ell_p` ball of radius :math:`\xi`
(the threat's own exact projection, without the box: ``v`` itself is not an image; the
inputs are clipped, ``x' = clip(x + v)``). The minimal steps come from advml's
:func:`~advml.attacks.deepfool.deepfool` (the threat's norm, radius ``inf``), **batched**:
``batch_size`` not-yet-fooled inputs get their DeepFool steps at the same ``v`` and ``v`` moves
by their **sum** (then projects), which is the sequential update when ``batch_size = 1`` and
otherwise applies the same minibatch of minimal steps at once.

``method="sgd"`` is the faster variant of Shafahi et al. 2020 ("Universal adversarial
training", AAAI): stochastic projected ascent on the mean loss,
:math:`v \leftarrow P(v + \alpha\, d(\nabla_v \frac{1}{|B'|}\sum_{i \in B'} J(f(clip(x_i +
v)), k_i)))` with :math:`d` the threat's steepest-ascent direction (sign for L∞, normalized
for L2, sparse for L1) and :math:`B'` the not-yet-fooled inputs of the minibatch (already
fooled ones are left out, as in the paper's loop and like Shafahi et al.'s clipped loss). One
gradient per minibatch instead of DeepFool's several per input.

Labels: with ``y`` the true labels, "fooled" means misclassified; with ``y=None`` the clean
predictions are used, which is the paper's fooling rate (the label changes).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, frozen_eval
from advml.attacks.deepfool import deepfool
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import Loss, get_loss
from advml.attacks.registry import register
from advml.errors import UserError
from advml.threats import ThreatModel

__all__ = ["apply_universal", "fooling_rate", "universal", "universal_perturbation"]


def _ball(threat: ThreatModel, xi: float) -> ThreatModel:
    """The threat's norm ball of radius ``xi`` without the box (``v`` is not an image)."""
    return dataclasses.replace(threat.with_eps(xi), low=-math.inf, high=math.inf)


def _project_v(ball: ThreatModel, v: Tensor) -> Tensor:
    return ball.project(v.unsqueeze(0), torch.zeros_like(v).unsqueeze(0)).squeeze(0)


def _radius(threat: ThreatModel) -> float:
    if threat.per_sample:
        eps = threat.eps
        if eps.numel() == 0:
            return 0.0
        return float(eps.max())
    return float(threat.eps)


def apply_universal(x: Tensor, v: Tensor, threat: ThreatModel) -> Tensor:
    """``threat.project(x + v, x)``: ``clip(x + v)`` when ``||v|| <= eps`` (the usual case),
    the nearest point of ball ∩ box otherwise (per-sample radii smaller than ``||v||``)."""
    if v.shape != x.shape[1:]:
        raise UserError(
            f"the perturbation has shape {tuple(v.shape)} but inputs have shape "
            f"{tuple(x.shape[1:])} per sample"
        )
    return threat.project(x + v.to(x).unsqueeze(0), x)


def fooling_rate(model: nn.Module, x: Tensor, v: Tensor, y: Tensor | None = None) -> float:
    """Fraction of ``x`` whose prediction at ``clip(x + v)`` differs from ``y`` (default: the
    clean predictions, the paper's definition). Inputs are clipped to ``[0, 1]``."""
    with frozen_eval(model), torch.no_grad():
        labels = model(x).argmax(dim=1) if y is None else torch.as_tensor(y, device=x.device)
        pred = model((x + v.to(x)).clamp(0.0, 1.0)).argmax(dim=1)
        return float((pred != labels).float().mean()) if len(x) else 0.0


def _fit(
    problem: Problem,
    labels: Tensor,
    xi: float,
    *,
    method: str,
    delta: float,
    max_passes: int,
    batch_size: int,
    overshoot: float,
    deepfool_steps: int,
    candidates: int,
    step_size: float | None,
    loss: str | Loss,
    generator: torch.Generator,
) -> Tensor:
    """One ``v`` for ``problem.x``; counts queries per input in ``problem.queries``."""
    x, threat, model = problem.x, problem.threat, problem.model
    n = problem.n
    v = x.new_zeros(x.shape[1:])
    if n == 0 or xi == 0:
        return v
    ball = _ball(threat, xi)
    box = threat.with_eps(math.inf)
    alpha = xi / 4 if step_size is None else float(step_size)
    loss_fn = get_loss(loss)

    def goal(logits: Tensor, sid: Tensor) -> Tensor:
        return loss_fn(logits, labels[sid], False)

    def fooled(rows: Tensor, v: Tensor) -> Tensor:
        logits = problem.forward(threat.clip_box(x[rows] + v), rows)
        return logits.argmax(dim=1) != labels[rows]

    best, best_rate = v, float(fooled(problem.all, v).float().mean())
    for _ in range(max_passes):
        order = torch.randperm(n, generator=generator).to(x.device)
        for first in range(0, n, batch_size):
            rows = order[first : first + batch_size]
            todo = rows[~fooled(rows, v)]
            if todo.numel() == 0:
                continue
            start = threat.clip_box(x[todo] + v)
            if method == "deepfool":
                found = deepfool(
                    model,
                    start,
                    labels[todo],
                    box,
                    steps=deepfool_steps,
                    overshoot=overshoot,
                    candidates=min(candidates, problem.n_classes),
                )
                problem.queries.index_add_(0, todo, found.queries)
                step = (found.x_adv - start).sum(dim=0)
            else:
                _, grad, _ = problem.value_and_grad(start, todo, goal)
                # d/dv of the mean loss at clip(x + v): the clip passes gradients inside the box
                raw = x[todo] + v
                inside = (raw >= threat.low) & (raw <= threat.high)
                grad_v = torch.where(inside, grad, torch.zeros_like(grad)).mean(dim=0)
                step = alpha * ball.ascent_direction(grad_v.unsqueeze(0)).squeeze(0)
            v = _project_v(ball, v + step)
        rate = float(fooled(problem.all, v).float().mean())
        if rate > best_rate:
            best, best_rate = v, rate
        if best_rate >= 1.0 - delta:
            break
    return best


def _method(method: str | None, threat: ThreatModel) -> str:
    """``None``: DeepFool (the paper) for L2 and L∞, SGD for L1 (DeepFool has no L1 form)."""
    if method is None:
        return "sgd" if threat.name == "l1" else "deepfool"
    return method


def _check_options(method: str, delta: float, overshoot: float, threat: ThreatModel) -> None:
    if method not in ("deepfool", "sgd"):
        raise UserError(f"method must be 'deepfool' or 'sgd'; got {method!r}")
    if method == "deepfool" and threat.name not in ("l2", "linf"):
        raise UserError(
            f"the DeepFool variant supports l2 and linf, not {threat.name}; use method='sgd'"
        )
    if threat.name == "l0":
        raise UserError("universal perturbations support linf, l2 (and l1 with method='sgd')")
    if not (isinstance(delta, (int, float)) and 0 <= delta <= 1):
        raise UserError(f"delta (1 - the target fooling rate) must be in [0, 1]; got {delta!r}")
    if not (isinstance(overshoot, (int, float)) and math.isfinite(overshoot) and overshoot >= 0):
        raise UserError(f"overshoot must be a finite number >= 0; got {overshoot!r}")


def universal_perturbation(
    model: nn.Module,
    x: Tensor,
    y: Tensor | None,
    threat: ThreatModel,
    *,
    method: str | None = None,
    delta: float = 0.2,
    max_passes: int = 10,
    batch_size: int = 32,
    overshoot: float = 0.02,
    deepfool_steps: int = 20,
    candidates: int = 10,
    step_size: float | None = None,
    loss: str | Loss = "ce",
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One perturbation ``v`` (shape ``x.shape[1:]``) with ``||v|| <= threat.eps`` that fools
    the model on as much of ``x`` as it can.

    Args:
        y: the labels to move away from; ``None``: the model's clean predictions (the paper).
        threat: ``Linf(xi)``, ``L2(xi)`` (or ``L1(xi)`` with ``method="sgd"``); ``xi`` must be
            one number. Its box clips the inputs.
        method: ``"deepfool"`` (the paper) or ``"sgd"`` (projected ascent on the mean loss);
            default: DeepFool for L2 and L∞, SGD for L1.
        delta: stop once the fooling rate on ``x`` reaches ``1 - delta``.
        max_passes: passes over ``x`` at most; ``batch_size``: inputs per update.
        overshoot, deepfool_steps, candidates: DeepFool's settings for the minimal steps.
        step_size, loss: the SGD variant's step (default ``xi / 4``) and loss (``"ce"``).
        seed / generator: the order of the passes.
    """
    if not isinstance(threat, ThreatModel):
        raise UserError(f"threat must be an advml threat model; got {type(threat).__name__}")
    if threat.per_sample:
        raise UserError("a universal perturbation has one radius: give the threat a float eps")
    method = _method(method, threat)
    _check_options(method, delta, overshoot, threat)
    max_passes = check_positive_int(max_passes, "max_passes")
    batch_size = check_positive_int(batch_size, "batch_size")
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed))
    with frozen_eval(model):
        problem = _problem(model, x, y, threat)
        labels = problem.clean_logits.argmax(dim=1) if y is None else problem.y
        return _fit(
            problem,
            labels,
            _radius(threat),
            method=method,
            delta=float(delta),
            max_passes=max_passes,
            batch_size=batch_size,
            overshoot=float(overshoot),
            deepfool_steps=check_positive_int(deepfool_steps, "deepfool_steps"),
            candidates=check_positive_int(candidates, "candidates", minimum=2),
            step_size=step_size,
            loss=loss,
            generator=generator,
        )


def _problem(model: nn.Module, x: Tensor, y: Tensor | None, threat: ThreatModel) -> Problem:
    """A Problem for the checks and counters (labels: ``y`` or zeros, replaced by the caller)."""
    if y is None:
        if not isinstance(x, Tensor) or x.ndim < 1:
            raise UserError("x must be a tensor of shape (N, ...)")
        y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    return Problem("universal", model, x, y, threat, False)


@register(
    "universal",
    norms=("linf", "l2", "l1"),
    targeted=False,
    kind="gradient",
    paper="Moosavi-Dezfooli, Fawzi, Fawzi & Frossard 2017, Universal adversarial perturbations",
    defaults="DeepFool variant (L1: SGD variant), delta = 0.2, max_passes = 10, "
    "batch_size = 32, deepfool_steps = 20",
)
def universal(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    perturbation: Tensor | None = None,
    **fit_kwargs,
) -> AttackResult:
    """Add one universal perturbation to every input: ``x_adv = clip(x + v)``.

    Args:
        perturbation: a precomputed ``v`` (from :func:`universal_perturbation`, e.g. on
            training data); ``None``: fit one on this batch (labels ``y``; the largest radius
            when ``eps`` is per sample), which makes the result depend on the whole batch.
        **fit_kwargs: passed to :func:`universal_perturbation`.

    ``x_adv`` is projected onto ``threat`` (a no-op when ``||v|| <= eps``) and checked with
    ``threat.contains``. ``queries`` counts each input's forward passes during fitting too.
    """
    if fit_kwargs and perturbation is not None:
        raise UserError("give either a perturbation or fitting options, not both")
    with frozen_eval(model):
        problem = Problem("universal", model, x, y, threat, targeted)
        if perturbation is None:
            method = _method(fit_kwargs.pop("method", None), threat)
            delta = fit_kwargs.pop("delta", 0.2)
            overshoot = fit_kwargs.pop("overshoot", 0.02)
            _check_options(method, delta, overshoot, threat)
            seed = fit_kwargs.pop("seed", 0)
            generator = fit_kwargs.pop("generator", None)
            if generator is None:
                generator = torch.Generator().manual_seed(int(seed))
            options = {
                "max_passes": 10,
                "batch_size": 32,
                "deepfool_steps": 20,
                "candidates": 10,
                "step_size": None,
                "loss": "ce",
            }
            unknown = set(fit_kwargs) - set(options)
            if unknown:
                raise UserError(f"universal: unknown options {', '.join(sorted(unknown))}")
            options.update(fit_kwargs)
            for key in ("max_passes", "batch_size", "deepfool_steps"):
                check_positive_int(options[key], key)
            check_positive_int(options["candidates"], "candidates", minimum=2)
            v = _fit(
                problem,
                problem.y,
                _radius(threat),
                method=method,
                delta=float(delta),
                overshoot=float(overshoot),
                generator=generator,
                **options,
            )
        else:
            if not isinstance(perturbation, Tensor) or not perturbation.is_floating_point():
                raise UserError("perturbation must be a float tensor of shape x.shape[1:]")
            v = perturbation.detach().to(problem.x)
            if not torch.isfinite(v).all():
                raise UserError("perturbation contains NaN or inf")
        if problem.n == 0:
            return problem.finish(problem.x)
        x_adv = apply_universal(problem.x, v, threat)
        return problem.finish(x_adv)
