r"""Pieces shared by the optimization-based minimum-norm attacks (C&W-L2, EAD, L-BFGS).

Each of them minimizes, per sample, a distance plus ``c`` times a misclassification loss,

.. math::  \min_{x'} \; D(x', x) + c \cdot f(x') \quad \text{s.t.} \quad low \le x' \le high,

and searches ``c`` per sample (Carlini & Wagner 2017, §V): a small ``c`` gives small but
often unsuccessful perturbations, a large ``c`` successful but large ones.

* :class:`ConstSearch`: the per-sample binary search over ``c``. After each outer step, a
  sample that succeeded at ``c`` sets ``upper = min(upper, c)``, one that failed sets
  ``lower = max(lower, c)``; the next ``c`` is ``(lower + upper) / 2`` once an upper bound is
  known, else ``10 c`` (the reference implementation's rule).
* :class:`MinNormTracker`: the best iterate per sample. A *success inside the ball* (the
  threat's norm at most ``eps``) always beats a failure, and among those the smallest
  distance (the attack's own decision rule) wins. Among failures the iterate inside the ball
  with the highest logit margin wins (the clean input is one). The smallest success anywhere
  is kept too: with a finite ``eps``, samples without a success inside the ball get it
  projected onto the threat model as one last candidate (one forward pass).
  After each value of ``c`` the segment from ``x`` to the best success is bisected for the
  boundary (:meth:`MinNormTracker.refine`, 10 forward passes), which removes the last
  overshoot and makes a longer search never end with a longer perturbation.
* :class:`Plateau`: the per-sample early abort of the reference implementation: every
  ``steps // 10`` iterations a sample whose objective has not dropped by 0.01 % since the last
  check stops for this value of ``c``.
* :class:`MarginLoss`: C&W's :math:`f_6` with confidence κ, optionally distance-normalized
  (C&W, EAD).

All state is per sample, so results do not depend on how samples are batched.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from advml.attacks.base import AttackResult, Best, Objective, Problem, view_rows
from advml.attacks.losses import margin
from advml.errors import UserError

__all__ = [
    "ConstSearch",
    "MarginLoss",
    "MinNormTracker",
    "Plateau",
    "check_const",
    "work_dtype",
]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of the optimizer's variables: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_const(value: object, what: str, name: str, *, allow_zero: bool = False) -> float:
    """A finite positive (or non-negative) float hyperparameter, else a UserError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise UserError(f"{name}: {what} must be a finite number {bound}; got {value!r}")
    return float(value)


class ConstSearch:
    """Per-sample binary search over the trade-off constant ``c`` (see the module docstring).

    A sample is *settled* (``settled``, no further values of ``c``) once a run at some ``c``
    succeeded but shortened its best success by at most ``settle`` (relative): with a hinge
    loss, every ``c`` above the critical one leads to (nearly) the same boundary point, and on
    the digits MLP the later bisection steps changed the mean C&W norm by 0.03 % for 2.5x the
    queries. ``settle = 0`` keeps searching while anything improves; ``settle < 0`` never
    settles (the reference behaviour).
    """

    def __init__(
        self,
        n: int,
        initial: float,
        dtype: torch.dtype,
        device: torch.device,
        settle: float = 1e-3,
    ) -> None:
        self.const = torch.full((n,), float(initial), dtype=dtype, device=device)
        self.lower = torch.zeros(n, dtype=dtype, device=device)
        self.upper = torch.full((n,), math.inf, dtype=dtype, device=device)
        self.settled = torch.zeros(n, dtype=torch.bool, device=device)
        self.settle = float(settle)

    def update(
        self,
        sid: Tensor,
        found: Tensor,
        before: Tensor | None = None,
        after: Tensor | None = None,
    ) -> None:
        """Samples ``sid`` succeeded (``found``) or not at their current ``c``; move ``c``.

        ``before``/``after``: the samples' best success sizes before and after this run
        (``inf`` without one), for the settling rule.
        """
        c, lo, hi = self.const[sid], self.lower[sid], self.upper[sid]
        hi = torch.where(found, torch.minimum(hi, c), hi)
        lo = torch.where(found, lo, torch.maximum(lo, c))
        c = torch.where(torch.isfinite(hi), (lo + hi) / 2, c * 10)
        self.const[sid], self.lower[sid], self.upper[sid] = c, lo, hi
        if before is not None and after is not None and self.settle >= 0:
            gain = before - after
            done = found & torch.isfinite(before) & (gain <= self.settle * after)
            self.settled[sid] |= done


class MarginLoss:
    r"""Carlini & Wagner's :math:`f_6` with confidence κ, optionally distance-normalized.

    ``f(logits, sid)`` (to minimize, ``<= 0`` exactly when the attack succeeds):

    * untargeted: :math:`\min_{i \ne y} \max(Z_y - Z_i, -\kappa) / s_i`;
    * targeted: :math:`\max_{i \ne t} \max(Z_i - Z_t, -\kappa) / s_i`.

    With ``normalize=False`` every :math:`s_i = 1`: the paper's :math:`f_6`. With
    ``normalize=True`` (after :meth:`compute_scales`), :math:`s_i = \|\nabla_x (Z_i -
    Z_{label})\|_2` at the clean input for the ``candidates - 1`` most likely other classes
    (one forward and ``candidates - 1`` backward passes, one query; memory ``N × (candidates -
    1) × D``); the other classes get the smallest of those scales. ``gap_i / s_i`` then
    estimates the distance to the boundary with class ``i``, so the descent heads for the
    nearest boundary instead of the runner-up class's.

    ``goal`` is the logit margin (positive iff successful) and ``succeeded`` the success test
    with the confidence: argmax success and a margin of at least κ.
    """

    def __init__(self, problem: Problem, kappa: float, normalize: bool, candidates: int) -> None:
        self.problem = problem
        self.kappa = float(kappa)
        self.normalize = bool(normalize)
        self.candidates = int(candidates)
        self.scale: Tensor | None = None

    def goal(self, logits: Tensor, sid: Tensor) -> Tensor:
        return margin(logits, self.problem.y[sid], self.problem.targeted)

    def succeeded(self, logits: Tensor, sid: Tensor) -> Tensor:
        success = self.problem.succeeded(logits, sid)
        if self.kappa > 0:
            success = success & (self.goal(logits, sid) >= self.kappa)
        return success

    def compute_scales(self) -> None:
        """The scales ``s`` (N, C); only samples the clean input does not already break are
        differentiated (one query each)."""
        problem = self.problem
        n, c = problem.n, problem.n_classes
        ones = torch.ones(n, c, dtype=work_dtype(problem.x.dtype), device=problem.x.device)
        self.scale = ones
        sid = (~problem.clean_success).nonzero().squeeze(1)
        if not self.normalize or sid.numel() == 0:
            return
        labels = problem.y
        k = min(self.candidates, c) - 1
        others = problem.clean_logits.scatter(1, labels.reshape(-1, 1), -math.inf)
        classes = others.topk(k, dim=1).indices

        def gaps(logits: Tensor, rows: Tensor) -> Tensor:
            own = logits.gather(1, labels[rows].reshape(-1, 1))
            return logits.gather(1, classes[rows]) - own

        _, jac, _ = problem.values_and_jacobian(problem.x[sid], sid, gaps)
        norms = jac.reshape(sid.numel(), k, -1).to(ones.dtype).norm(dim=2)
        fill = norms.amin(dim=1, keepdim=True)
        scale = fill.expand(-1, c).clone().scatter(1, classes[sid], norms)
        tiny = torch.finfo(ones.dtype).tiny
        self.scale = ones.index_copy(0, sid, torch.where(scale > tiny, scale, ones[sid]))

    def f(self, logits: Tensor, sid: Tensor) -> Tensor:
        if self.scale is None:
            self.compute_scales()
        z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        lab = self.problem.y[sid].reshape(-1, 1)
        gap = z - z.gather(1, lab)  # Z_i - Z_label
        targeted = self.problem.targeted
        if not targeted:
            gap = -gap  # Z_y - Z_i
        gap = gap.clamp_min(-self.kappa) / self.scale[sid].to(gap.dtype)
        if targeted:
            return gap.scatter(1, lab, -math.inf).amax(dim=1)
        return gap.scatter(1, lab, math.inf).amin(dim=1)


class Plateau:
    """Per-row early abort: every ``period`` calls, rows whose objective did not drop by a
    relative ``1e-4`` since the previous check are reported as stalled."""

    def __init__(self, steps: int, rows: int, dtype: torch.dtype, device: torch.device) -> None:
        self.period = max(1, steps // 10)
        self.prev = torch.full((rows,), math.inf, dtype=dtype, device=device)

    def check(self, iteration: int, loss: Tensor) -> Tensor | None:
        """``None`` between checks; at a check, the mask of rows that stalled (and remember)."""
        if iteration == 0 or iteration % self.period:
            return None
        stalled = loss > self.prev - 1e-4 * self.prev.abs()
        self.prev = loss.detach().clone()
        return stalled

    def select(self, keep: Tensor) -> None:
        self.prev = self.prev[keep]


class MinNormTracker:
    """Best iterate per sample for a minimum-norm attack (see the module docstring).

    Args:
        problem: the attack's :class:`Problem` (its threat decides "inside the ball").
        goal: ``(logits, sid) -> (rows,)`` margin used to rank failures (higher is better).
        distance: ``delta -> (rows,)`` ranks successes (default: the threat's norm).
        succeeded: ``(logits, sid) -> bool (rows,)`` for the candidates the tracker makes
            itself (:meth:`refine`, :meth:`finish`); default :meth:`Problem.succeeded`.
    """

    def __init__(
        self,
        problem: Problem,
        goal: Objective,
        distance: Callable[[Tensor], Tensor] | None = None,
        succeeded: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        self.problem = problem
        self.goal = goal
        self.distance = problem.threat.norm if distance is None else distance
        self.succeeded = problem.succeeded if succeeded is None else succeeded
        self.best: Best = problem.start_best(goal)
        zero = torch.zeros_like(self.best.score)
        self.best.score = torch.where(self.best.success, zero, self.best.score)
        self.finite = torch.isfinite(problem.eps)
        work = work_dtype(problem.x.dtype)
        self.any_x = problem.x.clone()
        self.any_size = torch.where(problem.clean_success, 0.0, math.inf).to(work)

    def done(self) -> Tensor:
        """Samples whose goal is met: a success inside a finite ball (or a clean success)."""
        return self.problem.clean_success | (self.best.success & self.finite)

    def size(self) -> Tensor:
        """Per sample: the distance of the smallest success found, inside the ball or not (inf
        without one); the search over ``c`` settles on it."""
        size = (-self.best.score).to(self.any_size.dtype)
        size = torch.where(self.best.success, size, torch.full_like(size, math.inf))
        return torch.minimum(size, self.any_size)

    def offer(self, sid: Tensor, x_rows: Tensor, logits: Tensor, success: Tensor) -> None:
        """Candidates ``x_rows`` of samples ``sid`` (unique), their logits and whether they
        count as successes; ranked by the attack's ``distance`` (its decision rule)."""
        problem = self.problem
        x_rows = x_rows.detach().to(problem.x.dtype)
        delta = x_rows - problem.x[sid]
        size = self.distance(delta).detach().to(self.any_size.dtype)
        eps = problem.eps[sid]
        inside = problem.threat.norm(delta) <= eps if bool(self.finite[sid].any()) else None
        s_in = success if inside is None else success & inside
        with torch.no_grad():
            margin = self.goal(logits, sid).to(size.dtype)
        score = torch.where(s_in, -size, margin)
        if inside is not None:
            score = torch.where(inside, score, torch.full_like(score, -math.inf))
        self.best.update(sid, x_rows, score, s_in, unique=True)
        if inside is None:  # eps = inf: the best success is the smallest anywhere
            return
        better = success & (size < self.any_size[sid])
        if bool(better.any()):
            rows = sid[better]
            self.any_x[rows] = x_rows[better]
            self.any_size[rows] = size[better]

    def refine(self, sid: Tensor | None = None, steps: int = 10) -> None:
        """Bisect the segment from ``x`` to the best success of samples ``sid`` (default: all)
        for the boundary: the successes on it are shorter candidates (``steps`` forward passes;
        the attack's last overshoot past the boundary is mostly removed). Attacks call it after
        each value of ``c``, so that a longer search never ends with a longer perturbation."""
        problem, best = self.problem, self.best
        mask = best.success & ~problem.clean_success
        if sid is not None:
            mask = mask & torch.zeros_like(mask).index_fill_(0, sid, True)
        sid = mask.nonzero().squeeze(1)
        if sid.numel() == 0:
            return
        x0, end = problem.x[sid], best.x[sid].clone()
        work = self.any_size.dtype
        lo = torch.zeros(sid.numel(), dtype=work, device=x0.device)
        hi = torch.ones_like(lo)
        for _ in range(steps):
            t = (lo + hi) / 2
            cand = x0 + view_rows(t, x0).to(x0.dtype) * (end - x0)
            cand = problem.threat.clip_box(cand)  # rounding only: a convex combination
            logits = problem.forward(cand, sid)
            success = self.succeeded(logits, sid)
            self.offer(sid, cand, logits, success)
            hi = torch.where(success, t, hi)
            lo = torch.where(success, lo, t)

    def finish(self) -> AttackResult:
        """Project the smallest success onto the ball where nothing inside it succeeded, then
        evaluate once more and check (:meth:`Problem.finish`)."""
        problem, best = self.problem, self.best
        if problem.n:
            todo = (~best.success & torch.isfinite(self.any_size) & self.finite).nonzero()
            sid = todo.squeeze(1)
            if sid.numel():
                threat = problem.threat_rows(sid)
                x0 = problem.x[sid]
                cand = threat.project(self.any_x[sid], x0)
                logits = problem.forward(cand, sid)
                self.offer(sid, cand, logits, self.succeeded(logits, sid))
        return problem.finish(best.x, self.goal)
