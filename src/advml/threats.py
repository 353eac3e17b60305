r"""Threat models: the set of inputs an adversary may choose, given a clean input ``x``.

Every threat model here is a norm ball around ``x`` intersected with the input box
``[low, high]`` (``[0, 1]`` by default)::

    S(x) = { z : ||z - x||_p <= eps  and  low <= z <= high }      (p in {inf, 2, 1})
    S(x) = { z : #{i : z_i != x_i} <= k  and  low <= z <= high }  (L0)

All operations act on a batch ``(N, ...)``; norms are taken over every non-batch dimension
(a feature is one element: one channel of one pixel). ``eps`` is a float or a tensor of
shape ``(N,)`` with one radius per sample; ``eps = inf`` is allowed (the box alone) for
projections and membership, as minimum-norm attacks need.

Each object offers

* ``project(x_adv, x)``: the **exact** Euclidean projection onto ``S(x)`` (the nearest point
  of the ball-box intersection, not "project on the ball, then clip"), batched;
* ``random_start(x, generator)``: a random point of ``S(x)``;
* ``ascent_direction(grad)``: the steepest-ascent direction of unit norm for the threat's norm;
* ``contains(x_adv, x, atol)``: a per-sample boolean mask of membership, with a float tolerance
  on the ball and none on the box;
* ``norm(delta)``: the per-sample norm; ``eps_for(x)``: ``eps`` shaped ``(N, 1, ..., 1)``.

Projections assume ``x`` itself lies in the box (so ``S(x)`` is not empty); attacks check it.
Threat models are immutable: use :func:`dataclasses.replace` (or :meth:`ThreatModel.with_eps`)
to change a field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from advml.errors import UserError

__all__ = [
    "L0",
    "L1",
    "L2",
    "Linf",
    "RandomSource",
    "ThreatModel",
    "make",
]


@runtime_checkable
class RandomSource(Protocol):
    """Anything that draws uniform numbers in ``[0, 1)`` for a batch (shape[0] = samples).

    ``torch.Generator`` is accepted directly by :meth:`ThreatModel.random_start`; this protocol
    lets attacks pass a per-sample keyed source (see :mod:`advml.attacks.rng`) that makes
    random starts independent of batch composition.
    """

    def uniform(
        self, shape: tuple[int, ...], *, dtype: torch.dtype, device: torch.device
    ) -> Tensor: ...


Generator = torch.Generator | RandomSource | None


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_eps(eps: Any, what: str = "eps") -> float | Tensor:
    """Return a validated radius: a non-negative float (inf allowed) or a 1-D float tensor."""
    if isinstance(eps, bool):
        raise UserError(f"{what} must be a number or a tensor of shape (N,), not a bool")
    if isinstance(eps, Tensor):
        if eps.ndim == 0:
            return _check_eps(float(eps.item()), what)
        if eps.ndim != 1:
            raise UserError(
                f"{what} must be a float or a tensor of shape (N,) with one value per sample; "
                f"got shape {tuple(eps.shape)}"
            )
        if not eps.is_floating_point():
            eps = eps.to(torch.float64)
        values = eps.detach()
        if torch.isnan(values).any():
            raise UserError(f"{what} contains NaN; give finite non-negative radii")
        if (values < 0).any():
            raise UserError(
                f"{what} contains negative values (min {values.min().item():g}); radii must be >= 0"
            )
        return values.clone()
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number or a tensor of shape (N,); got {eps!r}") from None
    if math.isnan(value):
        raise UserError(f"{what} is NaN; give a non-negative radius")
    if value < 0:
        raise UserError(f"{what} = {value:g} is negative; radii must be >= 0")
    return value


def _check_box(low: Any, high: Any) -> tuple[float, float]:
    try:
        lo, hi = float(low), float(high)
    except (TypeError, ValueError):
        raise UserError(f"box bounds must be numbers; got low={low!r}, high={high!r}") from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise UserError(f"the input box needs low < high; got low={lo:g}, high={hi:g}")
    return lo, hi


def _eps_repr(eps: float | Tensor) -> str:
    if isinstance(eps, Tensor):
        if eps.numel() == 0:
            return "tensor(N=0)"
        return f"tensor(N={eps.numel()}, min={eps.min().item():g}, max={eps.max().item():g})"
    return f"{eps:g}"


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype for internal arithmetic: float64 stays, everything else works in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _uniform(
    generator: Generator, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Uniform numbers in [0, 1) of ``shape``, drawn from ``generator`` (see RandomSource)."""
    work = _work_dtype(dtype)
    if generator is None:
        return torch.rand(shape, dtype=work, device=device)
    if isinstance(generator, torch.Generator):
        return torch.rand(shape, generator=generator, dtype=work, device=generator.device).to(
            device
        )
    if isinstance(generator, RandomSource):
        return generator.uniform(shape, dtype=work, device=device).to(device=device, dtype=work)
    raise UserError(
        "generator must be a torch.Generator, an advml random source or None; "
        f"got {type(generator).__name__}"
    )


def _normal(
    generator: Generator, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Standard normal numbers by the Box-Muller transform of two uniform draws."""
    u1 = _uniform(generator, shape, dtype, device)
    u2 = _uniform(generator, shape, dtype, device)
    return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2.0 * math.pi * u2)


# --------------------------------------------------------------------------------------------
# base class


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ThreatModel:
    """Base class: a norm ball of radius ``eps`` around ``x``, intersected with ``[low, high]``."""

    eps: float | Tensor
    low: float = 0.0
    high: float = 1.0

    #: Short name of the norm: ``"linf"``, ``"l2"``, ``"l1"`` or ``"l0"``.
    name: ClassVar[str] = ""
    #: The ``p`` of the norm (``math.inf`` for L∞, 0 for L0).
    p: ClassVar[float] = math.nan

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _check_eps(self.eps))
        low, high = _check_box(self.low, self.high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    # ---- generic helpers ---------------------------------------------------------------

    def __repr__(self) -> str:
        name, eps = type(self).__name__, _eps_repr(self.eps)
        return f"{name}(eps={eps}, low={self.low:g}, high={self.high:g})"

    def with_eps(self, eps: float | Tensor) -> ThreatModel:
        """A copy of this threat model with another radius."""
        return dataclasses.replace(self, eps=eps)

    def _with_eps_unchecked(self, eps: float | Tensor) -> ThreatModel:
        """A copy with ``eps`` replaced, without validation (attacks pass per-row radii)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        object.__setattr__(new, "eps", eps)
        return new

    @property
    def per_sample(self) -> bool:
        """Whether ``eps`` holds one radius per sample."""
        return isinstance(self.eps, Tensor)

    def eps_vector(self, x: Tensor) -> Tensor:
        """``eps`` as a tensor of shape ``(N,)`` on ``x``'s device, in ``x``'s dtype."""
        n = int(x.shape[0]) if x.ndim else 0
        if x.ndim == 0:
            raise UserError("inputs must have a batch dimension: shape (N, ...)")
        dtype = x.dtype if x.is_floating_point() else torch.float32
        if isinstance(self.eps, Tensor):
            if self.eps.numel() != n:
                raise UserError(
                    f"{self!r} has {self.eps.numel()} per-sample radii but the batch has {n} "
                    "samples; "
                    "give one eps per sample or a single float"
                )
            return self.eps.to(device=x.device, dtype=dtype)
        return torch.full((n,), self.eps, device=x.device, dtype=dtype)

    def eps_for(self, x: Tensor) -> Tensor:
        """``eps`` shaped ``(N, 1, ..., 1)`` to broadcast against ``x`` of shape ``(N, ...)``."""
        return self.eps_vector(x).reshape((-1,) + (1,) * (x.ndim - 1))

    def _check_pair(self, x_adv: Tensor, x: Tensor) -> None:
        if x_adv.shape != x.shape:
            raise UserError(
                f"x_adv has shape {tuple(x_adv.shape)} but x has shape {tuple(x.shape)}; "
                "they must match"
            )
        if x.ndim < 1:
            raise UserError("inputs must have a batch dimension: shape (N, ...)")

    def clip_box(self, z: Tensor) -> Tensor:
        """``z`` clamped to ``[low, high]`` elementwise."""
        return z.clamp(self.low, self.high)

    def in_box(self, z: Tensor) -> Tensor:
        """Per-sample mask: every feature of ``z`` lies in ``[low, high]`` (no tolerance)."""
        flat = _flat(z)
        return ((flat >= self.low) & (flat <= self.high)).all(dim=1)

    def default_atol(self, x: Tensor) -> Tensor:
        """Float tolerance on the ball for :meth:`contains`, per sample.

        ``x_adv - x`` carries one rounding error of at most ``u * s`` per feature (``u`` the
        dtype's unit roundoff, ``s = max(1, |low|, |high|)``); the norm adds a relative error.
        The tolerance is ``4 u (s + eps) f(D)`` with ``f(D) = 1, sqrt(D), D`` for L∞, L2, L1.
        """
        d = max(1, _flat(x).shape[1])
        u = torch.finfo(x.dtype if x.is_floating_point() else torch.float32).eps
        finite = [abs(b) for b in (self.low, self.high) if math.isfinite(b)]
        scale = max([1.0, *finite])
        if not all(math.isfinite(b) for b in (self.low, self.high)):
            scale = max(scale, float(_flat(x).abs().max().item()) if x.numel() else 1.0)
        eps = self.eps_vector(x).nan_to_num(posinf=0.0)
        return 4.0 * u * (scale + eps) * self._tolerance_growth(d)

    def _tolerance_growth(self, d: int) -> float:
        return 1.0

    def contains(self, x_adv: Tensor, x: Tensor, atol: float | Tensor | None = None) -> Tensor:
        """Per-sample bool mask: ``||x_adv - x|| <= eps + atol`` and ``low <= x_adv <= high``.

        ``atol`` defaults to :meth:`default_atol` (a few float roundings); the box is checked
        exactly (projections clamp to it, which is exact in floating point). Non-finite
        ``x_adv`` is never contained.
        """
        self._check_pair(x_adv, x)
        tol = (
            self.default_atol(x)
            if atol is None
            else torch.as_tensor(atol, dtype=x.dtype, device=x.device)
        )
        dist = self.norm(x_adv - x)
        ball = dist <= self.eps_vector(x) + tol
        finite = torch.isfinite(_flat(x_adv)).all(dim=1)
        return ball & self.in_box(x_adv) & finite

    # ---- to implement ------------------------------------------------------------------

    def norm(self, delta: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Per-sample norm of ``delta`` (shape ``(N,)``)."""
        raise NotImplementedError

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Nearest point (in L2) of ``S(x)`` to ``x_adv``, per sample."""
        raise NotImplementedError

    def random_start(self, x: Tensor, generator: Generator = None) -> Tensor:  # pragma: no cover
        """A random point of ``S(x)`` per sample."""
        raise NotImplementedError

    def ascent_direction(
        self, grad: Tensor, x_adv: Tensor | None = None
    ) -> Tensor:  # pragma: no cover
        """Steepest-ascent direction of unit norm for this threat's norm."""
        raise NotImplementedError


def _deltas(threat: ThreatModel, x_adv: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flat ``u = x_adv - x`` and the box for the perturbation, ``lo = low - x <= 0 <= hi``."""
    threat._check_pair(x_adv, x)
    xf = _flat(x)
    u = _flat(x_adv) - xf
    lo = (threat.low - xf).clamp_max(0)
    hi = (threat.high - xf).clamp_min(0)
    return u, lo, hi


def _finish(threat: ThreatModel, x: Tensor, d: Tensor) -> Tensor:
    """``x + d`` reshaped and clamped to the box.

    Clamping moves every feature towards ``x`` (which is in the box), so it never leaves the ball.
    """
    return threat.clip_box(x + d.reshape(x.shape))


# --------------------------------------------------------------------------------------------
# L∞


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Linf(ThreatModel):
    r"""L∞ ball ∩ box: :math:`\max_i |z_i - x_i| \le \varepsilon`, :math:`low \le z \le high`.

    * projection: ``clamp(clamp(z, x - eps, x + eps), low, high)`` (separable, hence exact);
    * ascent direction: ``sign(grad)`` (maximizes :math:`\langle g, d\rangle` over
      :math:`\|d\|_\infty \le 1`);
    * random start: exactly uniform on the intersection: each feature uniform on
      ``[max(x - eps, low), min(x + eps, high)]``.
    """

    name: ClassVar[str] = "linf"
    p: ClassVar[float] = math.inf

    def norm(self, delta: Tensor) -> Tensor:
        return _flat(delta).abs().amax(dim=1)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        self._check_pair(x_adv, x)
        eps = self.eps_for(x)
        return self.clip_box(torch.minimum(torch.maximum(x_adv, x - eps), x + eps))

    def random_start(self, x: Tensor, generator: Generator = None) -> Tensor:
        eps = self.eps_for(x)
        lo = torch.maximum(x - eps, torch.full_like(x, self.low))
        hi = torch.minimum(x + eps, torch.full_like(x, self.high))
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise UserError(
                f"{self!r}: a random start needs a bounded region; give a finite eps or box"
            )
        u = _uniform(generator, tuple(x.shape), x.dtype, x.device).to(x.dtype)
        return torch.minimum(lo + u * (hi - lo), hi).clamp(self.low, self.high)

    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        return grad.sign()


# --------------------------------------------------------------------------------------------
# L2


def _project_l2_box(u: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
    r"""Exact :math:`\arg\min_d \|d - u\|_2` s.t. :math:`\|d\|_2 \le \varepsilon`, ``lo <= d <= hi``

    (the L2 ball ∩ box projection of a perturbation ``u``).

    KKT: :math:`d(t) = \mathrm{clip}(t\,u, lo, hi)` with :math:`t = 1/(1+\lambda) \in (0, 1]`;
    :math:`\|d(t)\|` is non-decreasing in ``t``. Feature ``i`` saturates at
    :math:`\tau_i = cap_i/|u_i|`; sorting the :math:`\tau_i` makes :math:`\|d(t)\|^2 =
    S_K + t^2 Q_K` on each interval (``S`` the squared caps of saturated features, ``Q`` the
    squared magnitudes of free ones), so the root is found exactly, batched, in ``O(D log D)``.
    """
    dtype = u.dtype
    work = _work_dtype(dtype)
    u, lo, hi, eps = u.to(work), lo.to(work), hi.to(work), eps.to(work).reshape(-1, 1)
    d_box = torch.minimum(torch.maximum(u, lo), hi)
    eps2 = eps.square()
    inside = d_box.square().sum(dim=1, keepdim=True) <= eps2
    if bool(inside.all()):
        return d_box.to(dtype)
    m = u.abs()
    cap = torch.where(u > 0, hi, -lo)
    inf = torch.tensor(math.inf, dtype=work, device=u.device)
    tau = torch.where(m > 0, cap / m.clamp_min(torch.finfo(work).tiny), inf)
    tau_s, order = tau.sort(dim=1)
    m2_s = m.gather(1, order).square()
    cap2_s = cap.gather(1, order).square()
    finite = torch.isfinite(tau_s)
    sat = torch.cumsum(torch.where(finite, cap2_s, 0), dim=1)  # S_k: first k saturated
    free = torch.flip(torch.cumsum(torch.flip(m2_s, [1]), dim=1), [1])  # sum over j >= k
    free_after = torch.cat([free[:, 1:], torch.zeros_like(free[:, :1])], dim=1)  # Q_k
    n2_at = torch.where(finite, sat + tau_s.square() * free_after, inf)
    k = (n2_at <= eps2).sum(dim=1, keepdim=True)  # number of saturated features at the root
    # Recompute the two sums directly on the chosen piece for accuracy.
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(u.shape[1], device=u.device).expand_as(order)
    )
    saturated = rank < k
    s_k = torch.where(saturated, cap.square(), 0).sum(dim=1, keepdim=True)
    q_k = torch.where(saturated, 0, m.square()).sum(dim=1, keepdim=True)
    t = torch.sqrt((eps2 - s_k).clamp_min(0) / q_k.clamp_min(torch.finfo(work).tiny)).clamp(0, 1)
    d = torch.sign(u) * torch.minimum(t * m, cap)
    norm = torch.linalg.vector_norm(d, dim=1, keepdim=True)
    d = torch.where(norm > eps, d * (eps / norm.clamp_min(torch.finfo(work).tiny)), d)
    return torch.where(inside, d_box, d).to(dtype)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class L2(ThreatModel):
    r"""L2 ball ∩ box: :math:`\|z - x\|_2 \le \varepsilon`, :math:`low \le z \le high`.

    * projection: exact nearest point of the intersection,
      :math:`z = x + \mathrm{clip}(t (v - x), low - x, high - x)` with the largest
      :math:`t \in [0, 1]` that meets the radius (found exactly by sorting breakpoints; not
      "rescale then clip", which can be farther away and is not the projection);
    * ascent direction: ``grad / ||grad||_2`` (0 where the gradient is 0);
    * random start: uniform in the ball (direction ~ Gaussian, radius ~ eps·U^(1/D)), then
      clamped to the box (clamping moves towards ``x``, so the point stays in the ball).
    """

    name: ClassVar[str] = "l2"
    p: ClassVar[float] = 2.0

    def _tolerance_growth(self, d: int) -> float:
        return math.sqrt(d)

    def norm(self, delta: Tensor) -> Tensor:
        return torch.linalg.vector_norm(_flat(delta), ord=2, dim=1)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        u, lo, hi = _deltas(self, x_adv, x)
        return _finish(self, x, _project_l2_box(u, lo, hi, self.eps_vector(x)))

    def random_start(self, x: Tensor, generator: Generator = None) -> Tensor:
        eps = self.eps_vector(x)
        if not torch.isfinite(eps).all():
            raise UserError(f"{self!r}: a random start in the L2 ball needs a finite eps")
        n, d = _flat(x).shape
        direction = _normal(generator, (n, d), x.dtype, x.device)
        direction = direction / torch.linalg.vector_norm(direction, dim=1, keepdim=True).clamp_min(
            1e-30
        )
        radius = _uniform(generator, (n, 1), x.dtype, x.device)
        radius = eps.reshape(-1, 1).to(direction.dtype) * (1.0 - radius) ** (1.0 / max(d, 1))
        return _finish(self, x, (direction * radius).to(x.dtype))

    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        flat = _flat(grad)
        norm = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
        unit = torch.where(
            norm > 0, flat / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.zeros_like(flat)
        )
        return unit.reshape(grad.shape)


# --------------------------------------------------------------------------------------------
# L1


def _project_l1_box(u: Tensor, lo: Tensor, hi: Tensor, eps: Tensor) -> Tensor:
    r"""Exact :math:`\arg\min_d \|d - u\|_2` s.t. :math:`\|d\|_1 \le \varepsilon`, ``lo <= d <= hi``

    (the L1 ball ∩ box projection of a perturbation ``u``).

    Given the multiplier :math:`\lambda` of the L1 constraint the problem is separable:
    :math:`d_i = \mathrm{sign}(u_i)\,\mathrm{clip}(|u_i| - \lambda, 0, cap_i)` (soft thresholding
    then the box, which is exact because each 1-D problem is convex). :math:`g(\lambda) =
    \|d(\lambda)\|_1` is piecewise linear and non-increasing with breakpoints at
    :math:`|u_i| - cap_i` and :math:`|u_i|`; sorting them (as Duchi et al. 2008 sort
    :math:`|u|` for the plain L1 ball) locates the piece where :math:`g = \varepsilon`, and
    :math:`\lambda` follows in closed form. Batched, ``O(D log D)``.
    """
    dtype = u.dtype
    work = _work_dtype(dtype)
    u, lo, hi, eps = u.to(work), lo.to(work), hi.to(work), eps.to(work).reshape(-1, 1)
    d_box = torch.minimum(torch.maximum(u, lo), hi)
    g0 = d_box.abs().sum(dim=1, keepdim=True)
    inside = g0 <= eps
    if bool(inside.all()):
        return d_box.to(dtype)
    m = u.abs()
    cap = torch.where(u > 0, hi, -lo)
    start = (m - cap).clamp_min(0)  # lambda where feature i leaves its cap
    points = torch.cat([start, m], dim=1)
    steps = torch.cat([-torch.ones_like(m), torch.ones_like(m)], dim=1)
    p_s, order = points.sort(dim=1)
    slope = torch.cumsum(steps.gather(1, order), dim=1)  # slope of g on [p_j, p_j+1]
    incr = slope[:, :-1] * (p_s[:, 1:] - p_s[:, :-1])
    g_at = g0 + torch.cat([torch.zeros_like(g0), torch.cumsum(incr, dim=1)], dim=1)
    j = ((g_at > eps).sum(dim=1, keepdim=True) - 1).clamp(0, points.shape[1] - 2)
    left = p_s.gather(1, j)
    right = p_s.gather(1, j + 1)
    mid = 0.5 * (left + right)
    # On the piece (left, right): saturated features have start >= right, active ones
    # start <= left < right <= end. Solve sum(cap_sat) + sum(m_act - lambda) = eps exactly.
    saturated = start >= mid
    active = (start < mid) & (m > mid)
    n_active = active.sum(dim=1, keepdim=True).clamp_min(1)
    total = torch.where(saturated, cap, 0).sum(dim=1, keepdim=True) + torch.where(active, m, 0).sum(
        dim=1, keepdim=True
    )
    lam = ((total - eps) / n_active).clamp(left, right)
    d = torch.sign(u) * torch.minimum((m - lam).clamp_min(0), cap)
    # m - lam cancels when |u| >> eps; shrink the last few ulps back inside the ball
    norm = d.abs().sum(dim=1, keepdim=True)
    d = torch.where(norm > eps, d * (eps / norm.clamp_min(torch.finfo(work).tiny)), d)
    return torch.where(inside, d_box, d).to(dtype)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class L1(ThreatModel):
    r"""L1 ball ∩ box: :math:`\sum_i |z_i - x_i| \le \varepsilon`, :math:`low \le z \le high`.

    * projection: exact nearest point of the intersection (soft thresholding with a common
      threshold, each feature capped by the box; the threshold is found by sorting
      breakpoints). Projecting on the L1 ball and then clipping is *not* the projection;
    * ascent direction: sparse steepest ascent (Tramèr & Boneh 2019, SLIDE): ``sign(grad)`` on
      the ``ceil(top_fraction·D)`` largest-magnitude features, divided by their count (unit L1
      norm); with ``x_adv`` given, features at a box bound whose gradient points outwards are
      skipped (they cannot move);
    * random start: uniform in the L1 ball (Exp(1) spacings normalized by a sum over D+1 terms
      give a uniform point of the simplex; random signs make it the cross-polytope), then
      clamped to the box.
    """

    top_fraction: float = 0.05

    name: ClassVar[str] = "l1"
    p: ClassVar[float] = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        frac = float(self.top_fraction)
        if not 0.0 < frac <= 1.0:
            raise UserError(f"top_fraction must be in (0, 1]; got {self.top_fraction!r}")
        object.__setattr__(self, "top_fraction", frac)

    def __repr__(self) -> str:
        return (
            f"L1(eps={_eps_repr(self.eps)}, low={self.low:g}, high={self.high:g}, "
            f"top_fraction={self.top_fraction:g})"
        )

    def _tolerance_growth(self, d: int) -> float:
        return float(d)

    def norm(self, delta: Tensor) -> Tensor:
        return _flat(delta).abs().sum(dim=1)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        u, lo, hi = _deltas(self, x_adv, x)
        return _finish(self, x, _project_l1_box(u, lo, hi, self.eps_vector(x)))

    def random_start(self, x: Tensor, generator: Generator = None) -> Tensor:
        eps = self.eps_vector(x)
        if not torch.isfinite(eps).all():
            raise UserError(f"{self!r}: a random start in the L1 ball needs a finite eps")
        n, d = _flat(x).shape
        spacings = -torch.log1p(-_uniform(generator, (n, d + 1), x.dtype, x.device))
        point = spacings[:, :d] / spacings.sum(dim=1, keepdim=True)
        signs = torch.where(_uniform(generator, (n, d), x.dtype, x.device) < 0.5, -1.0, 1.0)
        delta = eps.reshape(-1, 1).to(point.dtype) * signs.to(point.dtype) * point
        return _finish(self, x, delta.to(x.dtype))

    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        flat = _flat(grad)
        if x_adv is not None:
            xf = _flat(x_adv)
            stuck = ((xf <= self.low) & (flat < 0)) | ((xf >= self.high) & (flat > 0))
            flat = torch.where(stuck, torch.zeros_like(flat), flat)
        k = max(1, math.ceil(self.top_fraction * flat.shape[1]))
        idx = flat.abs().topk(k, dim=1).indices
        picked = torch.zeros_like(flat).scatter_(1, idx, flat.gather(1, idx).sign())
        count = picked.abs().sum(dim=1, keepdim=True).clamp_min(1)
        return (picked / count).reshape(grad.shape)


# --------------------------------------------------------------------------------------------
# L0


def _check_k(k: Any) -> int | Tensor:
    if isinstance(k, bool):
        raise UserError("k (the number of features that may change) must be an int, not a bool")
    if isinstance(k, Tensor):
        if k.ndim == 0:
            return _check_k(k.item())
        if k.ndim != 1:
            raise UserError(
                f"k must be an int or a tensor of shape (N,); got shape {tuple(k.shape)}"
            )
        if k.is_floating_point() and (not torch.isfinite(k).all() or (k != k.round()).any()):
            raise UserError("k must hold whole numbers of features")
        if (k < 0).any():
            raise UserError("k must be >= 0")
        return k.detach().to(torch.int64).clone()
    if isinstance(k, float):
        if not math.isfinite(k) or k != round(k):
            raise UserError(f"k must be a whole number of features; got {k!r}")
        k = int(k)
    if not isinstance(k, int):
        raise UserError(f"k must be an int or a tensor of shape (N,); got {k!r}")
    if k < 0:
        raise UserError(f"k = {k} is negative; it counts features that may change")
    return k


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class L0(ThreatModel):
    r"""L0 ball ∩ box: at most ``k`` features differ from ``x``, and :math:`low \le z \le high`.

    Construct with ``L0(k)``; ``eps`` is the same number (kept for a uniform interface).

    * projection: exact nearest point (in L2): per feature the best changed value is
      ``clip(v_i)``, which gains :math:`(v_i - x_i)^2 - (v_i - clip(v_i))^2` over leaving it
      unchanged; keep the ``k`` largest gains;
    * ascent direction: the gradient restricted to its ``k`` largest-magnitude features,
      normalized to unit L2 norm (with ``x_adv`` given, features stuck at a bound are skipped);
    * random start: ``k`` features chosen uniformly at random, each set uniformly in the box.
    """

    eps: int | Tensor = 0  # type: ignore[assignment]

    name: ClassVar[str] = "l0"
    p: ClassVar[float] = 0.0

    def __init__(self, k: int | Tensor, low: float = 0.0, high: float = 1.0) -> None:
        object.__setattr__(self, "eps", _check_k(k))
        lo, hi = _check_box(low, high)
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)

    def __post_init__(self) -> None:  # pragma: no cover - __init__ is explicit
        pass

    def __repr__(self) -> str:
        k = _eps_repr(self.eps) if isinstance(self.eps, Tensor) else str(self.eps)
        return f"L0(k={k}, low={self.low:g}, high={self.high:g})"

    def __reduce__(self):  # dataclasses.replace / pickle go through the explicit __init__
        return (L0, (self.eps, self.low, self.high))

    def with_eps(self, eps: int | Tensor) -> L0:  # type: ignore[override]
        return L0(eps, self.low, self.high)

    @property
    def k(self) -> int | Tensor:
        """The number of features that may change."""
        return self.eps

    def _k_rows(self, x: Tensor) -> Tensor:
        return self.eps_vector(x).to(torch.int64).reshape(-1, 1)

    def default_atol(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

    def norm(self, delta: Tensor) -> Tensor:
        return (
            (_flat(delta) != 0)
            .sum(dim=1)
            .to(delta.dtype if delta.is_floating_point() else torch.float32)
        )

    def contains(self, x_adv: Tensor, x: Tensor, atol: float | Tensor | None = None) -> Tensor:
        """Per-sample mask: at most ``k`` features differ by more than ``atol`` (default 0),
        and every feature lies in the box."""
        self._check_pair(x_adv, x)
        tol = 0.0 if atol is None else atol
        changed = ((_flat(x_adv) - _flat(x)).abs() > tol).sum(dim=1)
        finite = torch.isfinite(_flat(x_adv)).all(dim=1)
        return (changed <= self._k_rows(x).reshape(-1)) & self.in_box(x_adv) & finite

    def _top_mask(self, score: Tensor, k: Tensor) -> Tensor:
        """Mask of each row's ``k`` largest scores (ties broken by position)."""
        order = score.argsort(dim=1, descending=True, stable=True)
        ranks = torch.arange(score.shape[1], device=score.device).expand_as(order)
        return torch.zeros_like(score, dtype=torch.bool).scatter_(1, order, ranks < k)

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        u, lo, hi = _deltas(self, x_adv, x)
        c = torch.minimum(torch.maximum(u, lo), hi)
        gain = u.square() - (u - c).square()
        keep = self._top_mask(gain, self._k_rows(x)) & (gain > 0)
        return _finish(self, x, torch.where(keep, c, torch.zeros_like(c)))

    def random_start(self, x: Tensor, generator: Generator = None) -> Tensor:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise UserError(f"{self!r}: a random start needs a bounded box")
        n, d = _flat(x).shape
        keep = self._top_mask(_uniform(generator, (n, d), x.dtype, x.device), self._k_rows(x))
        value = self.low + (self.high - self.low) * _uniform(generator, (n, d), x.dtype, x.device)
        z = torch.where(keep, value.to(x.dtype), _flat(x))
        return self.clip_box(z.reshape(x.shape))

    def ascent_direction(self, grad: Tensor, x_adv: Tensor | None = None) -> Tensor:
        flat = _flat(grad)
        if x_adv is not None:
            xf = _flat(x_adv)
            stuck = ((xf <= self.low) & (flat < 0)) | ((xf >= self.high) & (flat > 0))
            flat = torch.where(stuck, torch.zeros_like(flat), flat)
        keep = self._top_mask(flat.abs(), self._k_rows(grad))
        picked = torch.where(keep, flat, torch.zeros_like(flat))
        norm = torch.linalg.vector_norm(picked, dim=1, keepdim=True)
        unit = torch.where(
            norm > 0,
            picked / norm.clamp_min(torch.finfo(norm.dtype).tiny),
            torch.zeros_like(picked),
        )
        return unit.reshape(grad.shape)


# --------------------------------------------------------------------------------------------

_BY_NAME: dict[str, type[ThreatModel]] = {"linf": Linf, "l2": L2, "l1": L1, "l0": L0}
_ALIASES = {"inf": "linf", "l_inf": "linf", "linfty": "linf", "2": "l2", "1": "l1", "0": "l0"}


def make(norm: str, eps: float | Tensor, low: float = 0.0, high: float = 1.0) -> ThreatModel:
    """A threat model by norm name (``"linf"``, ``"l2"``, ``"l1"``, ``"l0"``), e.g. for a CLI."""
    key = str(norm).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _BY_NAME:
        raise UserError(f"unknown threat model {norm!r}; choose one of {', '.join(_BY_NAME)}")
    return _BY_NAME[key](eps, low, high)
