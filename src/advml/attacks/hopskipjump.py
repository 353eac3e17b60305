r"""HopSkipJumpAttack (Chen, Jordan & Wainwright 2020, "HopSkipJumpAttack: A Query-Efficient
Decision-Based Attack", IEEE S&P): a minimum-norm attack that sees only the predicted label.

With the decision :math:`\phi(z) = +1` if :math:`z` fools the model, else :math:`-1`, and
:math:`d` features, :math:`\theta = \gamma / d^{3/2}` (L2) or :math:`\gamma / d^2` (L∞):

1. **Initialize** with an adversarial point: uniform noise in the box (up to ``init_trials``
   draws), then a binary search on the blend :math:`(1 - \alpha) x + \alpha\,\text{noise}`
   (tolerance 0.001) — or the ``starting_points`` given.
2. **Binary search** between :math:`x` and the adversarial point :math:`\tilde x_t` to the
   boundary point :math:`x_t` (L2: on the blend factor, threshold :math:`\theta`; L∞: on the
   radius of the box :math:`[x - r, x + r]` the point is clipped to, threshold
   :math:`\min(\theta, \theta \|\tilde x_t - x\|_\infty)`).
3. **Gradient direction** at the boundary from :math:`B_t = \min(B_0 \sqrt t, B_{max})`
   decisions (:math:`B_0 = 100`, :math:`B_{max} = 10^4`) on random unit vectors :math:`u_b`
   (Gaussian for L2, uniform in :math:`[-1, 1]^d` for L∞), with the baseline subtracted:

   .. math::  \widehat{\nabla S} = \frac{1}{B_t} \sum_b \big(\phi(x_t + \delta_t u_b)
              - \bar\phi\big)\, u_b, \qquad
              \delta_t = \sqrt d\, \theta\, \|\tilde x_{t} - x\| \;(L_2),
              \quad d\,\theta\,\|\tilde x_t - x\|_\infty \;(L_\infty)

   (:math:`\delta_1 = 0.1 \times` the box width); the update direction is
   :math:`v = \widehat{\nabla S} / \|\widehat{\nabla S}\|_2` (L2) or its sign (L∞).
4. **Geometric step search**: :math:`\xi = \|x_t - x\| / \sqrt t`, halved until
   :math:`x_t + \xi v` (clipped to the box) is adversarial; it is the next :math:`\tilde
   x_{t+1}`. Back to 2.

Every query whose answer is "adversarial" is a candidate: the smallest adversarial point seen
(boundary points, accepted steps and gradient probes) is kept per sample. With a finite
``eps`` a sample stops once it has one inside the ball; at the end a sample whose smallest
adversarial lies outside is projected onto the threat model and that point is returned if
one more query says it still fools the model, else ``x`` is returned (success False). With
``eps = inf`` it is a pure minimum-norm attack and ``result.norm`` is the distance found.

Batched: all samples run the iterations in lockstep; step sizes, thresholds and searches are
per-sample tensors and a sample leaves a search as soon as its own search is done. Random
vectors are keyed per sample (:mod:`advml.attacks.rng`): with ``seed`` the result does not
depend on the batch. ``max_queries`` bounds every sample's queries (clean pass and final
check included): a sample stops before an iteration it could not finish within the budget.
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
from advml.threats import ThreatModel, _normal

__all__ = ["hopskipjump"]

_PAPER = (
    "Chen, Jordan & Wainwright 2020, HopSkipJumpAttack: A Query-Efficient Decision-Based Attack"
)
#: Halvings of the geometric step search before it gives up (the paper halves until success).
MAX_HALVINGS = 20
_BLEND_TOL = 0.001
_BLEND_STEPS = math.ceil(math.log2(1 / _BLEND_TOL))  # 10 bisections of [0, 1]


class _Run:
    """State of one call: the problem, the smallest adversarial per sample, the budget."""

    def __init__(
        self,
        problem: Problem,
        *,
        gamma: float,
        max_queries: int | None,
        max_batch: int,
        rng: KeyedRNG | TorchRNG,
    ) -> None:
        self.problem = problem
        self.threat = problem.threat
        self.l2 = problem.threat.name == "l2"
        self.d = max(1, math.prod(problem.x.shape[1:]))
        self.theta = gamma / (self.d**1.5 if self.l2 else self.d**2)
        self.width = self.threat.high - self.threat.low
        if self.l2:
            self.bs_steps = math.ceil(math.log2(1 / self.theta)) + 1 if self.theta < 1 else 1
        else:
            self.bs_steps = math.ceil(math.log2(max(1.0, self.width) / self.theta)) + 1
        self.max_queries = max_queries
        self.max_batch = max_batch
        self.rng = rng
        self.finite = torch.isfinite(problem.eps)
        # final check, plus the check of a projected point when eps is finite
        self.reserve = 1 + self.finite.long()
        x = problem.x
        self.norm = torch.where(problem.clean_success, 0.0, math.inf).to(x.dtype)
        self.best = Best(x, -self.norm.clone(), problem.clean_success)
        problem.best = self.best

    # ---- queries -----------------------------------------------------------------------

    def decide(self, x_rows: Tensor, sid: Tensor) -> Tensor:
        """Whether each row fools the model: the only thing this attack asks the model."""
        out = []
        for start in range(0, sid.numel(), self.max_batch):
            part = slice(start, start + self.max_batch)
            logits = self.problem.forward(x_rows[part], sid[part])
            out.append(self.problem.succeeded(logits, sid[part]))
        if not out:
            return torch.zeros(0, dtype=torch.bool, device=sid.device)
        return torch.cat(out)

    def afford(self, sid: Tensor, cost: int) -> Tensor:
        """Rows that can spend ``cost`` more queries and still end within ``max_queries``."""
        if self.max_queries is None:
            return torch.ones_like(sid, dtype=torch.bool)
        used = self.problem.queries[sid] + self.reserve[sid]
        return used + cost <= self.max_queries

    def done(self) -> Tensor:
        """Samples with an adversarial inside a finite ball (nothing left to gain)."""
        return self.best.success & self.finite & (self.norm <= self.problem.eps)

    def distance(self, x_rows: Tensor, sid: Tensor) -> Tensor:
        return self.threat.norm(x_rows - self.problem.x[sid])

    def record(self, sid: Tensor, x_rows: Tensor, adversarial: Tensor | None = None) -> None:
        """Offer adversarial rows (all rows when ``adversarial`` is None) as candidates."""
        if adversarial is not None:
            sid, x_rows = sid[adversarial], x_rows[adversarial]
        if sid.numel() == 0:
            return
        size = self.distance(x_rows, sid)
        self.best.update(sid, x_rows, -size, torch.ones_like(sid, dtype=torch.bool))
        self.norm = torch.where(self.best.success, -self.best.score, math.inf)

    # ---- the steps -----------------------------------------------------------------------

    def initialize(
        self, sid: Tensor, starting_points: Tensor | None, init_trials: int
    ) -> tuple[Tensor, Tensor]:
        """Adversarial starting points for rows ``sid``: ``(found mask, points)``."""
        problem = self.problem
        x0 = problem.x[sid]
        found = torch.zeros_like(sid, dtype=torch.bool)
        points = x0.clone()
        if starting_points is not None:
            can = self.afford(sid, 1 + self.bs_steps)
            rows = can.nonzero().squeeze(1)
            given = starting_points[sid[rows]]
            hit = self.decide(given, sid[rows])
            found[rows[hit]] = True
            points[rows[hit]] = given[hit]
        noise_found = torch.zeros_like(found)
        noise = x0.clone()
        low, width = self.threat.low, self.width
        for trial in range(init_trials):
            rows = ~found & ~noise_found & self.afford(sid, 1 + _BLEND_STEPS + self.bs_steps)
            rows = rows.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            r = self.rng.stream(1).rows(sid[rows], trial)
            u = r.uniform((rows.numel(), self.d), dtype=x0.dtype, device=x0.device)
            draw = (low + width * u).reshape(x0[rows].shape).to(x0.dtype)
            draw = self.threat.clip_box(draw)
            hit = self.decide(draw, sid[rows])
            noise_found[rows[hit]] = True
            noise[rows[hit]] = draw[hit]
        rows = noise_found.nonzero().squeeze(1)
        if rows.numel():  # blended uniform noise: bisect the blend factor
            lo = torch.zeros(rows.numel(), dtype=x0.dtype, device=x0.device)
            hi = torch.ones_like(lo)
            a, b = x0[rows], noise[rows]
            for _ in range(_BLEND_STEPS):
                mid = (lo + hi) / 2
                hit = self.decide(self.threat.clip_box(_blend(a, b, mid)), sid[rows])
                hi = torch.where(hit, mid, hi)
                lo = torch.where(hit, lo, mid)
            blended = torch.where(view_rows(hi < 1, a), self.threat.clip_box(_blend(a, b, hi)), b)
            points[rows] = blended
            found[rows] = True
        return found, points

    def boundary(self, sid: Tensor, adv: Tensor) -> tuple[Tensor, Tensor]:
        """Binary search from the adversarial rows ``adv`` towards ``x``: the boundary points
        (adversarial side) and the distance of ``adv`` (the paper's ``dist_post_update``)."""
        x0 = self.problem.x[sid]
        dist_post = self.distance(adv, sid)
        if self.l2:
            hi = torch.ones_like(dist_post)
            threshold = torch.full_like(dist_post, self.theta)
        else:
            hi = dist_post.clone()
            threshold = torch.clamp(dist_post * self.theta, max=self.theta)
        start = hi.clone()
        lo = torch.zeros_like(hi)
        for _ in range(self.bs_steps + 1):
            active = (hi - lo > threshold).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            mid = (hi[active] + lo[active]) / 2
            cand = self._toward(x0[active], adv[active], mid)
            hit = self.decide(cand, sid[active])
            hi[active] = torch.where(hit, mid, hi[active])
            lo[active] = torch.where(hit, lo[active], mid)
        out = torch.where(view_rows(hi == start, adv), adv, self._toward(x0, adv, hi))
        self.record(sid, out)
        return out, dist_post

    def _toward(self, x0: Tensor, adv: Tensor, alpha: Tensor) -> Tensor:
        if self.l2:
            return self.threat.clip_box(_blend(x0, adv, alpha))
        r = view_rows(alpha, x0)
        return torch.minimum(torch.maximum(adv, x0 - r), x0 + r)

    def direction(self, sid: Tensor, point: Tensor, delta: Tensor, evals: int, t: int) -> Tensor:
        """The estimated gradient direction of the boundary at ``point`` (unit L2 norm, or its
        sign for L∞), from ``evals`` decisions per row."""
        rows = sid.numel()
        per_pass = max(1, self.max_batch // evals)
        base = self.rng.stream(2).rows(sid, t)
        out = []
        for start in range(0, rows, per_pass):
            idx = torch.arange(start, min(start + per_pass, rows), device=sid.device)
            k = idx.numel()
            r = base.rows(idx) if isinstance(base, KeyedRNG) else base
            shape = (k, evals * self.d)
            if self.l2:
                rv = _normal(r, shape, point.dtype, point.device).to(point.dtype)
            else:
                u = r.uniform(shape, dtype=point.dtype, device=point.device)
                rv = 2 * u - 1
            rv = rv.reshape(k, evals, self.d)
            rv = rv / rv.norm(dim=2, keepdim=True).clamp_min(1e-30)
            centre = point[idx].reshape(k, 1, self.d)
            dl = delta[idx].reshape(k, 1, 1)
            probes = self.threat.clip_box(centre + dl * rv)
            rv = (probes - centre) / dl
            rep = sid[idx].repeat_interleave(evals)
            flat_probes = probes.reshape((k * evals, *point.shape[1:]))
            hit = self.decide(flat_probes, rep)
            self.record(rep, flat_probes, hit)
            fval = 2.0 * hit.reshape(k, evals, 1).to(point.dtype) - 1.0
            mean = fval.mean(dim=1, keepdim=True)
            centred = (fval - mean) * rv
            grad = torch.where(
                mean == 1.0,
                rv.mean(dim=1, keepdim=True),
                torch.where(mean == -1.0, -rv.mean(dim=1, keepdim=True), centred.mean(1, True)),
            ).squeeze(1)
            grad = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)
            out.append(grad if self.l2 else grad.sign())
        return torch.cat(out).reshape(point.shape)

    def step(self, sid: Tensor, point: Tensor, update: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Geometric step search: ``(moved mask, new adversarial points)``."""
        xi = self.distance(point, sid) / math.sqrt(t)
        moved = torch.zeros_like(sid, dtype=torch.bool)
        new = point.clone()
        for _ in range(MAX_HALVINGS + 1):
            active = (~moved).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            cand = self.threat.clip_box(
                point[active] + view_rows(xi[active], point) * update[active]
            )
            hit = self.decide(cand, sid[active])
            moved[active[hit]] = True
            new[active[hit]] = cand[hit]
            self.record(sid[active], cand, hit)
            xi[active] = torch.where(hit, xi[active], xi[active] / 2)
        return moved, new

    def result(self) -> AttackResult:
        """The smallest adversarial inside the threat model (projected if it lies outside and
        the projection still fools the model, else ``x``), checked and re-evaluated."""
        problem, best = self.problem, self.best
        x_adv = best.x.clone()
        if problem.n:
            inside = self.threat.contains(x_adv, problem.x)
            out = (best.success & ~inside).nonzero().squeeze(1)
            if out.numel():
                threat = problem.threat_rows(out)
                proj = threat.project(x_adv[out], problem.x[out])
                hit = self.decide(proj, out)
                x_adv[out] = torch.where(view_rows(hit, proj), proj, problem.x[out])
        labels = problem.y

        def goal(logits: Tensor, sid: Tensor) -> Tensor:
            return margin(logits, labels[sid], problem.targeted)

        return problem.finish(x_adv, goal)


def _blend(a: Tensor, b: Tensor, alpha: Tensor) -> Tensor:
    alpha = view_rows(alpha, a)
    return (1 - alpha) * a + alpha * b


def _check_starting_points(problem: Problem, points: Tensor | None) -> Tensor | None:
    if points is None:
        return None
    if not isinstance(points, Tensor) or points.shape != problem.x.shape:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise UserError(
            f"hopskipjump: starting_points must be a tensor shaped like x "
            f"{tuple(problem.x.shape)}; got {shape}"
        )
    points = points.detach().to(device=problem.x.device, dtype=problem.x.dtype)
    if not torch.isfinite(points).all() or not problem.threat.in_box(points).all():
        raise UserError(
            "hopskipjump: starting_points must be finite and inside the threat's box "
            f"[{problem.threat.low:g}, {problem.threat.high:g}]"
        )
    return points


@register(
    "hopskipjump",
    norms=("l2", "linf"),
    targeted=True,
    kind="decision",
    minimum_norm=True,
    paper=_PAPER,
    defaults="steps = 40, init_evals = 100 (x sqrt(t), at most max_evals = 10,000), gamma = 1, "
    "geometric step search",
)
def hopskipjump(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    steps: int = 40,
    max_queries: int | None = None,
    init_evals: int = 100,
    max_evals: int = 10_000,
    gamma: float = 1.0,
    init_trials: int = 100,
    starting_points: Tensor | None = None,
    early_stop: bool = True,
    max_batch: int = 8192,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """HopSkipJumpAttack (L2 and L∞), decision-based: only the predicted label is used.

    Args:
        steps: iterations (gradient estimate + step + binary search each); about
            ``sum_t 100 sqrt(t)`` ≈ 17,000 queries per sample for 40.
        max_queries: optional budget per sample, clean pass and final check included
            (``result.queries <= max_queries``); a sample stops before an iteration that
            might not fit.
        init_evals, max_evals: decisions per gradient estimate, ``init_evals * sqrt(t)`` up to
            ``max_evals``.
        gamma: sets the binary-search threshold ``theta = gamma / d^(3/2)`` (L2) or
            ``gamma / d^2`` (L∞) and with it the probe size ``delta_t``.
        init_trials: uniform-noise draws to find a first adversarial point.
        starting_points: adversarial inputs shaped like ``x`` to start from (e.g. images of
            the target class for a targeted attack); samples where they are not adversarial
            fall back to noise.
        early_stop: with a finite eps, stop a sample once it has an adversarial inside the
            ball (``eps = inf``: every sample runs every iteration).
        max_batch: at most this many rows per forward pass.
        seed, generator: randomness (see :func:`advml.attacks.rng.make_rng`).
    """
    check_positive_int(steps, "steps")
    check_positive_int(init_evals, "init_evals")
    check_positive_int(max_evals, "max_evals")
    check_positive_int(init_trials, "init_trials", minimum=0)
    check_positive_int(max_batch, "max_batch")
    if max_queries is not None:
        check_positive_int(max_queries, "max_queries", minimum=2)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma < math.inf:
        raise UserError(f"hopskipjump: gamma must be a positive number; got {gamma!r}")
    with frozen_eval(model):
        problem = Problem("hopskipjump", model, x, y, threat, targeted)
        if not (math.isfinite(threat.low) and math.isfinite(threat.high)):
            raise UserError("hopskipjump: needs a bounded box (finite low and high)")
        starting_points = _check_starting_points(problem, starting_points)
        run = _Run(
            problem,
            gamma=float(gamma),
            max_queries=max_queries,
            max_batch=max_batch,
            rng=make_rng(problem.x, seed, generator),
        )
        if problem.n == 0:
            return run.result()
        sid = (~problem.clean_success & (problem.eps > 0)).nonzero().squeeze(1)
        found, points = run.initialize(sid, starting_points, init_trials)
        sid, points = sid[found], points[found]
        if sid.numel() == 0:
            return run.result()
        current, dist_post = run.boundary(sid, points)
        for t in range(1, steps + 1):
            evals = min(int(init_evals * math.sqrt(t)), max_evals)
            keep = run.afford(sid, evals + MAX_HALVINGS + 1 + run.bs_steps)
            if early_stop:
                keep = keep & ~run.done()[sid]
            if not bool(keep.all()):
                sid, current, dist_post = sid[keep], current[keep], dist_post[keep]
            if sid.numel() == 0:
                break
            if t == 1:
                delta = torch.full_like(dist_post, 0.1 * run.width)
            else:
                delta = (math.sqrt(run.d) if run.l2 else run.d) * run.theta * dist_post
            delta = delta.clamp_min(torch.finfo(current.dtype).tiny)
            update = run.direction(sid, current, delta, evals, t)
            moved, new = run.step(sid, current, update, t)
            rows = moved.nonzero().squeeze(1)
            if rows.numel():
                boundary, post = run.boundary(sid[rows], new[rows])
                current[rows] = boundary
                dist_post[rows] = post
        return run.result()
