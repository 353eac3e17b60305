r"""The exact reference: a ReLU network as a mixed-integer linear program, solved by HiGHS.

Following Tjeng, Xiao & Tedrake 2019 ("Evaluating Robustness of Neural Networks with Mixed
Integer Programming", ICLR), every value of the network is a variable: an affine layer
``z = W h + b`` is a set of equalities, and a ReLU ``h = max(z, 0)`` whose pre-activation
bounds ``l ≤ z ≤ u`` (from CROWN, :mod:`advml.verification.crown`) straddle zero becomes, with
one binary ``δ`` (``δ = 1``: active),

.. math::
    h \ge z, \qquad h \ge 0, \qquad h \le u\,δ, \qquad h \le z - l\,(1 - δ),
    \qquad δ \in \{0, 1\}.

This *big-M* encoding is exact: for ``δ = 1`` it forces ``h = z ≥ 0``, for ``δ = 0``
``h = 0 ≥ z``. A stable ReLU is linear (``l ≥ 0``: ``h = z``; ``u ≤ 0``: ``h = 0``) and needs no
binary. The MILP is solved by SciPy's interface to HiGHS (``scipy.optimize.milp``) in float64
with a zero relative gap and feasibility tolerances of ``1e-8``, so its optimum is the exact
extremum up to the solver's tolerances (about ``1e-8`` absolute on small networks).

The number of binaries is the number of unstable ReLUs and the cost grows exponentially
with it: this is for **small networks only (hundreds of ReLUs)**, as the ground truth for
tests and for the sub-problems of branch-and-bound whose remaining unstable neurons are
few (:func:`solve_conjunction` with ``phases``; with every neuron fixed it is an LP).

* :func:`exact_bounds`: ``min`` and ``max`` of ``C f(x)`` over one box.
* :func:`solve_conjunction`: is there an ``x`` in the box with ``C f(x) ≤ d``? (minimises the
  largest violation ``t ≥ C_i f(x) − d_i``; feasible iff ``t* ≤ 0``).
* :func:`verify_exact`: the complete answer for a :class:`~advml.verification.spec.Property`;
  a counterexample is reported only after a float64 forward pass confirms it.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import Tensor

from advml.errors import UserError
from advml.verification import crown
from advml.verification.network import Network, ReLU
from advml.verification.result import VerificationResult
from advml.verification.spec import Conjunction, Property

__all__ = ["exact_bounds", "exact_extrema", "solve_conjunction", "verify_exact"]

_STATUS_OPTIMAL, _STATUS_LIMIT, _STATUS_INFEASIBLE = 0, 1, 2

#: HiGHS's feasibility tolerances, tightened from its defaults (1e-7 on rows and 1e-6 on
#: integrality, which big-M rows turn into errors of up to about 1e-6 on the outputs);
#: at 1e-9 HiGHS repairs its solutions (printing a line to stdout) far more often.
_HIGHS_TOLERANCES = {
    "primal_feasibility_tolerance": 1e-8,
    "mip_feasibility_tolerance": 1e-8,
}

#: Relative margin under which :func:`solve_conjunction` does not call a conjunction
#: infeasible (the solver's tolerances, grown through the network, stay well below it).
_TOLERANCE = 1e-6


def _slack(value: np.ndarray) -> np.ndarray:
    """Outward margin for CROWN's bounds used as variable bounds and big-M constants."""
    return 1e-9 * (1.0 + np.abs(value))


@dataclass
class _Model:
    """A MILP under construction: variable bounds, integrality and sparse rows."""

    lb: list[np.ndarray] = field(default_factory=list)
    ub: list[np.ndarray] = field(default_factory=list)
    integer: list[np.ndarray] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)
    row_lo: list[np.ndarray] = field(default_factory=list)
    row_hi: list[np.ndarray] = field(default_factory=list)
    n_vars: int = 0
    n_rows: int = 0
    binaries: int = 0

    def add_vars(self, lb: np.ndarray, ub: np.ndarray, integer: bool = False) -> np.ndarray:
        n = len(lb)
        self.lb.append(np.asarray(lb, dtype=np.float64))
        self.ub.append(np.asarray(ub, dtype=np.float64))
        self.integer.append(np.full(n, 1 if integer else 0, dtype=np.int8))
        if integer:
            self.binaries += n
        index = np.arange(self.n_vars, self.n_vars + n)
        self.n_vars += n
        return index

    def add_rows(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        vals: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
    ) -> None:
        """Rows ``lo ≤ Σ vals x[cols] ≤ hi``; ``rows`` counts from 0 within this call."""
        self.rows.append(np.asarray(rows) + self.n_rows)
        self.cols.append(np.asarray(cols))
        self.vals.append(np.asarray(vals, dtype=np.float64))
        self.row_lo.append(np.asarray(lo, dtype=np.float64))
        self.row_hi.append(np.asarray(hi, dtype=np.float64))
        self.n_rows += len(lo)

    def tighten(self, index: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        all_lb, all_ub = np.concatenate(self.lb), np.concatenate(self.ub)
        np.maximum.at(all_lb, index, lb)
        np.minimum.at(all_ub, index, ub)
        self.lb, self.ub = [all_lb], [all_ub]

    def solve(self, objective: np.ndarray, time_limit: float | None):
        lb, ub = np.concatenate(self.lb), np.concatenate(self.ub)
        integrality = np.concatenate(self.integer)
        constraints = []
        if self.n_rows:
            matrix = sparse.csr_array(
                (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
                shape=(self.n_rows, self.n_vars),
            )
            constraints.append(
                LinearConstraint(matrix, np.concatenate(self.row_lo), np.concatenate(self.row_hi))
            )
        options: dict[str, float] = {"mip_rel_gap": 0.0, **_HIGHS_TOLERANCES}
        if time_limit is not None:
            options["time_limit"] = max(float(time_limit), 1e-3)
        with warnings.catch_warnings():
            # SciPy passes options it does not list to HiGHS verbatim, with a warning
            warnings.filterwarnings("ignore", "Unrecognized options")
            return milp(
                objective,
                integrality=integrality,
                bounds=Bounds(lb, ub),
                constraints=constraints,
                options=options,
            )


@dataclass
class _Encoding:
    model: _Model
    inputs: np.ndarray  # variable index of every input
    outputs: np.ndarray  # variable index of every output
    relus: int  # ReLU neurons in the network


def _encode(
    network: Network,
    lower: np.ndarray,
    upper: np.ndarray,
    intermediate: list[tuple[Tensor, Tensor]],
) -> _Encoding:
    """The big-M MILP of ``network`` on the box, with CROWN's pre-activation bounds."""
    model = _Model()
    current = model.add_vars(lower, upper)
    inputs = current
    zero: np.ndarray | None = None
    relus = 0
    k = 0
    for layer in network.layers:
        if isinstance(layer, ReLU):
            l = intermediate[k][0][0].detach().cpu().numpy().astype(np.float64)
            u = intermediate[k][1][0].detach().cpu().numpy().astype(np.float64)
            k += 1
            relus += len(l)
            active, inactive = l >= 0, u <= 0
            unstable = ~active & ~inactive
            lo, hi = l - _slack(l), u + _slack(u)
            lo = np.where(active, np.maximum(lo, 0.0), lo)
            hi = np.where(inactive, np.minimum(hi, 0.0), hi)
            model.tighten(current, lo, hi)
            out = current.copy()
            if inactive.any():
                if zero is None:
                    zero = model.add_vars(np.zeros(1), np.zeros(1))
                out[inactive] = zero[0]
            n = int(unstable.sum())
            if n:
                z = current[unstable]
                lo_u, hi_u = lo[unstable], hi[unstable]
                h = model.add_vars(np.zeros(n), hi_u)
                delta = model.add_vars(np.zeros(n), np.ones(n), integer=True)
                r = np.arange(n)
                # h − z ≥ 0;  h − z − l δ ≤ −l;  h − u δ ≤ 0
                model.add_rows(
                    np.concatenate([r, r]),
                    np.concatenate([h, z]),
                    np.concatenate([np.ones(n), -np.ones(n)]),
                    np.zeros(n),
                    np.full(n, np.inf),
                )
                model.add_rows(
                    np.concatenate([r, r, r]),
                    np.concatenate([h, z, delta]),
                    np.concatenate([np.ones(n), -np.ones(n), -lo_u]),
                    np.full(n, -np.inf),
                    -lo_u,
                )
                model.add_rows(
                    np.concatenate([r, r]),
                    np.concatenate([h, delta]),
                    np.concatenate([np.ones(n), -hi_u]),
                    np.full(n, -np.inf),
                    np.zeros(n),
                )
                out[unstable] = h
            current = out
        else:
            weight = layer.dense().detach().cpu().numpy().astype(np.float64)
            bias = layer.bias.detach().cpu().numpy().astype(np.float64)
            n_out = weight.shape[0]
            new = model.add_vars(np.full(n_out, -np.inf), np.full(n_out, np.inf))
            rows, cols = np.nonzero(weight)
            # new_i − Σ_j W_ij current_j = b_i (duplicate columns are summed)
            model.add_rows(
                np.concatenate([np.arange(n_out), rows]),
                np.concatenate([new, current[cols]]),
                np.concatenate([np.ones(n_out), -weight[rows, cols]]),
                bias,
                bias,
            )
            current = new
    return _Encoding(model, inputs, current, relus)


# ----------------------------------------------------------------------------- inputs


def _network64(network: Network) -> Network:
    if not isinstance(network, Network):
        raise UserError(
            f"MILP: expected an advml.verification.network.Network, got {type(network).__name__}; "
            "convert a torch model with network.from_torch(model, input_shape)"
        )
    return network.to(torch.float64, "cpu")


def _box(network: Network, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    lower = torch.as_tensor(lower).detach().to("cpu", torch.float64).reshape(-1)
    upper = torch.as_tensor(upper).detach().to("cpu", torch.float64).reshape(-1)
    n = network.n_inputs
    if lower.shape != (n,) or upper.shape != (n,):
        raise UserError(
            f"MILP: the input box must be two vectors of {n} values (one box), got "
            f"{tuple(lower.shape)} and {tuple(upper.shape)}"
        )
    if bool((lower > upper).any()) or not bool(
        torch.isfinite(lower).all() & torch.isfinite(upper).all()
    ):
        raise UserError("MILP: the input box must be finite with lower <= upper")
    return lower, upper


def _phases(network: Network, phases: Sequence[Tensor] | None) -> list[Tensor] | None:
    if phases is None:
        return None
    widths = [width for _, width in crown._relu_widths(network)]
    phases = list(phases)
    if len(phases) != len(widths):
        raise UserError(
            f"MILP: got {len(phases)} phase tensors for {len(widths)} ReLU layers; give one "
            "(width,) tensor of +1/-1/0 per ReLU layer"
        )
    out = []
    for k, (phase, width) in enumerate(zip(phases, widths, strict=True)):
        phase = torch.as_tensor(phase).to("cpu").reshape(-1)
        if phase.shape != (width,):
            raise UserError(f"MILP: phase tensor {k} has {phase.numel()} values, expected {width}")
        out.append(phase[None])
    return out


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


# ----------------------------------------------------------------------------- exact bounds


def exact_extrema(
    network: Network,
    lower: Tensor,
    upper: Tensor,
    C: Tensor | None = None,
    *,
    time_limit: float | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`exact_bounds` with the points that attain them.

    Returns ``(lower, upper, argmin, argmax)``: the bounds ``(m,)`` and float64 inputs
    ``(m, n_inputs)`` (the MILP's optimal points, clamped into the box; a row is NaN where
    the solver returned no point).
    """
    net = _network64(network)
    lo, hi = _box(net, lower, upper)
    n_out = net.n_outputs
    if C is None:
        C = torch.eye(n_out, dtype=torch.float64)
    C = torch.as_tensor(C).detach().to("cpu", torch.float64)
    if C.ndim != 2 or C.shape[1] != n_out:
        raise UserError(f"exact_bounds: C {tuple(C.shape)} must be (m, {n_out})")
    deadline = None if time_limit is None else time.monotonic() + time_limit
    crown_lb, crown_ub, intermediate = crown.bounds(
        net, lo[None], hi[None], C, return_intermediate=True
    )
    encoding = _encode(net, lo.numpy(), hi.numpy(), intermediate)
    m = C.shape[0]
    bound = torch.cat([crown_lb[0], -crown_ub[0]])  # lower bounds of C f, then of −C f
    points = torch.full((2 * m, net.n_inputs), float("nan"), dtype=torch.float64)
    rows = torch.cat([C, -C]).numpy()
    timed_out = False
    for i in range(2 * m):
        left = _remaining(deadline)
        if left is not None and left <= 0:
            timed_out = True
            break
        objective = np.zeros(encoding.model.n_vars)
        np.add.at(objective, encoding.outputs, rows[i])
        result = encoding.model.solve(objective, left)
        if result.x is not None:
            x = torch.from_numpy(result.x[encoding.inputs].copy())
            points[i] = torch.minimum(torch.maximum(x, lo), hi)
        if result.status == _STATUS_OPTIMAL:
            dual = _dual_bound(result, encoding)
        elif result.status == _STATUS_LIMIT:
            timed_out = True
            dual = getattr(result, "mip_dual_bound", None)
        else:  # pragma: no cover - a bounded feasible MILP has an optimum
            raise RuntimeError(f"exact_bounds: HiGHS failed: {result.message}")
        if dual is not None and math.isfinite(dual):
            bound[i] = max(float(bound[i]), float(dual))
        if result.x is not None:  # the optimum is at most the value the point attains
            with torch.no_grad():
                attained = float(net.forward(points[i][None])[0] @ torch.from_numpy(rows[i]))
            bound[i] = min(float(bound[i]), attained)
    if timed_out:
        warnings.warn(
            "exact_bounds: time limit reached; the bounds returned are sound but not exact",
            RuntimeWarning,
            stacklevel=2,
        )
    return bound[:m], -bound[m:], points[:m], points[m:]


def _dual_bound(result, encoding: _Encoding) -> float:
    """The solver's proven lower bound on the objective (the optimum for an LP)."""
    if encoding.model.binaries == 0:
        return float(result.fun)
    dual = getattr(result, "mip_dual_bound", None)
    if dual is None or not math.isfinite(dual):
        return float(result.fun)
    return float(min(dual, result.fun))


def exact_bounds(
    network: Network,
    lower: Tensor,
    upper: Tensor,
    C: Tensor | None = None,
    *,
    time_limit: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Exact ``min`` and ``max`` of ``C f(x)`` over one box, by MILP (Tjeng et al. 2019).

    ``lower``, ``upper``: ``(n_inputs,)``; ``C``: ``(m, n_outputs)`` or ``None`` (identity).
    Returns float64 ``(m,)``, ``(m,)``: the solver's proven bounds, exact up to its
    tolerances (about ``1e-8``) and never beyond the value its optimal point attains by
    forward pass. On ``time_limit`` (seconds, for all ``2m`` MILPs together) it warns and
    returns the best bounds known (the solver's dual bound, or CROWN's), which are not
    exact. Small networks only (hundreds of ReLUs).
    """
    low, high, _, _ = exact_extrema(network, lower, upper, C, time_limit=time_limit)
    return low, high


# ----------------------------------------------------------------------------- conjunctions


def _solve_conjunction(
    net: Network,
    lower: Tensor,
    upper: Tensor,
    conjunction: Conjunction,
    phases: list[Tensor] | None,
    time_limit: float | None,
) -> tuple[str, Tensor | None, dict[str, float]]:
    """:func:`solve_conjunction` on a float64 network and box, with statistics."""
    info = {"milps": 0.0, "relus_encoded": 0.0}
    C = conjunction.C.detach().to("cpu", torch.float64)
    d = conjunction.d.detach().to("cpu", torch.float64)
    if C.shape[1] != net.n_outputs:
        raise UserError(
            f"MILP: the conjunction has {C.shape[1]} output columns, the network "
            f"{net.n_outputs} outputs"
        )
    low, high, intermediate = crown.bounds(
        net, lower[None], upper[None], C, splits=phases, return_intermediate=True
    )
    if bool(torch.isposinf(low).any()):  # the phases contradict each other
        return "infeasible", None, info
    # decisions within the solver's tolerance (relative to the outputs' size) are not made
    tol = _TOLERANCE * (1.0 + float(torch.cat([d.abs(), low[0].abs(), high[0].abs()]).max()))
    if bool((low[0] > d + tol).any()):  # CROWN proves a row can never hold
        return "infeasible", None, info
    encoding = _encode(net, lower.numpy(), upper.numpy(), intermediate)
    model = encoding.model
    m = C.shape[0]
    t = model.add_vars(np.full(1, -np.inf), np.full(1, np.inf))
    # Σ_j C_ij y_j − t ≤ d_i
    rows, cols = np.nonzero(C.numpy())
    model.add_rows(
        np.concatenate([rows, np.arange(m)]),
        np.concatenate([encoding.outputs[cols], np.repeat(t, m)]),
        np.concatenate([C.numpy()[rows, cols], -np.ones(m)]),
        np.full(m, -np.inf),
        d.numpy(),
    )
    objective = np.zeros(model.n_vars)
    objective[t] = 1.0
    info["milps"] = 1.0
    info["relus_encoded"] = float(model.binaries)
    result = model.solve(objective, time_limit)
    point = None
    if result.x is not None:
        x = torch.from_numpy(result.x[encoding.inputs].copy())
        point = torch.minimum(torch.maximum(x, lower), upper)
        with torch.no_grad():
            if bool(conjunction.holds(net.forward(point[None]))[0]):
                return "feasible", point, info  # confirmed by a forward pass
    if result.status == _STATUS_INFEASIBLE:
        return "infeasible", None, info
    if result.status not in (_STATUS_OPTIMAL, _STATUS_LIMIT):
        return "unknown", None, info
    if result.x is not None and float(result.fun) <= tol:
        return "feasible", point, info  # within tolerance: the caller's forward pass decides
    dual = (
        _dual_bound(result, encoding)
        if result.status == _STATUS_OPTIMAL
        else getattr(result, "mip_dual_bound", None)
    )
    if dual is not None and math.isfinite(dual) and dual > tol:
        return "infeasible", None, info
    return "unknown", None, info


def solve_conjunction(
    network: Network,
    lower: Tensor,
    upper: Tensor,
    conjunction: Conjunction,
    *,
    phases: Sequence[Tensor] | None = None,
    time_limit: float | None = None,
) -> tuple[str, Tensor | None]:
    """Is there an ``x`` in the box with ``C f(x) ≤ d``? Exact, by MILP (Tjeng et al. 2019).

    The MILP minimises ``t`` subject to ``C_i f(x) − d_i ≤ t`` for every row, so ``t* ≤ 0``
    means some ``x`` satisfies the conjunction (and the one returned satisfies it by the
    widest margin the solver found).

    Args:
        lower, upper: one box ``(n_inputs,)``.
        phases: optional ``(width_k,)`` integer tensors, one per ReLU layer, fixing neurons
            active (``+1``: pre-activation ``≥ 0``), inactive (``−1``: ``≤ 0``) or free (``0``);
            only free unstable neurons get binaries (all fixed: an LP).
        time_limit: seconds for the solver.

    Returns:
        ``("infeasible", None)``: no ``x`` (this part of the specification holds): the
        solver proves ``t* > 1e-6 (1 + scale)``, ``scale`` the size of ``d`` and of the
        outputs' CROWN bounds;
        ``("feasible", x)``: float64 ``x`` ``(n_inputs,)`` in the box with ``t ≤ 0`` by a
        float64 forward pass, or, when ``t*`` lies within that tolerance of 0, the
        solver's point, which the caller must re-check with a forward pass;
        ``("unknown", None)``: the time limit was reached first.
    """
    net = _network64(network)
    lo, hi = _box(net, lower, upper)
    status, x, _ = _solve_conjunction(net, lo, hi, conjunction, _phases(net, phases), time_limit)
    return status, x


# ----------------------------------------------------------------------------- properties


def _pattern(net: Network, x: Tensor) -> list[Tensor]:
    """The activation pattern at ``x``: +1 where a pre-activation is ``≥ 0``, else −1."""
    out = []
    z = x[None]
    for layer in net.layers:
        if isinstance(layer, ReLU):
            out.append(torch.where(z[0] >= 0, 1, -1).to(torch.int8))
            z = z.clamp_min(0)
        else:
            z = layer.forward(z)
    return out


def verify_exact(
    network: Network, prop: Property, *, time_limit: float | None = None
) -> VerificationResult:
    """The exact answer for a property on a small network (one MILP per conjunction).

    ``falsified`` iff some conjunction of the unsafe region is feasible in the box; the
    MILP's point is re-checked by a float64 forward pass (``prop.violated_by`` with no
    tolerance). A point that violates only within the solver's tolerance is polished by
    the LP of its activation region; if that still fails the answer is ``unknown`` with the
    reason. ``stats``: ``milps`` solved, ``relus`` in the network, ``relus_encoded``
    (binaries, summed over the MILPs).
    """
    start = time.monotonic()
    deadline = None if time_limit is None else start + time_limit
    net = _network64(network)
    if prop.n_inputs != net.n_inputs or prop.n_outputs != net.n_outputs:
        raise UserError(
            f"verify_exact: the property has {prop.n_inputs} inputs and {prop.n_outputs} "
            f"outputs, the network {net.n_inputs} and {net.n_outputs}"
        )
    lower, upper = _box(net, prop.lower, prop.upper)
    stats = {
        "milps": 0.0,
        "relus": float(sum(width for _, width in crown._relu_widths(net))),
        "relus_encoded": 0.0,
    }
    reason = ""

    def done(status, counterexample=None, why=""):
        return VerificationResult(
            status, counterexample, why, time_s=time.monotonic() - start, stats=stats
        )

    def run(conjunction, phases=None):
        status, x, info = _solve_conjunction(
            net, lower, upper, conjunction, phases, _remaining(deadline)
        )
        for key, value in info.items():
            stats[key] += value
        return status, x

    for conjunction in prop.unsafe:
        left = _remaining(deadline)
        if left is not None and left <= 0:
            return done("unknown", why="timeout")
        status, x = run(conjunction)
        if status == "unknown":
            reason = "timeout"
            continue
        if status == "infeasible":
            continue
        assert x is not None
        confirmed = _confirm(net, prop, x)
        if confirmed is None:  # polish: the LP of x's activation region
            status, polished = run(conjunction, _pattern(net, x))
            if status == "feasible" and polished is not None:
                confirmed = _confirm(net, prop, polished)
        if confirmed is not None:
            return done("falsified", confirmed)
        reason = reason or (
            "the MILP's counterexample violates the specification only within solver "
            "tolerance; a float64 forward pass does not confirm it"
        )
    if reason:
        return done("unknown", why=reason)
    return done("verified")


def _confirm(net: Network, prop: Property, x: Tensor) -> tuple[Tensor, Tensor] | None:
    with torch.no_grad():
        y = net.forward(x[None])
    if bool(prop.violated_by(x[None], y)[0]):
        return x, y[0]
    return None
