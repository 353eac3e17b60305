r"""Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV): a score-based attack
that needs only the model's outputs, no gradient.

Random search on the objective :math:`L` (to maximize; the paper minimizes its negative): from
a starting point :math:`\hat x`, propose :math:`\hat x_{new} = \Pi_{S(x)}(\hat x + \delta)` with a
random *square* update :math:`\delta` and keep it iff it raises the objective (or already
fools the model). The side of the square shrinks with the iterations: its area is a fraction
:math:`p` of the image, :math:`p_0 = 0.8` halved at the iterations
``10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000`` of a 10,000-query run, the schedule rescaled
to ``n_queries``.

* **L∞**: start from vertical stripes, :math:`\hat x = \mathrm{clip}(x + \varepsilon\,\rho)`
  with one random sign :math:`\rho` per (channel, column); an update sets one random
  ``s × s`` window to :math:`x \pm \varepsilon` (one sign per channel: a step of :math:`\pm
  2\varepsilon` then the projection), redrawing the signs while the window would not change,
  with :math:`s = \mathrm{round}(\sqrt{p\,h\,w})` limited to ``[1, h - 1]``.
* **L2**: start from a grid of ``h/5``-sized pseudo-Gaussian bumps with random signs, rescaled
  to norm :math:`\varepsilon`; an update picks two random windows of odd side
  :math:`s \ge 3`, moves the perturbation's mass of both windows (plus the budget left,
  :math:`\varepsilon^2 - \|\delta\|_2^2`) into the first one as old shape + a new random bump
  :math:`\eta` (two pseudo-Gaussian halves of opposite sign, randomly transposed), empties the
  second, rescales to norm :math:`\varepsilon` and clips to the box.

Objective: the logit margin :math:`\max_{j \ne y} z_j - z_y` for untargeted attacks and minus
the cross-entropy of the target for targeted ones, as in the paper (``loss=`` overrides).

Batched: every sample proposes its own window (position, signs, bump orientation) at each
iteration and is queried once; samples that succeed leave the batch. Randomness comes from a
counter-based generator keyed per sample (:mod:`advml.attacks.rng`), so with ``seed`` the
result does not depend on the batch it was computed in. Inputs that are not images
(``(N, D)`` or ``(N, C, L)``) use 1-D windows covering a fraction :math:`p` of the features.

``n_queries`` is the *total* number of model queries per sample, the clean pass included (the
final check reuses the logits of the best query): ``result.queries <= n_queries`` always (5000 =
AutoAttack's standard).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advml.attacks.base import AttackResult, Problem, frozen_eval, view_rows
from advml.attacks.iterative import check_positive_int
from advml.attacks.losses import Loss, objective
from advml.attacks.registry import register
from advml.attacks.rng import KeyedRNG, TorchRNG, make_rng
from advml.errors import UserError
from advml.threats import ThreatModel

__all__ = ["p_schedule", "pseudo_gaussian_bump", "square"]

_PAPER = (
    "Andriushchenko et al. 2020, Square Attack: a query-efficient black-box adversarial attack "
    "via random search"
)
_CHECKPOINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_SIGN_RETRIES = 10


def p_schedule(p_init: float, iteration: int, n_queries: int) -> float:
    """The fraction of the image a square covers at ``iteration`` (0-based), as in the paper:
    ``p_init`` halved after each of the checkpoints ``10, 50, ..., 8000`` of a 10,000-query
    run, rescaled to ``n_queries``."""
    it = int(iteration / n_queries * 10000)
    halvings = sum(1 for c in _CHECKPOINTS if it > c)
    return p_init / 2**halvings


def pseudo_gaussian_bump(a: int, b: int, dtype=torch.float32, device=None) -> Tensor:
    """The paper's ``a × b`` bump: concentric rectangles around ``(a // 2, b // 2)``, the one of
    Chebyshev radius ``k`` adding ``1 / (k + 1)^2``; unit L2 norm."""
    i = torch.arange(a, device=device, dtype=torch.float64).reshape(-1, 1)
    j = torch.arange(b, device=device, dtype=torch.float64).reshape(1, -1)
    radius = torch.maximum((i - a // 2).abs(), (j - b // 2).abs()).long()
    rings = max(a // 2 + 1, b // 2 + 1)
    weights = 1.0 / torch.arange(1, rings + 1, device=device, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[k] = sum_{k' >= k} weights[k']
    bump = tail[radius.clamp(max=rings - 1)]
    return (bump / bump.norm().clamp_min(1e-30)).to(dtype)


def _eta(a: int, b: int, dtype, device) -> Tensor:
    """Two bumps of opposite sign: split along the rows (along the columns for one row)."""
    if a == 1:
        if b == 1:
            return torch.ones(1, 1, dtype=dtype, device=device)
        return _eta(b, 1, dtype, device).T.contiguous()
    top = pseudo_gaussian_bump(a // 2, b, torch.float64, device) if a // 2 else None
    bottom = -pseudo_gaussian_bump(a - a // 2, b, torch.float64, device)
    eta = bottom if top is None else torch.cat([top, bottom], dim=0)
    return (eta / eta.norm().clamp_min(1e-30)).to(dtype)


def _layout(x: Tensor) -> tuple[int, int, int]:
    """``(c, h, w)``: images as they are; ``(N, C, L)`` as ``C × 1 × L``; ``(N, D)`` as
    ``1 × 1 × D``; more dimensions fold into the width."""
    shape = x.shape[1:]
    if len(shape) == 1:
        return 1, 1, shape[0]
    if len(shape) == 2:
        return shape[0], 1, shape[1]
    return shape[0], shape[1], math.prod(shape[2:])


class _Draws:
    """The uniform numbers of one iteration, drawn in one call, handed out column by column."""

    def __init__(self, rng: KeyedRNG | TorchRNG, rows: int, count: int, ref: Tensor) -> None:
        self.u = rng.uniform((rows, count), dtype=torch.float64, device=ref.device)
        self.at, self.dtype = 0, ref.dtype

    def take(self, k: int) -> Tensor:
        out = self.u[:, self.at : self.at + k]
        self.at += k
        return out

    def ints(self, k: int, high: Tensor | int) -> Tensor:
        """Uniform integers in ``[0, high)``, shape ``(rows, k)``."""
        high = torch.as_tensor(high, device=self.u.device)
        return (self.take(k) * high).floor().long().clamp_max(high - 1)

    def signs(self, k: int) -> Tensor:
        return torch.where(self.take(k) < 0.5, -1.0, 1.0).to(self.dtype)


class _Windows:
    """Per-row windows of size ``sh × sw`` at random positions on an ``h × w`` grid."""

    def __init__(self, draws: _Draws, h: int, w: int, sh: int, sw: int) -> None:
        pos = draws.ints(2, torch.tensor([h - sh + 1, w - sw + 1]))
        self.top, self.left, self.sh, self.sw = pos[:, :1], pos[:, 1:], sh, sw
        ih = torch.arange(h, device=pos.device).reshape(1, -1)
        iw = torch.arange(w, device=pos.device).reshape(1, -1)
        self.li, self.lj = ih - self.top, iw - self.left  # local coordinates (rows, h), (rows, w)
        in_h = (self.li >= 0) & (self.li < sh)
        in_w = (self.lj >= 0) & (self.lj < sw)
        self.mask = (in_h.unsqueeze(2) & in_w.unsqueeze(1)).unsqueeze(1)  # (rows, 1, h, w)

    def place(self, pattern: Tensor) -> Tensor:
        """``pattern`` ``(rows, sh, sw)`` at each row's window, zero elsewhere: ``(rows,1,h,w)``."""
        rows = pattern.shape[0]
        li = self.li.clamp(0, self.sh - 1).unsqueeze(2)
        lj = self.lj.clamp(0, self.sw - 1).unsqueeze(1)
        index = (li * self.sw + lj).reshape(rows, -1)
        placed = pattern.reshape(rows, -1).gather(1, index).reshape(self.mask.shape)
        return torch.where(self.mask, placed, torch.zeros_like(placed))


def _linf_side(p: float, h: int, w: int) -> tuple[int, int]:
    if h == 1:
        return 1, min(max(round(p * w), 1), max(w - 1, 1))
    s = min(max(round(math.sqrt(p * h * w)), 1), max(min(h, w) - 1, 1))
    return s, s


def _l2_side(p: float, h: int, w: int) -> tuple[int, int]:
    if h == 1:
        s = max(round(p * w), 3)
        s = s + 1 if s % 2 == 0 else s
        return 1, min(s, w)
    s = max(round(math.sqrt(p * h * w)), 3)
    s = s + 1 if s % 2 == 0 else s
    s = min(s, h, w)
    return s, s


class _Search:
    """Random-search state of the rows still attacked (images viewed as ``(rows, c, h, w)``)."""

    def __init__(self, problem: Problem, goal, sid: Tensor, x_best: Tensor) -> None:
        self.problem, self.goal = problem, goal
        self.shape = problem.x.shape[1:]
        self.c, self.h, self.w = _layout(problem.x)
        self.sid = sid
        self.x0 = self.view(problem.x[sid])
        self.eps = view_rows(problem.eps[sid].to(problem.x.dtype), self.x0)
        self.best = x_best
        self.value = torch.empty(0)
        self.success = torch.empty(0)
        self._etas: dict[tuple[int, int], Tensor] = {}

    def eta(self, a: int, b: int) -> Tensor:
        if (a, b) not in self._etas:
            self._etas[(a, b)] = _eta(a, b, self.x0.dtype, self.x0.device)
        return self._etas[(a, b)]

    def view(self, t: Tensor) -> Tensor:
        return t.reshape(t.shape[0], self.c, self.h, self.w)

    def evaluate(self, candidate: Tensor) -> tuple[Tensor, Tensor]:
        problem = self.problem
        x_rows = candidate.reshape((-1, *self.shape))
        logits = problem.forward(x_rows, self.sid)
        value = self.goal(logits, self.sid)
        success = problem.succeeded(logits, self.sid)
        assert problem.best is not None
        problem.best.update(self.sid, x_rows, value, success, unique=True, logits=logits)
        return value, success

    def start(self, candidate: Tensor) -> None:
        self.best = candidate
        self.value, self.success = self.evaluate(candidate)

    def step(self, candidate: Tensor) -> None:
        value, success = self.evaluate(candidate)
        accept = (value > self.value) | (success & ~self.success)
        self.best = torch.where(view_rows(accept, candidate), candidate, self.best)
        self.value = torch.where(accept, value, self.value)
        self.success = self.success | success

    def keep(self, keep: Tensor) -> None:
        self.sid, self.x0, self.eps = self.sid[keep], self.x0[keep], self.eps[keep]
        self.best, self.value, self.success = self.best[keep], self.value[keep], self.success[keep]

    # ---- L∞ ------------------------------------------------------------------------------

    def draws(self, rng: KeyedRNG | TorchRNG, count: int) -> _Draws:
        return _Draws(rng, self.x0.shape[0], count, self.x0)

    def linf_init(self, rng: KeyedRNG | TorchRNG) -> Tensor:
        signs = self.draws(rng, self.c * self.w).signs(self.c * self.w)
        stripes = signs.reshape(-1, self.c, 1, self.w)
        return self.problem.threat.clip_box(self.x0 + self.eps * stripes)

    def linf_update(self, rng: KeyedRNG | TorchRNG, p: float) -> Tensor:
        rows, c = self.x0.shape[0], self.c
        draws = self.draws(rng, 3 + c)
        sh, sw = _linf_side(p, self.h, self.w)
        win = _Windows(draws, self.h, self.w, sh, sw)
        signs = draws.signs(c)
        flips = draws.ints(1, 2**c - 1) + 1 if c <= 30 else None

        def propose(signs: Tensor) -> tuple[Tensor, Tensor]:
            value = self.problem.threat.clip_box(self.x0 + self.eps * signs.reshape(rows, c, 1, 1))
            same = ((value - self.best).abs() < 1e-7) | ~win.mask
            return value, same.flatten(1).all(dim=1)

        value, unchanged = propose(signs)
        if flips is not None and bool(unchanged.any()):
            # The paper redraws signs that would leave the window as it is. Only one sign
            # vector does (one sign per channel reproduces the window), so the redraw is
            # uniform over the 2^c - 1 others: flip the channels of a random non-zero mask.
            bits = (flips >> torch.arange(c, device=flips.device)) & 1
            other = signs * (1 - 2 * bits).to(signs.dtype)
            value, _ = propose(torch.where(unchanged.reshape(-1, 1), other, signs))
        return torch.where(win.mask, value, self.best)

    # ---- L2 ------------------------------------------------------------------------------

    def _norm(self, t: Tensor, dims=(1, 2, 3)) -> Tensor:
        return t.square().sum(dim=dims, keepdim=True).sqrt()

    def _rescale(self, delta: Tensor) -> Tensor:
        """``clip(x + eps · delta / ||delta||)`` (``x`` where ``delta`` vanished: two opposite
        bumps can cancel exactly)."""
        norm = self._norm(delta)
        unit = delta / norm.clamp_min(torch.finfo(delta.dtype).tiny)
        scaled = torch.where(norm > 0, self.x0 + unit * self.eps, self.x0)
        return self.problem.threat.clip_box(scaled)

    def l2_init(self, rng: KeyedRNG | TorchRNG) -> Tensor:
        rows, c, h, w = self.x0.shape
        dev = self.x0.device
        qh, qw = max(h // 5, 1), max(w // 5, 1)
        tops = list(range(max((h - 5 * qh) // 2, 0), h - qh + 1, qh))
        lefts = list(range(max((w - 5 * qw) // 2, 0), w - qw + 1, qw))
        tile = torch.full((h, w), -1, dtype=torch.long, device=dev)
        for a, top in enumerate(tops):
            for b, left in enumerate(lefts):
                tile[top : top + qh, left : left + qw] = a * len(lefts) + b
        n_tiles = len(tops) * len(lefts)
        eta = self.eta(qh, qw)
        li = torch.zeros(h, dtype=torch.long, device=dev)  # coordinates inside each tile
        lj = torch.zeros(w, dtype=torch.long, device=dev)
        for top in tops:
            li[top : top + qh] = torch.arange(qh, device=dev)
        for left in lefts:
            lj[left : left + qw] = torch.arange(qw, device=dev)
        straight = eta[li.reshape(-1, 1), lj.reshape(1, -1)]
        flipped = eta.T[li.reshape(-1, 1), lj.reshape(1, -1)] if qh == qw else straight
        draws = self.draws(rng, (c + 1) * n_tiles)
        signs = draws.signs(c * n_tiles).reshape(rows, c, n_tiles)
        flip = draws.signs(n_tiles) > 0  # (rows, n_tiles)
        index = tile.clamp_min(0).reshape(1, -1)
        inside = (tile >= 0).reshape(1, 1, h, w)
        flip_px = flip.gather(1, index.expand(rows, -1)).reshape(rows, 1, h, w)
        sign_px = signs.gather(2, index.reshape(1, 1, -1).expand(rows, c, -1)).reshape(
            rows, c, h, w
        )
        pattern = torch.where(flip_px, flipped.reshape(1, 1, h, w), straight.reshape(1, 1, h, w))
        delta = torch.where(inside, pattern * sign_px, torch.zeros_like(sign_px))
        return self._rescale(delta)

    def l2_update(self, rng: KeyedRNG | TorchRNG, p: float) -> Tensor:
        rows, c, h, w = self.x0.shape
        dt = self.x0.dtype
        draws = self.draws(rng, 5 + c)
        sh, sw = _l2_side(p, h, w)
        delta = self.best - self.x0
        first = _Windows(draws, h, w, sh, sw)
        second = _Windows(draws, h, w, sh, sw)
        both = first.mask | second.mask
        spatial = (2, 3)
        norm_first = self._norm(torch.where(first.mask, delta, 0), spatial)  # (rows, c, 1, 1)
        norm_both = self._norm(torch.where(both, delta, 0), spatial)
        norm_all = self._norm(delta)  # (rows, 1, 1, 1)
        eta = self.eta(sh, sw)
        flip = (draws.signs(1) > 0).reshape(rows, 1, 1)
        pattern = torch.where(flip, eta.T, eta) if sh == sw else eta.expand(rows, sh, sw)
        bump = first.place(pattern.expand(rows, sh, sw))  # (rows, 1, h, w)
        signs = draws.signs(c).reshape(rows, c, 1, 1)
        new = bump * signs + torch.where(first.mask, delta, 0) / (1e-10 + norm_first)
        new_norm = self._norm(new, spatial).clamp_min(torch.finfo(dt).tiny)
        budget = (self.eps.square() - norm_all.square()).clamp_min(0) / c + norm_both.square()
        new = new / new_norm * budget.sqrt()
        delta = torch.where(first.mask, new, torch.where(second.mask, 0, delta))
        return self._rescale(delta)


def _check_p(p_init: float) -> float:
    if isinstance(p_init, bool) or not isinstance(p_init, (int, float)) or not 0 < p_init <= 1:
        raise UserError(f"square: p_init must be in (0, 1]; got {p_init!r}")
    return float(p_init)


@register(
    "square",
    norms=("linf", "l2"),
    targeted=True,
    kind="score",
    paper=_PAPER,
    defaults="n_queries = 5000 (all queries per sample), p_init = 0.8, loss = margin "
    "(targeted: ce)",
)
def square(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    *,
    targeted: bool = False,
    n_queries: int = 5000,
    p_init: float = 0.8,
    loss: str | Loss | None = None,
    early_stop: bool = True,
    seed: int | None = 0,
    generator=None,
) -> AttackResult:
    """Square Attack (L∞ and L2), score-based: only the model's logits are used.

    Args:
        n_queries: total model queries per sample, the clean pass included
            (``result.queries <= n_queries``); the p-schedule is rescaled to it.
        p_init: initial fraction of the image a square covers (0.8 as in the paper for L∞
            and L2; 0.05/0.1 were the authors' choice for undefended ImageNet models).
        loss: ``None`` = the paper's choice (margin, or cross-entropy of the target when
            targeted), else ``"margin"``, ``"ce"``, ``"dlr"`` or a callable
            ``(logits, labels, targeted) -> (N,)`` to maximize.
        early_stop: a sample leaves the batch once it is misclassified (``False``: keep
            raising the objective until the budget is spent).
        seed, generator: randomness (see :func:`advml.attacks.rng.make_rng`); with ``seed``
            the result does not depend on the batch composition.
    """
    check_positive_int(n_queries, "n_queries", minimum=2)
    p_init = _check_p(p_init)
    with frozen_eval(model):
        problem = Problem("square", model, x, y, threat, targeted)
        goal = objective(
            loss if loss is not None else ("ce" if problem.targeted else "margin"),
            problem.y,
            problem.targeted,
        )
        best = problem.start_best(goal)
        if problem.n == 0 or n_queries < 3:
            return problem.finish(best.x, goal)
        if not torch.isfinite(problem.eps).all():
            raise UserError("square: needs a finite eps (its updates have size eps)")
        rng = make_rng(problem.x, seed, generator)
        todo = ~best.success if early_stop else torch.ones_like(best.success)
        sid = (todo & (problem.eps > 0)).nonzero().squeeze(1)  # eps = 0: x is the only point
        if sid.numel() == 0:
            return problem.finish(best.x, goal)
        state = _Search(problem, goal, sid, problem.x[sid])
        linf = threat.name == "linf"
        state.start(
            state.linf_init(_rows(rng, sid, 0)) if linf else state.l2_init(_rows(rng, sid, 0))
        )
        for it in range(n_queries - 2):  # the clean pass and the start are the other 2
            if early_stop:
                keep = ~state.success
                if not bool(keep.all()):
                    state.keep(keep)
                if state.sid.numel() == 0:
                    break
            p = p_schedule(p_init, it, n_queries)
            r = _rows(rng, state.sid, it + 1)
            state.step(state.linf_update(r, p) if linf else state.l2_update(r, p))
        return problem.finish(best.x, goal)


def _rows(rng: KeyedRNG | TorchRNG, sid: Tensor, iteration: int):
    """A fresh random source per (sample, iteration): independent of the batch composition."""
    return rng.rows(sid, iteration)
