r"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML): PGD with momentum and a step size that
adapts itself, so no step size has to be tuned.

With :math:`\eta^{(0)} = 2\varepsilon`, momentum :math:`\alpha = 0.75` and projection
:math:`P` onto the threat model (exact, ball ∩ box):

.. math::
    z^{(k+1)} &= P\big(x^{(k)} + \eta^{(k)} d(\nabla f(x^{(k)}))\big) \\
    x^{(k+1)} &= P\big(x^{(k)} + \alpha (z^{(k+1)} - x^{(k)})
                 + (1 - \alpha)(x^{(k)} - x^{(k-1)})\big)

(:math:`\alpha = 1` on the first step; :math:`d` = sign for L∞, ``g/||g||_2`` for L2). At
checkpoints :math:`w_j` (:math:`p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + \max(p_j - p_{j-1} - 0.03,
0.06)`, :math:`w_j = \lceil p_j N \rceil`) the step is halved, and the iterate restarted from the
best point :math:`x_{\max}`, when

1. the objective increased in at most :math:`\rho = 75\%` of the steps since the last
   checkpoint (the reference implementation's ``<=``), or
2. the step was not halved at the last checkpoint and :math:`f_{\max}` has not improved since.

After a restart the momentum term is zero for one step. Objectives: ``ce`` (APGD-CE), ``dlr``
(APGD-DLR, invariant to logit shift and scale), ``margin``; APGD-T runs the targeted DLR loss
:math:`-(z_y - z_t)/(z_{\pi_1} - (z_{\pi_3} + z_{\pi_4})/2)` against each of the
``n_targets`` most likely other classes in turn, on the samples still robust.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from advml.attacks.base import AttackResult, Objective, Problem, frozen_eval, view_rows
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import Loss, dlr_targeted, get_loss, margin, objective
from advml.attacks.registry import register
from advml.attacks.rng import KeyedRNG, TorchRNG, make_rng
from advml.errors import UserError
from advml.threats import ThreatModel

__all__ = ["apgd", "apgd_ce", "apgd_dlr", "apgd_t", "checkpoints"]

_PAPER = (
    "Croce & Hein 2020, Reliable Evaluation of Adversarial Robustness with an Ensemble of "
    "Diverse Parameter-free Attacks"
)


def checkpoints(steps: int) -> list[int]:
    """The iterations after which the step-size conditions are checked (the :math:`w_j`).

    Integer form of the paper's schedule, as in the reference implementation: the first
    interval is ``max(int(0.22 N), 1)`` steps long, each next one ``max(int(0.03 N), 1)``
    shorter, never below ``max(int(0.06 N), 1)``.
    """
    length = max(int(0.22 * steps), 1)
    shrink = max(int(0.03 * steps), 1)
    shortest = max(int(0.06 * steps), 1)
    points, at = [], 0
    while at + length < steps:
        at += length
        points.append(at)
        length = max(length - shrink, shortest)
    return points


@dataclasses.dataclass
class _Rows:
    """Per-row state of one APGD run; ``select`` keeps a subset of rows."""

    sid: Tensor
    x: Tensor  # clean inputs of the rows
    cur: Tensor
    prev: Tensor
    grad: Tensor
    eta: Tensor  # (n,) step sizes
    x_max: Tensor
    g_max: Tensor
    f_max: Tensor
    f_prev: Tensor
    increases: Tensor
    f_max_check: Tensor
    halved_check: Tensor

    def select(self, keep: Tensor) -> _Rows:
        return _Rows(**{f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self)})


def _where_rows(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(view_rows(mask, a), a, b)


def _run(
    problem: Problem,
    goal: Objective,
    score: Objective,
    sid: Tensor,
    start: Tensor,
    *,
    steps: int,
    rho: float,
    momentum: float,
    early_stop: bool,
) -> None:
    """One APGD run from ``start`` on rows ``sid``; updates ``problem.best``."""
    best = problem.best
    assert best is not None
    value, grad, logits = problem.value_and_grad(start, sid, goal)
    best.update(
        sid,
        start,
        score(logits, sid),
        problem.succeeded(logits, sid),
        unique=True,
        logits=logits,
    )
    s = _Rows(
        sid=sid,
        x=problem.x[sid],
        cur=start,
        prev=start,
        grad=grad,
        eta=2.0 * problem.eps[sid],
        x_max=start.clone(),
        g_max=grad.clone(),
        f_max=value.clone(),
        f_prev=value.clone(),
        increases=torch.zeros_like(value),
        f_max_check=value.clone(),
        halved_check=torch.zeros_like(value, dtype=torch.bool),
    )
    marks = set(checkpoints(steps))
    since = 0
    for i in range(steps):
        if early_stop:
            keep = ~best.success[s.sid]
            if not bool(keep.all()):
                s = s.select(keep)
                if s.sid.numel() == 0:
                    return
        threat = problem.threat_rows(s.sid)
        eta = view_rows(s.eta, s.cur)
        z = threat.project(s.cur + eta * threat.ascent_direction(s.grad, s.cur), s.x)
        a = 1.0 if i == 0 else momentum
        nxt = threat.project(s.cur + a * (z - s.cur) + (1.0 - a) * (s.cur - s.prev), s.x)
        s.prev, s.cur = s.cur, nxt
        if i == steps - 1:
            logits = problem.forward(s.cur, s.sid)
            value = goal(logits, s.sid)
        else:
            value, s.grad, logits = problem.value_and_grad(s.cur, s.sid, goal)
        best.update(
            s.sid,
            s.cur,
            score(logits, s.sid),
            problem.succeeded(logits, s.sid),
            unique=True,
            logits=logits,
        )
        s.increases = s.increases + (value > s.f_prev).to(s.increases.dtype)
        s.f_prev = value
        improved = value > s.f_max
        s.x_max = _where_rows(improved, s.cur, s.x_max)
        s.g_max = _where_rows(improved, s.grad, s.g_max)
        s.f_max = torch.where(improved, value, s.f_max)
        since += 1
        if i + 1 in marks:
            oscillating = s.increases <= rho * since
            stalled = ~s.halved_check & (s.f_max_check >= s.f_max)
            halve = oscillating | stalled
            s.halved_check = halve
            s.f_max_check = s.f_max.clone()
            s.eta = torch.where(halve, 0.5 * s.eta, s.eta)
            s.cur = _where_rows(halve, s.x_max, s.cur)
            s.prev = _where_rows(halve, s.x_max, s.prev)
            s.grad = _where_rows(halve, s.g_max, s.grad)
            s.increases = torch.zeros_like(s.increases)
            since = 0


def _check(steps: int, restarts: int, rho: float, momentum: float) -> None:
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    if not (isinstance(rho, (int, float)) and 0.0 <= rho <= 1.0):
        raise UserError(f"apgd: rho must be in [0, 1]; got {rho!r}")
    if not (
        isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0 and math.isfinite(momentum)
    ):
        raise UserError(f"apgd: momentum must be in [0, 1]; got {momentum!r}")


def _starts(
    problem: Problem, sid: Tensor, rng: KeyedRNG | TorchRNG, restart: int, random_start: bool
) -> Tensor:
    if not random_start:
        return problem.x[sid].clone()
    return problem.threat_rows(sid).random_start(problem.x[sid], rng.rows(sid, restart))


def _apgd(
    name: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool,
    loss: str | Loss,
    steps: int,
    restarts: int,
    rho: float,
    momentum: float,
    random_start: bool,
    early_stop: bool,
    seed: int | None,
    generator,
) -> AttackResult:
    _check(steps, restarts, rho, momentum)
    if not random_start:
        restarts = 1
    with frozen_eval(model):
        problem = Problem(name, model, x, y, threat, targeted)
        goal = objective(loss, problem.y, problem.targeted)
        if not torch.isfinite(problem.eps).all():
            raise UserError(f"{name}: APGD needs a finite eps (its initial step is 2 eps)")
        best = problem.start_best(goal)
        rng = make_rng(problem.x, seed, generator)
        todo = ~best.success if early_stop else torch.ones_like(best.success)
        for restart in range(restarts):
            sid = todo.nonzero().squeeze(1)
            if sid.numel() == 0:
                break
            start = _starts(problem, sid, rng, restart, random_start)
            _run(
                problem,
                goal,
                goal,
                sid,
                start,
                steps=steps,
                rho=rho,
                momentum=momentum,
                early_stop=early_stop,
            )
            if early_stop:
                todo = todo & ~best.success
        return problem.finish(best.x, goal)


_APGD_DEFAULTS = "steps = 100, restarts = 1, eta0 = 2 eps, momentum = 0.75, rho = 0.75"


@register(
    "apgd",
    norms=("linf", "l2"),
    targeted=True,
    paper=_PAPER,
    defaults=_APGD_DEFAULTS + ", loss = ce",
)
def apgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    loss: str | Loss = "ce",
    steps: int = 100,
    restarts: int = 1,
    rho: float = 0.75,
    momentum: float = 0.75,
    random_start: bool = True,
    early_stop: bool = True,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """APGD with the objective ``loss`` (``"ce"``, ``"dlr"``, ``"margin"`` or a callable).

    Args:
        steps: iterations per restart (the paper's N; checkpoints scale with it).
        restarts: random restarts, each only on samples not yet broken.
        rho: fraction of increasing steps below which the step is halved (0.75).
        momentum: weight of the new step against the previous one (0.75).
        random_start: start each restart from a uniform point of the threat model.
        early_stop: drop samples from the batch once broken.
        seed, generator: randomness of the starts (see :func:`advml.attacks.rng.make_rng`).
    """
    return _apgd(
        "apgd",
        model,
        x,
        y,
        threat,
        targeted=targeted,
        loss=loss,
        steps=steps,
        restarts=restarts,
        rho=rho,
        momentum=momentum,
        random_start=random_start,
        early_stop=early_stop,
        seed=seed,
        generator=generator,
    )


def _fixed_loss(name: str, loss: str, doc: str):
    """An APGD variant with its loss fixed (explicit signature, for introspection and CLIs)."""

    def variant(
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        threat: ThreatModel,
        *,
        targeted: bool = False,
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        random_start: bool = True,
        early_stop: bool = True,
        seed: int | None = 0,
        generator=None,
    ) -> AttackResult:
        return _apgd(
            name, model, x, y, threat, targeted=targeted, loss=loss, steps=steps,
            restarts=restarts, rho=rho, momentum=momentum, random_start=random_start,
            early_stop=early_stop, seed=seed, generator=generator,
        )  # fmt: skip

    variant.__name__ = variant.__qualname__ = name.replace("-", "_")
    variant.__doc__ = doc
    register(name, norms=("linf", "l2"), targeted=True, paper=_PAPER, defaults=_APGD_DEFAULTS)(
        variant
    )
    return variant


apgd_ce = _fixed_loss(
    "apgd-ce", "ce", "APGD-CE: :func:`apgd` with the cross-entropy loss (same arguments but loss)."
)
apgd_dlr = _fixed_loss(
    "apgd-dlr",
    "dlr",
    "APGD-DLR: :func:`apgd` with the DLR loss (targeted DLR when ``targeted=True``).",
)


@register(
    "apgd-t",
    norms=("linf", "l2"),
    targeted=False,
    paper=_PAPER,
    defaults="n_targets = 9, steps = 100 per target, restarts = 1, loss = targeted DLR",
)
def apgd_t(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    n_targets: int = 9,
    loss: str = "dlr",
    steps: int = 100,
    restarts: int = 1,
    rho: float = 0.75,
    momentum: float = 0.75,
    random_start: bool = True,
    early_stop: bool = True,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """APGD-T (AutoAttack's targeted APGD): an untargeted attack run as targeted ones.

    For ``j = 1..n_targets`` it attacks the samples still robust towards their ``j``-th most
    likely wrong class (by the clean logits) with the targeted loss (``"dlr"``: targeted DLR
    with the true label; ``"ce"``, ``"margin"``: their targeted forms). ``y`` holds the true
    labels and success means misclassification. The iterate kept for a sample that resists
    is the one with the highest untargeted margin; ``result.loss`` is the untargeted margin.
    """
    _check(steps, restarts, rho, momentum)
    check_positive_int(n_targets, "n_targets")
    if not random_start:
        restarts = 1
    key = str(loss).lower()
    if key not in ("dlr", "ce", "margin", "cw"):
        raise UserError(f"apgd-t: loss must be 'dlr', 'ce' or 'margin'; got {loss!r}")
    with frozen_eval(model):
        problem = Problem("apgd-t", model, x, y, threat, targeted)
        if not torch.isfinite(problem.eps).all():
            raise UserError("apgd-t: APGD needs a finite eps (its initial step is 2 eps)")
        labels = problem.y

        def score(logits: Tensor, sid: Tensor) -> Tensor:
            return margin(logits, labels[sid], False)

        best = problem.start_best(score)
        if problem.n == 0:
            return problem.finish(best.x, score)
        if key == "dlr" and problem.n_classes < 4:
            raise UserError(
                f"apgd-t: the targeted DLR loss needs at least 4 classes (the model has "
                f"{problem.n_classes}); use loss='margin'"
            )
        others = problem.clean_logits.scatter(1, labels.reshape(-1, 1), float("-inf"))
        ranked = others.argsort(dim=1, descending=True, stable=True)
        n_targets = min(n_targets, problem.n_classes - 1)
        rng = make_rng(problem.x, seed, generator)
        fn = None if key == "dlr" else get_loss(key)
        todo = ~best.success if early_stop else torch.ones_like(best.success)
        for j in range(n_targets):
            target = ranked[:, j]

            def goal(logits: Tensor, sid: Tensor, target: Tensor = target) -> Tensor:
                if fn is None:
                    return dlr_targeted(logits, target[sid], labels[sid])
                return fn(logits, target[sid], True)

            for restart in range(restarts):
                sid = todo.nonzero().squeeze(1)
                if sid.numel() == 0:
                    break
                start = _starts(problem, sid, rng, j * restarts + restart, random_start)
                _run(
                    problem,
                    goal,
                    score,
                    sid,
                    start,
                    steps=steps,
                    rho=rho,
                    momentum=momentum,
                    early_stop=early_stop,
                )
                if early_stop:
                    todo = todo & ~best.success
        return problem.finish(best.x, score)
