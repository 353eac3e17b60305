r"""Complete verification by branch-and-bound on input boxes or on ReLU phases.

The framework is Bunel et al.'s ("A Unified View of Piecewise Linear Neural Network
Verification", NeurIPS 2018; "Branch and Bound for Piecewise Linear Neural Network
Verification", JMLR 2020) with the batched bounding of Xu et al. 2021 and Wang et al. 2021
(β-CROWN, "Beta-CROWN: Efficient Bound Propagation with Per-neuron Split Constraints for
Neural Network Robustness Verification", NeurIPS): keep a set of *open* sub-problems that
together cover the property's input box, and repeatedly

1. **bound** a batch of them at once (:func:`advml.verification.crown.bounds`, CROWN or
   α-CROWN, on up to ``batch_size`` sub-problems per call);
2. **prune** those the bounds settle;
3. **search** the others for a counterexample: their centres and CROWN's candidate points
   (the minimisers of its linear lower bounds) go through a forward pass, a few PGD steps
   start from the most violating ones, and the MILP finishes the nearly linear ones;
4. **branch** each remaining one into two sub-problems that cover it.

The queue is a few stacked tensors popped best-first by how close each sub-problem's
candidate points came to the unsafe region (counterexamples early; "unsat" needs every
sub-problem anyway).

Two kinds of sub-problems:

* **Input splitting** (few inputs, e.g. ACAS Xu's 5; as in nnenum, Bak et al. 2020, and
  α,β-CROWN's ACAS Xu setting): a sub-problem is a sub-box, bisected along the input ``i``
  with the largest ``max_r |Λ_ri| w_i (w_i / span_i)^½`` over the open rows, ``Λ`` being the
  input coefficients of CROWN's linear lower bound and ``w`` the box's widths (α,β-CROWN's
  "smart branching", damped for inputs already sliced thin). Boxes are bounded with
  α-CROWN (5 slope steps; 20 at the root). A box with no unstable neuron, or too thin to
  bisect in floating point, is finished exactly by the MILP
  (:func:`advml.verification.milp.solve_conjunction`).
* **ReLU splitting** (many inputs, e.g. MNIST): a sub-problem is a phase assignment
  (``+1`` active, ``−1`` inactive, ``0`` free) of the unstable neurons, passed to CROWN as
  ``splits``; the neuron to split is chosen by a BaBSR-like score (Bunel et al. 2020): the
  intercept ``−l u / (u − l)`` of its upper relaxation times the negative part of its
  coefficient in the output bound's backward pass, i.e. how much of the bound's looseness
  that relaxation causes. A sub-problem left with at most ``MILP_FREE_NEURONS`` free
  unstable neurons is finished exactly by the MILP with its phases.

Beyond CROWN's per-row bounds, two cheap sound tests settle sub-problems:

* the parent's linear lower bound ``C f(x) − d ≥ Λ x + c`` holds on both halves of a
  bisected box, and its minimum over a half can already be positive (no new bound needed);
* a conjunction is unreachable when a combination ``Σ_r λ_r (C_r y − d_r)`` with ``λ ≥ 0``
  is positive over the sub-problem, even if no single row is; ``λ`` is found by a few
  exponentiated-gradient steps on the rows' linear bounds (exact LP duality on a box where
  the network is linear).

**Invariant (soundness).** The union of the open sub-problems and of those pruned as
settled always covers the whole input box: a bisection replaces a box by two halves whose
union is the box, a phase split replaces a domain by its ``z ≥ 0`` and ``z ≤ 0`` parts. A
sub-problem is pruned only when, for *every* conjunction ``C_k y ≤ d_k`` of the unsafe
region, a sound lower bound proves ``C_{k,r} y − d_{k,r} > 0`` for some row ``r`` (or a
non-negative combination of its rows) everywhere on it, or it is infeasible (CROWN's split
clamping, or the MILP). Hence "verified" is returned only when the open set is empty: no
input of the box reaches the unsafe region. "falsified" is returned only with a point inside
the box whose float64 forward pass, run on that point alone, lies in the unsafe region
(:meth:`~advml.verification.spec.Property.violated_by`, no tolerance). Anything else — the
time budget spent (checked between batches), a MILP that could not decide — is "unknown".

**Completeness.** Input splitting shrinks boxes, so CROWN's bounds converge to the exact
values, and the boxes still open near the boundary ``min C y = d`` go to the MILP once
linear or thin; ReLU splitting fixes one more neuron per level and hands small domains to the
MILP. Every run ends with an answer given enough time.

**Counterexample search.** Before the search: uniform samples of the box, then projected
signed-gradient descent (Madry et al. 2018, on the box) on each conjunction's violation
``max_r (C_k y − d_k)_r`` from the best samples and from random ones. During the search:
the candidates above, plus a fresh round of PGD from random starts whenever the attacks
have had less than ``_ATTACK_SHARE`` (5 %) of the time.

**MILP tries.** While the MILP has had less than ``_MILP_SHARE`` of the time (a share
halved after each try it cannot decide within ``_MILP_TRY_S``), it is tried where the bounds
struggle. Input splitting grows the open box closest to a counterexample (×16, ×8, … around
its centre, clipped to the property's box) to the largest version with at most
``_MILP_TRY_MAX_UNSTABLE`` unstable neurons, and an infeasible MILP there settles every box
inside it: near-touching regions, where the network comes within a hair of the unsafe set
and CROWN would need tiny boxes, go in one call. ReLU splitting tries the domain with the
fewest free unstable neurons. On tiny networks the first try usually decides everything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from advml.errors import UserError
from advml.progress import progress_bar
from advml.runtime import generator
from advml.verification import crown, milp
from advml.verification.network import Network, ReLU, UnsupportedOperator
from advml.verification.result import VerificationResult
from advml.verification.spec import Property

__all__ = ["INPUT_SPLIT_MAX_INPUTS", "METHODS", "MILP_FREE_NEURONS", "verify"]

#: The methods :func:`verify` accepts.
METHODS = ("auto", "input-split", "relu-split", "crown", "alpha-crown", "ibp", "milp")

#: ReLU splitting hands a domain with at most this many free unstable neurons to the MILP.
MILP_FREE_NEURONS = 20

#: ``method="auto"`` splits inputs up to this many input dimensions, ReLUs above.
INPUT_SPLIT_MAX_INPUTS = 10

# Exponent of the width term in _branch_dimension's score.
_GAMMA = 0.5
# α-CROWN steps per batch in input splitting (20 at the root). On ACAS Xu 5 steps every batch
# cost about twice a CROWN bound and save 0-90 % of the boxes (prop 5 on net 1_1: 2.5k instead
# of 19k); CROWN first with α-CROWN only on the boxes it left open did worse.
_ALPHA_STEPS = 5
# Input splitting finishes a box with at most this many unstable neurons by the MILP (an LP).
_INPUT_MILP_UNSTABLE = 0
# The MILP's share of the elapsed time for opportunistic tries, and each try's time limit.
_MILP_SHARE = 0.3
_MILP_TRY_S = 2.0
_MILP_TRY_MAX_UNSTABLE = 40
_GROW_SCALES = (16.0, 8.0, 4.0, 2.0, 1.0)
# A box whose widest side is below this fraction of the root box's is finished by the MILP.
_THIN_BOX = 1e-9
# Exponentiated-gradient steps of the Lagrangian combination of a conjunction's rows.
_LAMBDA_STEPS = 20
# PGD of the initial attack: steps, starts per conjunction, cap on all starts.
_PGD_STEPS = 60
_PGD_STARTS = 256
_PGD_MAX_STARTS = 4096
# Attack rounds during the search: starts per group, and the attacks' share of the time.
_ROUND_STARTS = 1024
_ATTACK_SHARE = 0.05
# PGD steps shrink geometrically from scale (a fraction of the box width) to scale * decay.
_PGD_DECAY = 1e-3
# Points confirmed one by one, most violating first, when a batch shows violations.
_CONFIRM_TRIES = 8
# Uniform samples of the initial attack.
_SAMPLES = 8192
# Boxes/domains refined by a short PGD every BaB iteration, and its steps.
_LOCAL_PGD_POINTS = 64
_LOCAL_PGD_STEPS = 8


# ----------------------------------------------------------------------------- bookkeeping


class _Timeout(Exception):
    """The time budget ran out."""


class _Falsified(Exception):
    """A counterexample was found and confirmed."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        super().__init__("counterexample")
        self.x, self.y = x, y


@dataclass
class _Spec:
    """One property's unsafe region, rows stacked: ``C y − d ≤ 0`` for all rows of a conjunction."""

    prop: Property
    lower: Tensor  # (n,)
    upper: Tensor  # (n,)
    C: Tensor  # (M, n_out)
    d: Tensor  # (M,)
    member: Tensor  # (M, K) 0/1: row r belongs to conjunction k
    row_conj: Tensor  # (M,) conjunction of each row

    @classmethod
    def of(cls, prop: Property, dtype: torch.dtype, device: torch.device) -> _Spec:
        rows = [c.C for c in prop.unsafe]
        C = torch.cat(rows).to(device=device, dtype=dtype)
        d = torch.cat([c.d for c in prop.unsafe]).to(device=device, dtype=dtype)
        row_conj = torch.cat(
            [torch.full((r.shape[0],), k, dtype=torch.long) for k, r in enumerate(rows)]
        ).to(device)
        member = torch.nn.functional.one_hot(row_conj, len(rows)).to(dtype)
        lower = prop.lower.to(device=device, dtype=dtype)
        upper = prop.upper.to(device=device, dtype=dtype)
        return cls(prop, lower, upper, C, d, member, row_conj)

    @property
    def n_conj(self) -> int:
        return self.member.shape[1]

    @property
    def lambda_steps(self) -> int:
        """Ascent steps of the row combination (one when no conjunction has two rows)."""
        return _LAMBDA_STEPS if bool((self.member.sum(0) > 1).any()) else 1

    def open_conjunctions(self, margin: Tensor) -> Tensor:
        """Bool ``(B, K)``: conjunctions no row of which is proved violated (``margin > 0``)."""
        proved = (margin > 0).to(self.member.dtype) @ self.member
        return proved == 0

    def conj_violation(self, margin: Tensor) -> Tensor:
        """``(B, K)``: ``max_r (C y − d)_r`` per conjunction (``≤ 0``: the conjunction holds)."""
        masked = margin[:, None, :].masked_fill(self.member.T[None] == 0, -math.inf)
        return masked.amax(-1)


@dataclass
class _Run:
    """What one call of :func:`verify` shares: networks, clock, generator, statistics."""

    check_net: Network  # float64, as given: counterexamples are confirmed on it
    net: Network  # float64, simplified: bounds, attacks, MILP
    deadline: float
    batch_size: int
    attack: bool
    gen: torch.Generator
    bar: object
    started: float = field(default_factory=time.perf_counter)
    stats: dict[str, float] = field(default_factory=dict)
    try_share: float = _MILP_SHARE
    last_tick: float = field(default_factory=time.perf_counter)

    def count(self, key: str, value: float = 1.0) -> None:
        self.stats[key] = self.stats.get(key, 0.0) + value

    def peak(self, key: str, value: float) -> None:
        self.stats[key] = max(self.stats.get(key, 0.0), float(value))

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def tick(self, **postfix: object) -> None:
        """Raise :class:`_Timeout` when the budget is spent; advance the progress bar."""
        now = time.perf_counter()
        self.bar.update(now - self.last_tick)  # type: ignore[attr-defined]
        self.last_tick = now
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)  # type: ignore[attr-defined]
        if now >= self.deadline:
            raise _Timeout

    # ------------------------------------------------------------------ bounding

    def bound(
        self,
        spec: _Spec,
        lower: Tensor,
        upper: Tensor,
        *,
        method: str = "crown",
        splits: Sequence[Tensor] | None = None,
        alpha_steps: int = 20,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]] | None]:
        """Margins ``lb(C y) − d`` ``(B, M)`` over each box, and the intermediate bounds."""
        start = time.perf_counter()
        want_intermediate = method != "ibp"
        out = crown.bounds(
            self.net,
            lower,
            upper,
            spec.C,
            method=method,
            splits=splits,
            alpha_steps=alpha_steps,
            return_intermediate=want_intermediate,
        )
        self.count("bound_calls")
        self.count("domains_bounded", lower.shape[0])
        self.count("time_bounding_s", time.perf_counter() - start)
        intermediate = out[2] if want_intermediate else None  # type: ignore[misc]
        return out[0] - spec.d, intermediate

    # ------------------------------------------------------------------ counterexamples

    def confirm(self, spec: _Spec, x: Tensor) -> None:
        """Raise :class:`_Falsified` if a row of ``x`` (clamped to the box) violates ``spec``.

        The point is re-run alone through the float64 network, so that the ``y`` reported
        is the one a caller gets by a forward pass of that single input.
        """
        if x.shape[0] == 0:
            return
        x = torch.minimum(torch.maximum(x.detach(), spec.lower), spec.upper)
        with torch.no_grad():
            y = self.check_net.forward(x)
            violation = spec.conj_violation(y @ spec.C.T - spec.d).amin(1)
            near = violation <= 1e-9
            if not bool(near.any()):
                return
            order = violation.masked_fill(~near, math.inf).argsort()[: int(near.sum())]
            for index in order[:_CONFIRM_TRIES].tolist():
                point = x[index : index + 1]
                alone = self.check_net.forward(point)
                if bool(spec.prop.violated_by(point.cpu(), alone.cpu())[0]):
                    shape = self.check_net.input_shape
                    raise _Falsified(point[0].reshape(shape).cpu(), alone[0].cpu())

    def pgd(
        self,
        spec: _Spec,
        lower: Tensor,
        upper: Tensor,
        x: Tensor,
        target: Tensor,
        steps: int,
        scale: float = 0.5,
    ) -> None:
        """Signed-gradient descent on each start's conjunction violation, projected to its box.

        ``target[i]`` is the conjunction start ``i`` attacks (``K``: the least violated of all).
        Every iterate is checked against the *property's* box and region.
        """
        start = time.perf_counter()
        width = upper - lower
        pick = target.clamp_max(spec.n_conj - 1)[:, None]
        any_conj = (target == spec.n_conj)[:, None]
        try:
            for step in range(steps):
                x = x.detach().requires_grad_(True)
                with torch.enable_grad():
                    y = self.net.forward(x)
                    margin = y @ spec.C.T - spec.d
                    violation = spec.conj_violation(margin)
                    best = violation.amin(1, keepdim=True)
                    mine = torch.where(any_conj, best, violation.gather(1, pick))
                    (grad,) = torch.autograd.grad(mine.sum(), x)
                self.confirm(spec, x.detach()[best[:, 0] <= 0])
                size = scale * _PGD_DECAY ** (step / max(steps - 1, 1))
                x = x.detach() - size * width * grad.sign()
                x = torch.minimum(torch.maximum(x, lower), upper)
                if step % 8 == 7:
                    self.tick()
            self.confirm(spec, x.detach())
        finally:
            self.count("time_attack_s", time.perf_counter() - start)

    def polish(self, spec: _Spec, x: Tensor, lower: Tensor, upper: Tensor) -> None:
        """Confirm a MILP solution ``x`` ``(n,)``, or a point PGD finds next to it in the box.

        A MILP solution satisfies the constraints only up to the solver's tolerance, so it
        can miss the unsafe region by a rounding error; a few signed-gradient steps from it
        usually cross over.
        """
        self.confirm(spec, x[None])
        target = torch.full((1,), spec.n_conj, dtype=torch.long, device=x.device)
        self.pgd(spec, lower[None], upper[None], x[None], target, _LOCAL_PGD_STEPS, 1e-4)

    def initial_attack(self, spec: _Spec) -> None:
        """Uniform samples of the property's box, then PGD from the most violating ones.

        Each conjunction gets its own group of starts (half of them the samples closest to
        satisfying it, half random ones), and one more group attacks the least violated
        conjunction at each step.
        """
        start = time.perf_counter()
        n, groups = spec.lower.shape[0], spec.n_conj + 1
        dtype, device = spec.lower.dtype, spec.lower.device
        lower, upper = spec.lower[None], spec.upper[None]
        uniform = torch.rand(_SAMPLES, n, generator=self.gen, dtype=dtype).to(device)
        samples = torch.cat([(lower + upper) / 2, lower + (upper - lower) * uniform])
        with torch.no_grad():
            y = self.check_net.forward(samples)
            violation = spec.conj_violation(y @ spec.C.T - spec.d)  # (S, K)
        self.confirm(spec, samples[violation.amin(1) <= 0])
        violation = torch.cat([violation, violation.amin(1, keepdim=True)], 1)
        per_group = max(2, min(_PGD_MAX_STARTS // groups, _PGD_STARTS))
        best = violation.topk(per_group // 2, dim=0, largest=False).indices  # (·, K + 1)
        random = torch.randint(
            1, samples.shape[0], (per_group - per_group // 2, groups), generator=self.gen
        ).to(device)
        chosen = torch.cat([best, random])
        target = torch.arange(groups, device=device).expand(per_group, -1)
        self.count("time_attack_s", time.perf_counter() - start)
        self.pgd(spec, lower, upper, samples[chosen.reshape(-1)], target.reshape(-1), _PGD_STEPS)

    def attack_round(self, spec: _Spec) -> None:
        """During the search, while attacks have had under ``_ATTACK_SHARE`` of the time:
        PGD from fresh uniform starts in the whole box (``_ROUND_STARTS`` per group)."""
        elapsed = time.perf_counter() - self.started
        if not self.attack or self.stats.get("time_attack_s", 0.0) >= _ATTACK_SHARE * elapsed:
            return
        groups = spec.n_conj + 1
        per_group = max(1, min(_ROUND_STARTS, _PGD_MAX_STARTS // groups))
        lower, upper = spec.lower[None], spec.upper[None]
        uniform = torch.rand(per_group * groups, spec.lower.shape[0], generator=self.gen)
        x = lower + (upper - lower) * uniform.to(lower)
        target = torch.arange(groups, device=x.device).repeat(per_group)
        self.count("attack_rounds")
        self.pgd(spec, lower, upper, x, target, _PGD_STEPS)

    def candidates(
        self, spec: _Spec, lower: Tensor, upper: Tensor, points: Tensor, owner: Tensor
    ) -> Tensor:
        """Check candidate ``points`` of open boxes; a short PGD from the most violating.

        ``owner[i]`` is the box (row of ``lower``/``upper``) point ``i`` belongs to: PGD
        stays in that box, so that it explores a different region from every start.
        Returns each box's smallest violation ``min_k max_r (C_k y − d_k)_r`` over its
        points: how close it came to a counterexample (the search's priority).
        """
        start = time.perf_counter()
        with torch.no_grad():
            y = self.check_net.forward(points)
            violation = spec.conj_violation(y @ spec.C.T - spec.d).amin(1)
        self.confirm(spec, points[violation <= 0])
        promise = torch.full_like(lower[:, 0], math.inf)
        promise = promise.scatter_reduce(0, owner, violation, "amin")
        closest = float(violation.min())
        self.stats["closest_violation"] = min(
            self.stats.get("closest_violation", math.inf), closest
        )
        self.count("time_attack_s", time.perf_counter() - start)
        if not self.attack:
            return promise
        count = min(_LOCAL_PGD_POINTS, points.shape[0])
        order = violation.topk(count, largest=False).indices
        box = owner[order]
        target = torch.full((count,), spec.n_conj, dtype=torch.long, device=points.device)
        self.pgd(spec, lower[box], upper[box], points[order], target, _LOCAL_PGD_STEPS)
        return promise


# ----------------------------------------------------------------------------- the queue


class _Queue:
    """Open sub-problems as a few stacked tensors, popped best-first by ``promise``.

    ``promise`` is the smallest violation seen at the sub-problem's (or its parent's)
    candidate points: a sub-problem whose points came close to the unsafe region is bounded
    and split first, which finds counterexamples early; an "unsat" answer needs every
    sub-problem anyway, so the order costs it nothing.
    """

    def __init__(self, promise: Tensor, **fields: Tensor) -> None:
        self.promise = promise
        self.fields = fields

    def __len__(self) -> int:
        return self.promise.shape[0]

    def push(self, promise: Tensor, **fields: Tensor) -> None:
        self.promise = torch.cat([self.promise, promise])
        for key, value in fields.items():
            self.fields[key] = torch.cat([self.fields[key], value])

    def drop_inside(self, lower: Tensor, upper: Tensor) -> None:
        """Forget the boxes (fields ``lower``/``upper``) inside the box ``[lower, upper]``."""
        inside = (self.fields["lower"] >= lower).all(1) & (self.fields["upper"] <= upper).all(1)
        if bool(inside.any()):
            self.fields = {key: value[~inside] for key, value in self.fields.items()}
            self.promise = self.promise[~inside]

    def pop(self, count: int) -> dict[str, Tensor]:
        if count >= len(self):
            out = self.fields
            self.fields = {key: value[:0] for key, value in out.items()}
            self.promise = self.promise[:0]
            return out
        chosen = self.promise.topk(count, largest=False).indices
        rest = torch.ones_like(self.promise, dtype=torch.bool)
        rest[chosen] = False
        out = {key: value[chosen] for key, value in self.fields.items()}
        self.fields = {key: value[rest] for key, value in self.fields.items()}
        self.promise = self.promise[rest]
        return out


# ----------------------------------------------------------------------------- linear bounds


def _relu_count(network: Network) -> int:
    return sum(isinstance(layer, ReLU) for layer in network.layers)


#: Largest ``batch × width²`` of one CROWN call during ReLU splitting (about 128 MB in float64).
RELU_SPLIT_ENTRIES = 2**24


def _relu_widths(network: Network) -> list[int]:
    widths, width = [], network.n_inputs
    for layer in network.layers:
        if isinstance(layer, ReLU):
            widths.append(width)
        else:
            width = layer.out_features
    return widths


@dataclass
class _Linear:
    """CROWN's linear lower bounds ``C y − d ≥ A x + c``, valid on a sub-problem's box.

    ``A`` ``(B, M, n)``, ``c`` ``(B, M)``; ``per_relu[k]`` ``(B, M, width_k)`` is the
    coefficient on ReLU layer ``k``'s output before it is relaxed (for BaBSR).
    """

    A: Tensor
    c: Tensor
    per_relu: list[Tensor]

    def minimum(self, lower: Tensor, upper: Tensor) -> Tensor:
        """``min A x + c`` over each box ``(B, M)``."""
        centre = ((upper + lower) / 2)[..., None]
        radius = ((upper - lower) / 2)[..., None]
        return (self.A @ centre)[..., 0] - (self.A.abs() @ radius)[..., 0] + self.c

    def select(self, index: Tensor) -> _Linear:
        return _Linear(self.A[index], self.c[index], [a[index] for a in self.per_relu])


def _linear_bounds(
    network: Network, spec: _Spec, intermediate: list[tuple[Tensor, Tensor]], batch: int
) -> _Linear:
    """CROWN's backward pass (Zhang et al. 2018) for ``C y − d``, given the ReLU bounds.

    With the pre-activation bounds ``[l, u]`` that :func:`crown.bounds` computed for each
    ReLU layer over a sub-problem, every ReLU is relaxed (``α z ≤ ReLU(z) ≤ u (z − l)/(u − l)``
    with CROWN's adaptive ``α``) and the output rows are substituted back to the input. The
    result is a linear function below ``C f(x) − d`` on the whole sub-problem (and on every
    part of it, which is what lets a child be settled with its parent's bound and without a
    new bound computation). It also yields CROWN's candidate points and the branching scores.
    """
    A = spec.C[None].expand(batch, *spec.C.shape)
    c = -spec.d[None].expand(batch, -1)
    per_relu: list[Tensor] = [A] * len(intermediate)
    k = len(intermediate)
    for layer in reversed(network.layers):
        if isinstance(layer, ReLU):
            k -= 1
            lower, upper = intermediate[k]
            per_relu[k] = A
            unstable = (lower < 0) & (upper > 0)
            active = (lower >= 0).to(A.dtype)
            span = torch.where(unstable, upper - lower, torch.ones_like(upper))
            slope_up = torch.where(unstable, upper / span, active)
            intercept = torch.where(unstable, -slope_up * lower, torch.zeros_like(lower))
            slope_low = torch.where(unstable, (upper > -lower).to(A.dtype), active)
            negative = A.clamp_max(0)
            c = c + (negative @ intercept[..., None])[..., 0]
            A = A.clamp_min(0) * slope_low[:, None] + negative * slope_up[:, None]
        else:
            c = c + A @ layer.bias
            A = layer.backward(A)
    return _Linear(A, c, per_relu)


def _combined(
    spec: _Spec, linear: _Linear, lower: Tensor, upper: Tensor, logits: Tensor, steps: int
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Lower bounds on each conjunction's rows taken together, by Lagrangian combination.

    For ``λ ≥ 0`` on the rows of conjunction ``k``, ``Σ_r λ_r (C_r y − d_r) ≤ 0`` whenever all
    rows hold, so ``g(λ) = min_x Σ_r λ_r (A_r x + c_r) > 0`` over the box proves the
    conjunction unreachable there, even when no single row is positive (two rows each
    negative somewhere, never together). ``g`` is concave in ``λ``; a few steps of
    exponentiated-gradient ascent on the simplex (its supergradient is the rows' values at
    the minimiser) find a good ``λ`` (exact LP duality when the network is linear on the box).
    Every iterate's ``g`` is a sound bound; the best is returned.

    Returns ``g`` ``(B, K)``, the minimiser ``x`` of the best combination ``(B, K, n)`` (a
    candidate counterexample) and the final logits ``(B, K, M)`` (to warm-start children).
    """
    mask = spec.member.T.bool()[None]  # (1, K, M)
    logits = logits.masked_fill(~mask, -math.inf)
    lo, hi = lower[:, None, :], upper[:, None, :]
    best = torch.full(logits.shape[:2], -math.inf, dtype=lower.dtype, device=lower.device)
    best_x = lo.expand(-1, logits.shape[1], -1)
    for _ in range(max(1, steps)):
        weights = (logits - logits.amax(-1, keepdim=True)).exp()
        lam = weights / weights.sum(-1, keepdim=True)  # (B, K, M) on each simplex
        x = torch.where(lam @ linear.A > 0, lo, hi)  # (B, K, n): minimiser of Σ λ_r A_r x
        values = (linear.A @ x.transpose(1, 2)).transpose(1, 2) + linear.c[:, None, :]
        g = (lam * values.masked_fill(~mask, 0)).sum(-1)  # (B, K)
        better = g > best
        best = torch.where(better, g, best)
        best_x = torch.where(better[..., None], x, best_x)
        scale = values.masked_fill(~mask, 0).abs().amax(-1, keepdim=True).clamp_min(1e-12)
        logits = logits + 2.0 * values / scale
        logits = logits - logits.amax(-1, keepdim=True)  # keep the softmax finite
    return best, best_x, logits.masked_fill(~mask, 0)


def _settled_conjunctions(
    spec: _Spec, margin: Tensor, linear: _Linear, lower: Tensor, upper: Tensor, logits: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Open conjunctions ``(B, K)`` after rows and combinations; candidates; new logits."""
    rows = torch.maximum(margin, linear.minimum(lower, upper))
    open_conj = spec.open_conjunctions(rows)
    combined, x, logits = _combined(spec, linear, lower, upper, logits, spec.lambda_steps)
    return open_conj & ~(combined > 0), x, logits


def _branch_dimension(
    lower: Tensor, upper: Tensor, span: Tensor, open_rows: Tensor, A: Tensor
) -> Tensor:
    """Input to bisect: ``argmax_i max_r |Λ_ri| w_i · (w_i / span_i)^γ`` over the open rows.

    Bisecting input ``i`` raises row ``r``'s linear lower bound on one half by
    ``|Λ_ri| w_i / 2`` (``w = u − l``; α,β-CROWN's "sb" estimate for input splits, Wang et
    al. 2021), and more on both through tighter relaxations; one row above zero settles its
    conjunction, hence the maximum over rows. The factor ``(w_i / span_i)^γ`` (``span``:
    the property box's widths, ``γ = _GAMMA``) keeps the search from slicing one very
    sensitive input ever thinner while the relaxation's looseness comes from the others
    (ACAS Xu near heading angle 0). Measured on ACAS Xu: 2–20 times fewer sub-boxes than
    bisecting the widest side or than plain "sb" (with or without α,β-CROWN's margin term).
    """
    width = upper - lower
    score = (A.abs() * open_rows[..., None]).amax(1) * width * (width / span) ** _GAMMA
    return score.masked_fill(width <= 0, -math.inf).argmax(1)


def _bisect(lower: Tensor, upper: Tensor, dim: Tensor) -> tuple[Tensor, Tensor]:
    """Both halves of each box along ``dim``: ``(2B, n)`` lower and upper (left halves first)."""
    rows = torch.arange(lower.shape[0], device=lower.device)
    mid = (lower[rows, dim] + upper[rows, dim]) / 2
    left_u = upper.clone()
    left_u[rows, dim] = mid
    right_l = lower.clone()
    right_l[rows, dim] = mid
    return torch.cat([lower, right_l]), torch.cat([left_u, upper])


def _neuron_scores(
    intermediate: list[tuple[Tensor, Tensor]],
    per_relu: list[Tensor],
    splits: list[Tensor],
    open_rows: Tensor,
) -> Tensor:
    """BaBSR-like scores ``(B, Σ width)`` of the free unstable neurons (``-inf`` elsewhere).

    The intercept ``−l u / (u − l)`` of a neuron's upper relaxation, times the negative part
    of its coefficient in the output bound's backward pass (summed over open rows), is what
    that relaxation costs the bound (Bunel et al. 2020's BaBSR); a small multiple of the
    whole coefficient and of the intercept alone break ties.
    """
    scores = []
    weight = open_rows.to(per_relu[0].dtype)[..., None]  # (B, M, 1)
    for (lower, upper), A, split in zip(intermediate, per_relu, splits, strict=True):
        free = (lower < 0) & (upper > 0) & (split == 0)
        span = torch.where(free, upper - lower, torch.ones_like(upper))
        intercept = torch.where(free, -lower * upper / span, torch.zeros_like(upper))
        pull = (A.clamp_max(0).abs() * weight).sum(1) + 1e-3 * (A.abs() * weight).sum(1)
        score = intercept * (pull + 1e-6)
        scores.append(score.masked_fill(~free, -math.inf))
    return torch.cat(scores, 1)


def _unstable(
    intermediate: list[tuple[Tensor, Tensor]], splits: list[Tensor] | None, like: Tensor
) -> Tensor:
    """Count ``(B,)`` of unstable neurons (free ones only, given ``splits``); ``like``: (B, ·)."""
    total = torch.zeros(like.shape[0], dtype=torch.long, device=like.device)
    for k, (lower, upper) in enumerate(intermediate):
        unstable = (lower < 0) & (upper > 0)
        if splits is not None:
            unstable &= splits[k] == 0
        total = total + unstable.sum(1)
    return total


# ----------------------------------------------------------------------------- the searches


def _outcome(run: _Run, status: str, reason: str = "") -> VerificationResult:
    run.stats["time_s"] = time.perf_counter() - run.started
    return VerificationResult(
        status,  # type: ignore[arg-type]
        reason=reason,
        time_s=run.stats["time_s"],
        stats=dict(run.stats),
    )


def _milp(
    run: _Run,
    spec: _Spec,
    k: int,
    lower: Tensor,
    upper: Tensor,
    phases: list[Tensor] | None,
    limit: float | None = None,
) -> str:
    """Conjunction ``k`` on one sub-problem by the MILP: ``"infeasible"``, ``"unknown"`` (the
    time limit) or ``"unconfirmed"`` (feasible within the solver's tolerance only).

    A feasible answer whose point (or a point PGD finds next to it) passes the forward check
    raises :class:`_Falsified`.
    """
    remaining = run.remaining()
    if remaining <= 0:
        raise _Timeout
    start = time.perf_counter()
    status, x = milp.solve_conjunction(
        run.net,
        lower,
        upper,
        spec.prop.unsafe[k],
        phases=phases,
        time_limit=remaining if limit is None else min(limit, remaining),
    )
    run.count("milp_calls")
    run.count("time_milp_s", time.perf_counter() - start)
    if status == "feasible" and x is not None:
        run.polish(spec, x.to(device=lower.device, dtype=lower.dtype).reshape(-1), lower, upper)
        return "unconfirmed"
    return "infeasible" if status == "infeasible" else "unknown"


def _resolve(
    run: _Run,
    spec: _Spec,
    chosen: Tensor,
    lower: Tensor,
    upper: Tensor,
    open_conj: Tensor,
    splits: list[Tensor] | None,
    mandatory: Tensor,
) -> tuple[Tensor, str]:
    """Try the MILP on the sub-problems ``chosen`` (bool ``(B,)``).

    ``mandatory`` ones cannot be split further usefully (too thin, or few enough free
    neurons that the MILP is the cheaper finish): they get the remaining time, and one the
    MILP leaves undecided makes the answer unknown. The others are opportunistic tries
    under ``_MILP_TRY_S`` each; one the MILP does not settle is split as usual. Returns the
    sub-problems now settled (bool ``(B,)``) and the reason to answer unknown, if any.
    """
    settled = torch.zeros_like(chosen)
    reason = ""
    for box in chosen.nonzero()[:, 0].tolist():
        must = bool(mandatory[box])
        phases = None if splits is None else [s[box] for s in splits]
        outcomes = set()
        for k in open_conj[box].nonzero()[:, 0].tolist():
            outcome = _milp(
                run, spec, k, lower[box], upper[box], phases, None if must else _MILP_TRY_S
            )
            outcomes.add(outcome)
            if outcome != "infeasible":
                break
        if not must:  # tries that time out make further tries rarer
            timed_out = "unknown" in outcomes
            run.try_share = run.try_share / 2 if timed_out else min(_MILP_SHARE, run.try_share * 2)
            run.count("milp_tries")
        if outcomes == {"infeasible"}:
            settled[box] = True
        elif must:  # no further split would decide it
            settled[box] = True
            if run.remaining() <= 0:
                raise _Timeout
            reason = reason or (
                "unknown: the MILP's counterexample failed the forward check"
                if "unconfirmed" in outcomes
                else "unknown: MILP undecided"
            )
    return settled, reason


def _exact_choice(run: _Run, unstable: Tensor, promise: Tensor, mandatory: Tensor) -> Tensor:
    """Mandatory MILP finishes, plus one opportunistic try while the MILP's time share allows.

    The try goes to the open sub-problem with the fewest unstable neurons (closest to
    a counterexample on ties), if it has at most ``_MILP_TRY_MAX_UNSTABLE``: the MILP is
    exact and cheap there, and it catches counterexamples hidden in regions too thin for
    the bounds and the attacks. The share halves after each try the MILP does not decide
    in time and recovers after each it decides.
    """
    chosen = mandatory.clone()
    elapsed = time.perf_counter() - run.started
    allowed = ~mandatory & (unstable <= _MILP_TRY_MAX_UNSTABLE)
    if run.stats.get("time_milp_s", 0.0) < run.try_share * elapsed and bool(allowed.any()):
        key = unstable.to(promise.dtype) + torch.sigmoid(promise)
        chosen[key.masked_fill(~allowed, math.inf).argmin()] = True
    return chosen


def _region_milp(
    run: _Run, spec: _Spec, lower: Tensor, upper: Tensor, promise: Tensor
) -> tuple[Tensor, Tensor] | None:
    """While the MILP's time share allows: prove a region around the most promising box safe.

    Where the network comes within a hair of the unsafe region, CROWN's bounds need tiny
    boxes to separate them, and the search keeps splitting there; the MILP settles the
    whole neighbourhood at once. The box closest to a counterexample (smallest ``promise``)
    is scaled up by ``_GROW_SCALES`` (clipped to the property's box), the largest version
    with at most ``_MILP_TRY_MAX_UNSTABLE`` unstable neurons goes to the MILP for each
    conjunction CROWN leaves open there, under ``_MILP_TRY_S`` seconds each. Returns the
    region when every conjunction is infeasible on it (every box inside it is settled).
    """
    elapsed = time.perf_counter() - run.started
    if run.stats.get("time_milp_s", 0.0) >= run.try_share * elapsed:
        return None
    best = int(promise.argmin())
    if not math.isfinite(float(promise[best])):
        return None
    scales = torch.tensor(_GROW_SCALES, dtype=lower.dtype, device=lower.device)[:, None]
    centre, half = (lower[best] + upper[best]) / 2, (upper[best] - lower[best]) / 2
    grown_l = torch.maximum(centre - scales * half, spec.lower)
    grown_u = torch.minimum(centre + scales * half, spec.upper)
    margin, intermediate = run.bound(spec, grown_l, grown_u)
    assert intermediate is not None
    small = (_unstable(intermediate, None, grown_l) <= _MILP_TRY_MAX_UNSTABLE).nonzero()
    if not small.numel():
        return None
    pick = int(small[0, 0])
    run.count("milp_tries")
    open_conj = spec.open_conjunctions(margin[pick : pick + 1])[0]
    for k in open_conj.nonzero()[:, 0].tolist():
        outcome = _milp(run, spec, k, grown_l[pick], grown_u[pick], None, _MILP_TRY_S)
        if outcome != "infeasible":
            run.try_share /= 2  # tries the MILP cannot decide in time become rarer
            return None
    run.try_share = min(_MILP_SHARE, run.try_share * 2)
    run.count("milp_regions")
    return grown_l[pick], grown_u[pick]


def _input_split(run: _Run, spec: _Spec) -> str:
    """Input-splitting BaB on one property: ``""`` when verified, else the unknown reason."""
    n_rows = spec.C.shape[0]
    dtype, device = spec.C.dtype, spec.C.device
    queue = _Queue(
        torch.zeros(1, dtype=dtype, device=device),
        lower=spec.lower[None],
        upper=spec.upper[None],
        logits=torch.zeros(1, spec.n_conj, n_rows, dtype=dtype, device=device),
    )
    point_dims = spec.upper <= spec.lower  # inputs fixed by the property
    root_span = torch.where(point_dims, 1.0, spec.upper - spec.lower)
    first = True
    undecided = ""
    while len(queue):
        widths = (queue.fields["upper"] - queue.fields["lower"]) / root_span
        widths = torch.where(point_dims, 1.0, widths)
        run.stats["open_volume"] = float(widths.prod(1).sum())  # fraction of the box
        run.tick(queue=len(queue), open=f"{run.stats['open_volume']:.2e}")
        run.attack_round(spec)
        batch = queue.pop(run.batch_size)
        lower, upper, logits = batch["lower"], batch["upper"], batch["logits"]
        steps = 20 if first else _ALPHA_STEPS
        first = False
        margin, intermediate = run.bound(
            spec, lower, upper, method="alpha-crown", alpha_steps=steps
        )
        assert intermediate is not None
        linear = _linear_bounds(run.net, spec, intermediate, lower.shape[0])
        open_conj, best_x, logits = _settled_conjunctions(
            spec, margin, linear, lower, upper, logits
        )
        keep = open_conj.any(1)
        if not bool(keep.any()):
            continue
        lower, upper, margin, open_conj = lower[keep], upper[keep], margin[keep], open_conj[keep]
        logits, best_x, linear = logits[keep], best_x[keep], linear.select(keep)
        intermediate = [(lo[keep], hi[keep]) for lo, hi in intermediate]
        boxes = lower.shape[0]
        # candidates: centres, each row's and each combination's minimiser
        row_min = torch.where(linear.A > 0, lower[:, None, :], upper[:, None, :])
        points = torch.cat([((lower + upper) / 2)[:, None], row_min, best_x], 1)
        owner = torch.arange(boxes, device=device)[:, None].expand(-1, points.shape[1])
        promise = run.candidates(
            spec, lower, upper, points.reshape(-1, lower.shape[1]), owner.reshape(-1)
        )
        # nearly linear or too thin to bisect: finish with the MILP
        unstable = _unstable(intermediate, None, lower)
        mandatory = (unstable <= _INPUT_MILP_UNSTABLE) | (
            ((upper - lower) / root_span).amax(1) <= _THIN_BOX
        )
        settled, reason = _resolve(run, spec, mandatory, lower, upper, open_conj, None, mandatory)
        undecided = undecided or reason
        # the MILP on a region grown around the open box closest to a counterexample
        region = _region_milp(run, spec, lower, upper, promise.masked_fill(settled, math.inf))
        if region is not None:
            settled |= (lower >= region[0]).all(1) & (upper <= region[1]).all(1)
            queue.drop_inside(*region)
        split = ~settled
        if not bool(split.any()):
            continue
        lower, upper, margin, open_conj = (t[split] for t in (lower, upper, margin, open_conj))
        logits, linear, promise = logits[split], linear.select(split), promise[split]
        open_rows = open_conj[:, spec.row_conj]
        dim = _branch_dimension(lower, upper, root_span, open_rows, linear.A)
        children_l, children_u = _bisect(lower, upper, dim)
        run.count("branches", lower.shape[0])
        # the parent's linear bounds hold on both halves: settle what they can right away
        twice = torch.arange(lower.shape[0], device=device).repeat(2)
        parent = linear.select(twice)
        child_open, _, child_logits = _settled_conjunctions(
            spec,
            parent.minimum(children_l, children_u),
            parent,
            children_l,
            children_u,
            logits[twice],
        )
        alive = child_open.any(1)
        run.count("children_settled_by_parent", float((~alive).sum()))
        queue.push(
            promise[twice][alive],
            lower=children_l[alive],
            upper=children_u[alive],
            logits=child_logits[alive],
        )
        run.peak("max_queue", len(queue))
    run.stats["open_volume"] = 0.0
    return undecided


def _relu_split(run: _Run, spec: _Spec) -> str:
    """ReLU-splitting BaB on one property: ``""`` when verified, else the unknown reason."""
    widths = _relu_widths(run.net)
    n_rows = spec.C.shape[0]
    dtype, device = spec.C.dtype, spec.C.device
    root_l, root_u = spec.lower[None], spec.upper[None]
    margin, intermediate = run.bound(spec, root_l, root_u, method="alpha-crown")
    if not bool(spec.open_conjunctions(margin).any()):
        return ""
    layers = [f"split{k}" for k in range(len(widths))]
    queue = _Queue(
        torch.zeros(1, dtype=dtype, device=device),
        logits=torch.zeros(1, spec.n_conj, n_rows, dtype=dtype, device=device),
        **{
            key: torch.zeros(1, w, dtype=torch.int8, device=device)
            for key, w in zip(layers, widths, strict=True)
        },
    )
    undecided = ""
    while len(queue):
        run.tick(queue=len(queue), branches=int(run.stats.get("branches", 0)))
        run.attack_round(spec)
        batch = queue.pop(run.batch_size)
        splits, logits = [batch[key] for key in layers], batch["logits"]
        lower, upper = root_l.expand(logits.shape[0], -1), root_u.expand(logits.shape[0], -1)
        margin, intermediate = run.bound(spec, lower, upper, splits=splits)
        assert intermediate is not None
        infeasible = (margin == math.inf).all(1)  # CROWN's mark of contradictory splits
        keep = ~infeasible & spec.open_conjunctions(margin).any(1)
        if not bool(keep.any()):
            continue
        splits = [s[keep] for s in splits]
        margin, logits = margin[keep], logits[keep]
        intermediate = [(lo[keep], hi[keep]) for lo, hi in intermediate]
        lower, upper = lower[keep], upper[keep]
        linear = _linear_bounds(run.net, spec, intermediate, lower.shape[0])
        open_conj, best_x, logits = _settled_conjunctions(
            spec, margin, linear, lower, upper, logits
        )
        keep = open_conj.any(1)
        if not bool(keep.any()):
            continue
        splits = [s[keep] for s in splits]
        margin, logits = margin[keep], logits[keep]
        open_conj, best_x = open_conj[keep], best_x[keep]
        intermediate = [(lo[keep], hi[keep]) for lo, hi in intermediate]
        lower, upper, linear = lower[keep], upper[keep], linear.select(keep)
        domains = lower.shape[0]
        row_min = torch.where(linear.A > 0, lower[:, None, :], upper[:, None, :])
        points = torch.cat([row_min, best_x], 1)
        owner = torch.arange(domains, device=device)[:, None].expand(-1, points.shape[1])
        promise = run.candidates(
            spec, lower, upper, points.reshape(-1, lower.shape[1]), owner.reshape(-1)
        )
        unstable = _unstable(intermediate, splits, lower)
        mandatory = unstable <= MILP_FREE_NEURONS
        chosen = _exact_choice(run, unstable, promise, mandatory)
        settled, reason = _resolve(run, spec, chosen, lower, upper, open_conj, splits, mandatory)
        undecided = undecided or reason
        big = ~settled
        if not bool(big.any()):
            continue
        splits = [s[big] for s in splits]
        intermediate = [(lo[big], hi[big]) for lo, hi in intermediate]
        open_rows = open_conj[big][:, spec.row_conj]
        scores = _neuron_scores(intermediate, linear.select(big).per_relu, splits, open_rows)
        choice = scores.argmax(1)
        rows = torch.arange(choice.shape[0], device=device)
        children, offset = {}, 0
        for key, s in zip(layers, splits, strict=True):
            local = choice - offset
            here = (local >= 0) & (local < s.shape[1])
            active, inactive = s.clone(), s.clone()
            active[rows[here], local[here]] = 1
            inactive[rows[here], local[here]] = -1
            children[key] = torch.cat([active, inactive])
            offset += s.shape[1]
        run.count("branches", choice.shape[0])
        queue.push(promise[big].repeat(2), logits=logits[big].repeat(2, 1, 1), **children)
        run.peak("max_queue", len(queue))
    return undecided


def _incomplete(run: _Run, spec: _Spec, method: str) -> bool:
    """Whether one bound of the whole box leaves some conjunction open."""
    margin, _ = run.bound(spec, spec.lower[None], spec.upper[None], method=method)
    return bool(spec.open_conjunctions(margin).any())


def _exact(run: _Run, spec: _Spec) -> str:
    start = time.perf_counter()
    remaining = run.remaining()
    if remaining <= 0:
        raise _Timeout
    result = milp.verify_exact(run.net, spec.prop, time_limit=remaining)
    run.count("milp_calls")
    run.count("time_milp_s", time.perf_counter() - start)
    if result.status == "verified":
        return ""
    if result.status == "falsified" and result.counterexample is not None:
        x = result.counterexample[0].reshape(-1).to(spec.lower)
        run.polish(spec, x, spec.lower, spec.upper)
        return "unknown: the MILP's counterexample failed the forward check"
    if result.reason == "timeout" or run.remaining() <= 0:
        raise _Timeout
    return result.reason or "unknown: MILP undecided"


# ----------------------------------------------------------------------------- entry point


def verify(
    network: Network,
    properties: Property | Sequence[Property],
    *,
    timeout: float = 116.0,
    method: str = "auto",
    batch_size: int = 1024,
    attack: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> VerificationResult:
    """Decide whether any input in a property's box reaches its unsafe output region.

    Branch-and-bound with CROWN bounds (see the module docstring for the algorithm and the
    invariant that makes every answer sound). Several properties (one VNN-LIB file's boxes)
    are all verified, or falsified by any one.

    Args:
        network: the network in the internal form (any dtype; all work is done in float64).
        properties: one :class:`~advml.verification.spec.Property` or several.
        timeout: seconds for the whole call; checked between batches (``unknown``/"timeout").
        method: ``"auto"`` (input splitting for at most ``INPUT_SPLIT_MAX_INPUTS`` inputs,
            ReLU splitting otherwise), ``"input-split"``, ``"relu-split"``, ``"milp"`` (the
            exact MILP alone), or an incomplete bound alone: ``"crown"``, ``"alpha-crown"``,
            ``"ibp"`` (``verified`` or ``unknown``/"incomplete method", or ``falsified`` when
            the attack finds a counterexample).
        batch_size: sub-problems bounded per CROWN call.
        attack: run the attacks (uniform samples and PGD before the search, PGD rounds and
            short PGD from candidates during it); the sub-problems' centres and CROWN
            candidate points, and the MILP's solutions, are checked either way.
        seed: seeds the attacks' random starts and samples.
        progress: show a progress bar (seconds of the budget; queue size, open volume).

    Returns:
        ``verified``, ``falsified`` with a forward-checked ``(x, y)``, or ``unknown`` with the
        reason; ``stats`` counts branches, bound calls, domains bounded, the largest queue,
        MILP calls and the seconds spent bounding, attacking and in the MILP.
    """
    if not isinstance(network, Network):
        raise UserError(
            f"verify: expected an advml.verification.network.Network, got "
            f"{type(network).__name__}; convert a torch model with "
            "network.from_torch(model, input_shape)"
        )
    if method not in METHODS:
        raise UserError(f"verify: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"verify: batch_size must be a positive integer, got {batch_size!r}")
    if not timeout >= 0:
        raise UserError(f"verify: timeout must be >= 0 seconds, got {timeout!r}")
    props = [properties] if isinstance(properties, Property) else list(properties)
    if not props:
        raise UserError("verify: no property given")
    for index, prop in enumerate(props):
        if prop.n_inputs != network.n_inputs or prop.n_outputs != network.n_outputs:
            raise UserError(
                f"verify: property {index} has {prop.n_inputs} inputs and {prop.n_outputs} "
                f"outputs, the network {network.n_inputs} and {network.n_outputs}"
            )
    started = time.perf_counter()
    check_net = network.to(torch.float64)
    net = check_net.simplified()
    if method == "auto":
        method = "input-split" if net.n_inputs <= INPUT_SPLIT_MAX_INPUTS else "relu-split"
    if method == "relu-split" and _relu_count(net) == 0:
        method = "input-split"
    if method == "relu-split":
        # CROWN's intermediate bounds hold (batch, width, width) matrices: keep one call's
        # memory (and time) bounded on wide layers so the timeout is checked often enough.
        widest = max(_relu_widths(net))
        batch_size = max(1, min(batch_size, RELU_SPLIT_ENTRIES // (widest * widest)))
    specs = [_Spec.of(prop, torch.float64, net.device) for prop in props]
    with progress_bar(
        max(1, math.ceil(timeout)) if math.isfinite(timeout) else 0,
        f"verify ({method})",
        enabled=progress,
        unit="s",
        bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s{postfix}",
    ) as bar:
        run = _Run(
            check_net=check_net,
            net=net,
            deadline=started + timeout,
            batch_size=batch_size,
            attack=attack,
            gen=generator(seed),
            bar=bar,
            try_share=_MILP_SHARE,
            started=started,
        )
        return _verify(run, specs, method)


def _verify(run: _Run, specs: list[_Spec], method: str) -> VerificationResult:
    searches = {
        "input-split": _input_split,
        "relu-split": _relu_split,
        "milp": _exact,
    }
    reasons = []
    try:
        run.tick()
        if method != "milp":
            # cheapest first: one bound of each whole box settles the easy properties
            root = "crown" if method in searches else method
            specs = [spec for spec in specs if _incomplete(run, spec, root)]
        if run.attack:
            for spec in specs:
                run.initial_attack(spec)
        for spec in specs:
            run.tick()
            search = searches.get(method)
            reasons.append(search(run, spec) if search else "incomplete method")
    except _Falsified as found:
        run.stats["time_s"] = time.perf_counter() - run.started
        return VerificationResult(
            "falsified",
            counterexample=(found.x, found.y),
            time_s=run.stats["time_s"],
            stats=dict(run.stats),
        )
    except _Timeout:
        return _outcome(run, "unknown", "timeout")
    except UnsupportedOperator as error:
        return _outcome(run, "unknown", str(error))
    undecided = [reason for reason in reasons if reason]
    if undecided:
        return _outcome(run, "unknown", undecided[0])
    return _outcome(run, "verified")
