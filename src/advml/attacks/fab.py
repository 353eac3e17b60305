r"""Fast adaptive boundary attack (Croce & Hein 2020, "Minimally distorted Adversarial Examples
with a Fast Adaptive Boundary Attack", ICML): a minimum-norm attack that stays close to the
original point while it walks to the decision boundary.

At the current point :math:`x^{(i)}`, with :math:`g_l = f_l - f_c` (untargeted, :math:`c` the
true class), the closest linearized boundary is :math:`s = \arg\min_l |g_l| /
\|\nabla g_l\|_q` (:math:`q` dual to :math:`p`); :math:`\pi_s` is its hyperplane. With
:math:`\delta = \mathrm{proj}_p(x^{(i)}, \pi_s \cap C)` and :math:`\delta_o =
\mathrm{proj}_p(x_{orig}, \pi_s \cap C)` (the smallest steps in the p-norm that reach the
hyperplane inside the box :math:`C`, computed exactly by sorting; see :func:`hyperplane_step`):

.. math::
    \alpha &= \min\Big(\frac{\|\delta\|_p}{\|\delta\|_p + \|\delta_o\|_p}, \alpha_{max}\Big) \\
    x^{(i+1)} &= P_C\big((1 - \alpha)(x^{(i)} + \eta\,\delta)
                 + \alpha\,(x_{orig} + \eta\,\delta_o)\big)

and when :math:`x^{(i+1)}` is adversarial it is recorded (smallest norm wins) and pulled back,
:math:`x^{(i+1)} \leftarrow (1 - \beta)\,x_{orig} + \beta\,x^{(i+1)}`. Defaults from the
paper: :math:`\eta = 1.05`, :math:`\alpha_{max} = 0.1`, :math:`\beta = 0.9`. Restarts after
the first start from a random point of the ball of radius ``min(eps, best norm) / 2``.

Targeted (``fab(targeted=True)``): :math:`g_l = f_t - f_l` and the hyperplane is that of the
strongest competitor of the target. ``fab-t`` is AutoAttack's FAB-T: untargeted, it runs the
targeted hyperplane :math:`f_t - f_y` for each of the ``n_targets`` most likely wrong classes.

With a finite ``eps`` the smallest adversarial found is projected onto the threat model (a
sample whose adversarial is farther than ``eps`` usually fails) and a sample stops once it has
one inside the ball; with ``eps = inf`` it is a pure minimum-norm attack and ``result.norm``
is the distance found.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advml.attacks.base import AttackResult, Best, Problem, frozen_eval, view_rows
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import margin
from advml.attacks.registry import register
from advml.attacks.rng import KeyedRNG, TorchRNG, make_rng
from advml.errors import UserError
from advml.threats import ThreatModel

__all__ = ["fab", "fab_t", "hyperplane_step"]

_PAPER = (
    "Croce & Hein 2020, Minimally Distorted Adversarial Examples with a Fast Adaptive "
    "Boundary Attack"
)


def hyperplane_step(
    point: Tensor, w: Tensor, b: Tensor, low: float, high: float, p: float
) -> Tensor:
    r"""Smallest :math:`\delta` in the p-norm with :math:`\langle w, point + \delta\rangle + b = 0`
    and ``low <= point + delta <= high`` (rows of shape ``(n, D)``; ``point`` in the box).

    Write :math:`r = -(\langle w, point\rangle + b)`; moving feature ``i`` in the direction of
    :math:`\mathrm{sign}(r w_i)` by :math:`a_i \in [0, cap_i]` (``cap`` the room left in the box)
    gains :math:`|w_i| a_i`. The optimum fills features in a fixed order:

    * ``p = 2``: :math:`a_i = \min(\lambda |w_i|, cap_i)`;
    * ``p = inf``: :math:`a_i = \min(t, cap_i)`;
    * ``p = 1``: the largest :math:`|w_i|` first, each up to its cap.

    Each is a monotone piecewise-linear equation in one scalar, solved exactly after a sort.
    When the hyperplane cannot be reached inside the box, every feature goes to its cap.
    """
    d = point.shape[1]
    r = -((w * point).sum(dim=1, keepdim=True) + b.reshape(-1, 1))
    direction = torch.sign(w) * torch.sign(r)
    m = w.abs()
    cap = torch.where(direction > 0, high - point, point - low).clamp_min(0)
    cap = torch.where(m > 0, cap, torch.zeros_like(cap))
    need = r.abs()
    gain_all = (m * cap).sum(dim=1, keepdim=True)
    if p == 1:
        order = m.argsort(dim=1, descending=True)
        m_s, cap_s = m.gather(1, order), cap.gather(1, order)
        filled = torch.cumsum(m_s * cap_s, dim=1)
        before = filled - m_s * cap_s
        amount = ((need - before) / m_s.clamp_min(1e-30)).clamp(min=0)
        a_s = torch.minimum(amount, cap_s)
        a = torch.zeros_like(m).scatter(1, order, a_s)
    else:
        if p == 2:
            tau = torch.where(m > 0, cap / m.clamp_min(1e-30), torch.full_like(m, math.inf))
            weight_free, value_sat = m.square(), m * cap  # g = sum_sat m cap + lam sum_free m^2
        else:
            tau = torch.where(m > 0, cap, torch.full_like(m, math.inf))
            weight_free, value_sat = m, m * cap  # g = sum_sat m cap + t sum_free m
        tau_s, order = tau.sort(dim=1)
        finite = torch.isfinite(tau_s)
        sat = torch.cumsum(torch.where(finite, value_sat.gather(1, order), 0), dim=1)
        free_w = weight_free.gather(1, order)
        free = torch.flip(torch.cumsum(torch.flip(free_w, [1]), dim=1), [1])
        free_after = torch.cat([free[:, 1:], torch.zeros_like(free[:, :1])], dim=1)
        g_at = torch.where(finite, sat + tau_s * free_after, torch.full_like(sat, math.inf))
        k = (g_at <= need).sum(dim=1, keepdim=True)
        ranks = torch.arange(d, device=point.device).expand_as(order)
        saturated = torch.empty_like(order).scatter_(1, order, ranks) < k
        s_k = torch.where(saturated, value_sat, 0).sum(dim=1, keepdim=True)
        q_k = torch.where(saturated, 0, weight_free).sum(dim=1, keepdim=True)
        level = ((need - s_k) / q_k.clamp_min(1e-30)).clamp_min(0)
        a = torch.minimum(level * (m if p == 2 else torch.ones_like(m)), cap)
    a = torch.where(gain_all <= need, cap, a)  # unreachable: go as far as the box allows
    return direction * a


def _norm(delta: Tensor, p: float) -> Tensor:
    flat = delta.reshape(delta.shape[0], -1)
    if p == 1:
        return flat.abs().sum(dim=1)
    if p == 2:
        return flat.norm(dim=1)
    return flat.abs().amax(dim=1)


def _check(steps, restarts, alpha_max, eta, beta, candidates) -> None:
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    check_positive_int(candidates, "candidates", minimum=2)
    for value, what, lo, hi in (
        (alpha_max, "alpha_max", 0, 1),
        (beta, "beta", 0, 1),
        (eta, "eta", 1, 10),
    ):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
            raise UserError(f"fab: {what} must be in [{lo}, {hi}]; got {value!r}")


class _Run:
    """State shared by the FAB variants within one call."""

    def __init__(self, problem: Problem, rng: KeyedRNG | TorchRNG, p: float) -> None:
        self.problem = problem
        self.rng = rng
        self.p = p
        self.finite = torch.isfinite(problem.eps)
        self.norm = torch.where(problem.clean_success, 0.0, math.inf).to(problem.x.dtype)
        self.best = Best(problem.x, -self.norm.clone(), problem.clean_success)
        problem.best = self.best

    def done(self) -> Tensor:
        """Samples that need no more work: a success inside the budget (finite eps only)."""
        return self.best.success & self.finite & (self.norm <= self.problem.eps)

    def pending(self, restart: int, early_stop: bool) -> Tensor:
        """Samples to run next: not done, and for random restarts only those with a radius."""
        todo = ~self.done() if early_stop else torch.ones_like(self.best.success)
        if restart > 0:  # random restarts need a finite radius: eps or a norm found so far
            todo = todo & torch.isfinite(torch.minimum(self.problem.eps, self.norm))
        return todo.nonzero().squeeze(1)

    def start(self, sid: Tensor, restart: int, stream: int = 0) -> Tensor:
        """``x`` for the first restart, else a random point at half the best radius so far."""
        x0 = self.problem.x[sid]
        if restart == 0:
            return x0.clone()
        radius = torch.minimum(self.problem.eps[sid], self.norm[sid])
        radius = torch.where(torch.isfinite(radius), radius, torch.zeros_like(radius)) / 2
        threat = self.problem.threat._with_eps_unchecked(radius)
        return threat.random_start(x0, self.rng.stream(stream).rows(sid, restart))

    def walk(self, sid, start, gaps, pick, steps, alpha_max, eta, beta, early_stop) -> None:
        """One FAB run from ``start`` on rows ``sid``.

        ``gaps(logits, sid) -> (n, K)`` are the functions whose zero level is the boundary
        (negative on the clean side) and ``pick(values, jac) -> index`` picks the hyperplane.
        """
        problem, p = self.problem, self.p
        low, high = problem.threat.low, problem.threat.high
        x_orig, cur = problem.x[sid], start
        for _ in range(steps):
            if early_stop:
                keep = ~self.done()[sid]
                if not bool(keep.all()):
                    sid, x_orig, cur = sid[keep], x_orig[keep], cur[keep]
                    if sid.numel() == 0:
                        return
            values, jac, logits = problem.values_and_jacobian(cur, sid, gaps)
            success = problem.succeeded(logits, sid)
            self._record(sid, cur, success)
            s = pick(values, jac)
            rows = torch.arange(sid.numel(), device=sid.device)
            w = jac[rows, s].reshape(sid.numel(), -1)
            flat_cur, flat_orig = cur.reshape(sid.numel(), -1), x_orig.reshape(sid.numel(), -1)
            b = values[rows, s] - (w * flat_cur).sum(dim=1)
            d_cur = hyperplane_step(flat_cur, w, b, low, high, p)
            d_orig = hyperplane_step(flat_orig, w, b, low, high, p)
            n_cur, n_orig = _norm(d_cur, p), _norm(d_orig, p)
            alpha = (n_cur / (n_cur + n_orig).clamp_min(1e-30)).clamp(max=alpha_max)
            alpha = view_rows(alpha, flat_cur)
            nxt = (1 - alpha) * (flat_cur + eta * d_cur) + alpha * (flat_orig + eta * d_orig)
            nxt = nxt.clamp(low, high).reshape(cur.shape)
            logits = problem.forward(nxt, sid)
            success = problem.succeeded(logits, sid)
            self._record(sid, nxt, success)
            back = (1 - beta) * x_orig + beta * nxt
            cur = torch.where(view_rows(success, nxt), back, nxt).clamp(low, high)

    def _record(self, sid: Tensor, x_rows: Tensor, success: Tensor) -> None:
        if not bool(success.any()):
            return
        sid, x_rows = sid[success], x_rows[success]
        size = _norm(x_rows - self.problem.x[sid], self.p)
        self.best.update(sid, x_rows, -size, torch.ones_like(sid, dtype=torch.bool))
        self.norm = -self.best.score.clone()
        self.norm[~self.best.success] = math.inf

    def result(self) -> AttackResult:
        problem = self.problem
        labels = problem.y
        x_adv = self.best.x
        if problem.n:  # project only what lies outside: projecting re-rounds points inside
            inside = problem.threat.contains(x_adv, problem.x)
            x_adv = torch.where(
                view_rows(inside, x_adv), x_adv, problem.threat.project(x_adv, problem.x)
            )

        def goal(logits: Tensor, sid: Tensor) -> Tensor:
            return margin(logits, labels[sid], problem.targeted)

        return problem.finish(x_adv, goal)


def _dual_norm(jac: Tensor, p: float) -> Tensor:
    flat = jac.reshape(jac.shape[0], jac.shape[1], -1)
    if p == 2:
        return flat.norm(dim=2)
    if p == 1:
        return flat.abs().amax(dim=2)
    return flat.abs().sum(dim=2)


@register(
    "fab",
    norms=("linf", "l2", "l1"),
    targeted=True,
    minimum_norm=True,
    paper=_PAPER,
    defaults="steps = 100, restarts = 1, eta = 1.05, alpha_max = 0.1, beta = 0.9",
)
def fab(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    steps: int = 100,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    candidates: int = 10,
    early_stop: bool = True,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """FAB for L∞, L2 and L1: the smallest adversarial it finds, projected on the threat.

    Args:
        steps: iterations per restart; restarts: the first from ``x``, later ones random.
        alpha_max, eta, beta: the paper's bias towards ``x``, overshoot and backward step.
        candidates: the classes considered (the most likely at the clean point, incl. ``y``).
        early_stop: with a finite eps, stop a sample once it has an adversarial inside the ball.
    """
    _check(steps, restarts, alpha_max, eta, beta, candidates)
    with frozen_eval(model):
        problem = Problem("fab", model, x, y, threat, targeted)
        run = _Run(problem, make_rng(problem.x, seed, generator), threat.p)
        if problem.n == 0:
            return run.result()
        labels = problem.y
        k = min(candidates, problem.n_classes) - 1
        others = problem.clean_logits.scatter(1, labels.reshape(-1, 1), float("-inf"))
        classes = others.topk(k, dim=1).indices

        def gaps(logits: Tensor, sid: Tensor) -> Tensor:
            own = logits.gather(1, labels[sid].reshape(-1, 1))
            other = logits.gather(1, classes[sid])
            return own - other if targeted else other - own

        def pick(values: Tensor, jac: Tensor) -> Tensor:
            if targeted:  # the strongest competitor of the target
                return values.argmin(dim=1)
            return (values.abs() / _dual_norm(jac, threat.p).clamp_min(1e-12)).argmin(dim=1)

        for restart in range(restarts):
            sid = run.pending(restart, early_stop)
            if sid.numel() == 0:
                break
            run.walk(
                sid, run.start(sid, restart), gaps, pick, steps, alpha_max, eta, beta, early_stop
            )
        return run.result()


@register(
    "fab-t",
    norms=("linf", "l2", "l1"),
    targeted=False,
    minimum_norm=True,
    paper=_PAPER,
    defaults="n_targets = 9, steps = 100 per target, eta = 1.05, alpha_max = 0.1, beta = 0.9",
)
def fab_t(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    n_targets: int = 9,
    steps: int = 100,
    restarts: int = 1,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    early_stop: bool = True,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """FAB-T (AutoAttack): FAB along ``f_t - f_y`` for each of the ``n_targets`` most likely
    wrong classes ``t`` in turn; untargeted success (``y`` holds the true labels)."""
    _check(steps, restarts, alpha_max, eta, beta, 2)
    check_positive_int(n_targets, "n_targets")
    with frozen_eval(model):
        problem = Problem("fab-t", model, x, y, threat, targeted)
        run = _Run(problem, make_rng(problem.x, seed, generator), threat.p)
        if problem.n == 0:
            return run.result()
        labels = problem.y
        others = problem.clean_logits.scatter(1, labels.reshape(-1, 1), float("-inf"))
        ranked = others.argsort(dim=1, descending=True, stable=True)

        def first(values: Tensor, jac: Tensor) -> Tensor:
            return torch.zeros(values.shape[0], dtype=torch.long, device=values.device)

        for j in range(min(n_targets, problem.n_classes - 1)):
            target = ranked[:, j : j + 1]

            def gaps(logits: Tensor, sid: Tensor, target: Tensor = target) -> Tensor:
                own = logits.gather(1, labels[sid].reshape(-1, 1))
                return logits.gather(1, target[sid]) - own

            for restart in range(restarts):
                sid = run.pending(restart, early_stop)
                if sid.numel() == 0:
                    break
                start = run.start(sid, restart, stream=j)
                run.walk(sid, start, gaps, first, steps, alpha_max, eta, beta, early_stop)
        return run.result()
