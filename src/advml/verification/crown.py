r"""CROWN and α-CROWN: linear bounds on a ReLU network, propagated backward to the input.

CROWN (Zhang et al. 2018, "Efficient Neural Network Robustness Certification with General
Activation Functions", NeurIPS) bounds a linear function ``C f(x)`` of the network's output
over an input box ``l₀ ≤ x ≤ u₀`` by replacing every ReLU with two lines that enclose it on
that neuron's pre-activation interval ``[l, u]``:

.. math::
    \alpha\, z \;\le\; \mathrm{ReLU}(z) \;\le\; \frac{u}{u - l}\,(z - l)
    \qquad (l < 0 < u),

with the lower slope ``α ∈ [0, 1]``; a *stable* neuron is replaced exactly (``l ≥ 0``:
``ReLU(z) = z``; ``u ≤ 0``: ``ReLU(z) = 0``). Starting from ``Λ = C`` at the output and walking
the layers backward, an affine layer ``z ↦ W z + b`` turns ``Λ`` into ``Λ W`` (adding ``Λ b`` to
the constant) and a ReLU layer picks, row by row, the lower line where ``Λ`` is positive and
the upper line where it is negative (for a lower bound):

.. math::
    Λ ← Λ^{+} \operatorname{diag}(α) + Λ^{-} \operatorname{diag}(s), \qquad
    c ← c - Λ^{-} (s ⊙ l), \qquad s = u / (u - l).

At the input this leaves ``Λ x + c`` with ``C f(x) ≥ Λ x + c`` on the box, whose minimum is

.. math::  Λ\, \tfrac{u_0 + l_0}{2} - |Λ|\, \tfrac{u_0 - l_0}{2} + c.

The pre-activation bounds ``[l, u]`` of every ReLU layer come from the same procedure run
with ``C = I`` on that layer (layer by layer, back-substituting to the input) and intersected
with interval bound propagation (IBP, Gowal et al. 2018) where that is tighter. CROWN is run
only on the neurons that IBP leaves unstable (or that are split), each box on its own (a
stable neuron's relaxation is exact whatever its bounds, so their IBP bounds are kept). CROWN's
adaptive lower slope is ``α = 1`` if ``u > −l`` else ``0``. Upper bounds are
``−(lower bound of −C f)``. The final bound is also intersected with IBP's (with the last
affine layers folded into ``C``), so ``ibp ⊆ crown`` holds row by row.

α-CROWN (Xu et al. 2021, "Fast and Complete: Enabling Complete Neural Network Verification
with Rapid and Massively Parallel Incomplete Verifiers", ICLR) notes that the bound is sound
for *every* ``α ∈ [0, 1]`` and maximises it over ``α`` — one slope per (sub-problem, output
row, neuron) — by projected gradient ascent (Adam, ``α`` clamped to ``[0, 1]``) from CROWN's
choice; the best bound over the iterates is returned (a maximum of sound bounds is sound).
Here the slopes of the final bound are optimised; intermediate bounds stay CROWN's.

Splits (branch-and-bound): a neuron constrained active (``z ≥ 0``) or inactive (``z ≤ 0``)
has its pre-activation bounds clamped (``l ← max(l, 0)`` or ``u ← min(u, 0)``) before it is
relaxed, so the bounds hold over the part of the box that satisfies the constraints. A
constraint that empties an interval (``l > u``) makes the sub-problem infeasible; its rows
get ``lower = +inf``, ``upper = −inf``.

Everything is batched over ``B`` independent boxes. Soundness in floating point: the
computation runs in the network's dtype without outward rounding (only the input box is
rounded outward when converted), so float32 bounds can be off by about ``1e-6`` relative;
use a float64 network (``network.to(torch.float64)``) when margins are that thin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from advml.errors import UserError
from advml.verification.network import Affine, Conv, Dense, Elementwise, Network, ReLU

__all__ = ["METHODS", "bounds", "interval_layer_bounds"]

#: The bound methods :func:`bounds` accepts, loosest first.
METHODS = ("ibp", "crown", "alpha-crown")

Bounds = tuple[Tensor, Tensor]

#: Elements of one back-substitution matrix ``Λ`` (B × rows × width) before rows are chunked.
_CHUNK_ELEMENTS = 1 << 24


# ----------------------------------------------------------------------------- inputs


def _outward(t: Tensor, dtype: torch.dtype, down: bool) -> Tensor:
    """``t`` in ``dtype``, rounded toward ``−inf`` (``down``) or ``+inf`` where it changes."""
    out = t.to(dtype)
    if out.dtype == t.dtype:
        return out
    back = out.to(t.dtype)
    inf = torch.tensor(float("-inf") if down else float("inf"), dtype=dtype, device=out.device)
    moved = back > t if down else back < t
    return torch.where(moved, torch.nextafter(out, inf.expand_as(out)), out)


def _boxes(network: Network, lower: Tensor, upper: Tensor) -> Bounds:
    lower = torch.as_tensor(lower)
    upper = torch.as_tensor(upper)
    if not lower.is_floating_point():
        lower = lower.to(torch.float64)
    if not upper.is_floating_point():
        upper = upper.to(torch.float64)
    if lower.ndim == 1:
        lower = lower[None]
    if upper.ndim == 1:
        upper = upper[None]
    n = network.n_inputs
    lower = lower.reshape(lower.shape[0], -1)
    upper = upper.reshape(upper.shape[0], -1)
    if lower.shape != upper.shape or lower.shape[1] != n:
        raise UserError(
            f"bounds: input boxes {tuple(lower.shape)} and {tuple(upper.shape)} must both be "
            f"(B, {n}) for a network with {n} inputs"
        )
    if bool(torch.isnan(lower).any() | torch.isnan(upper).any()):
        raise UserError("bounds: the input box contains NaN")
    dtype, device = network.dtype, network.device
    lower = _outward(lower.to(device), dtype, down=True)
    upper = _outward(upper.to(device), dtype, down=False)
    return lower, upper


def _spec(network: Network, C: Tensor | None, batch: int) -> Tensor:
    n_out = network.n_outputs
    dtype, device = network.dtype, network.device
    if C is None:
        return torch.eye(n_out, dtype=dtype, device=device).expand(batch, n_out, n_out)
    C = torch.as_tensor(C).to(device=device, dtype=dtype)
    if C.ndim == 2:
        C = C[None]
    if C.ndim != 3 or C.shape[-1] != n_out or C.shape[0] not in (1, batch):
        raise UserError(
            f"bounds: C {tuple(C.shape)} must be (m, {n_out}) or (B, m, {n_out}) with "
            f"B = {batch} boxes"
        )
    return C.expand(batch, *C.shape[1:])


def _relu_widths(network: Network) -> list[tuple[int, int]]:
    """``(layer index, width)`` of every ReLU layer, in order."""
    width = network.n_inputs
    out = []
    for index, layer in enumerate(network.layers):
        if isinstance(layer, ReLU):
            out.append((index, width))
        else:
            width = layer.out_features
    return out


def _splits(network: Network, splits: Sequence[Tensor] | None, batch: int) -> list[Tensor | None]:
    relus = _relu_widths(network)
    if splits is None:
        return [None] * len(relus)
    splits = list(splits)
    if len(splits) != len(relus):
        raise UserError(
            f"bounds: got {len(splits)} split tensors for a network with {len(relus)} ReLU "
            "layers; give one (B, width) tensor per ReLU layer"
        )
    out: list[Tensor | None] = []
    for k, (split, (_, width)) in enumerate(zip(splits, relus, strict=True)):
        if split is None:
            out.append(None)
            continue
        split = torch.as_tensor(split).to(network.device)
        if split.ndim == 1:
            split = split[None]
        if split.ndim != 2 or split.shape[1] != width or split.shape[0] not in (1, batch):
            raise UserError(
                f"bounds: split tensor {k} has shape {tuple(split.shape)}, expected "
                f"({batch}, {width}) (values +1 active, -1 inactive, 0 free)"
            )
        out.append(split.expand(batch, width))
    return out


# ----------------------------------------------------------------------------- intervals


def _abs_forward(layer: Affine, radius: Tensor) -> Tensor:
    """``|W| r`` for radii ``r`` of shape ``(B, in_features)``."""
    if isinstance(layer, Dense):
        return F.linear(radius, layer.weight.abs())
    if isinstance(layer, Elementwise):
        return radius * layer.scale.abs()
    if isinstance(layer, Conv):
        out = F.conv2d(
            radius.reshape(-1, *layer.in_shape),
            layer.weight.abs(),
            None,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
        )
        return out.flatten(1)
    return F.linear(radius, layer.dense().abs())


def _affine_interval(layer: Affine, lower: Tensor, upper: Tensor) -> Bounds:
    """IBP through one affine map (exact for one map: Gowal et al. 2018, eq. 6)."""
    centre = layer.forward((upper + lower) / 2)
    radius = _abs_forward(layer, (upper - lower) / 2)
    return centre - radius, centre + radius


def _clamp_split(lower: Tensor, upper: Tensor, split: Tensor | None) -> Bounds:
    if split is None:
        return lower, upper
    lower = torch.where(split > 0, lower.clamp_min(0), lower)
    upper = torch.where(split < 0, upper.clamp_max(0), upper)
    return lower, upper


def interval_layer_bounds(
    network: Network,
    lower: Tensor,
    upper: Tensor,
    splits: Sequence[Tensor] | None = None,
) -> list[Bounds]:
    """Interval bounds (IBP) on the internal form: the cheap, loose starting point.

    Returns one ``(l, u)`` pair ``(B, width_k)`` per ReLU layer (its pre-activation, clamped
    by ``splits`` as in :func:`bounds`), followed by the bounds ``(B, n_outputs)`` of the
    network's output. Rows whose splits empty a box carry meaningless values.
    """
    lower, upper = _boxes(network, lower, upper)
    split_list = _splits(network, splits, lower.shape[0])
    out: list[Bounds] = []
    k = 0
    for layer in network.layers:
        if isinstance(layer, ReLU):
            lower, upper = _clamp_split(lower, upper, split_list[k])
            out.append((lower, upper))
            lower, upper = lower.clamp_min(0), upper.clamp_min(0)
            k += 1
        else:
            lower, upper = _affine_interval(layer, lower, upper)
    out.append((lower, upper))
    return out


# ----------------------------------------------------------------------------- back-substitution


@dataclass
class _Relaxation:
    """Linear bounds of one ReLU layer: ``al z ≤ ReLU(z) ≤ su z + tu`` on ``[l, u]``."""

    lower: Tensor
    upper: Tensor
    su: Tensor  # upper slope (B, w)
    tu: Tensor  # upper intercept (B, w)
    al: Tensor  # CROWN's adaptive lower slope (B, w)
    unstable: Tensor  # bool (B, w)

    @classmethod
    def of(cls, lower: Tensor, upper: Tensor) -> _Relaxation:
        active = lower >= 0
        unstable = (lower < 0) & (upper > 0)
        width = torch.where(unstable, upper - lower, torch.ones_like(upper))
        slope = torch.where(unstable, upper / width, active.to(upper.dtype))
        intercept = torch.where(unstable, -slope * lower, torch.zeros_like(lower))
        adaptive = torch.where(unstable, (upper > -lower).to(upper.dtype), slope)
        return cls(lower, upper, slope, intercept, adaptive, unstable)


def _backsub(
    layers: Sequence[Affine | ReLU],
    stop: int,
    A: Tensor,
    relaxations: dict[int, _Relaxation],
    alphas: dict[int, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(Λ, c)`` with ``A z ≥ Λ x + c`` over the box, ``z`` the input of layer ``stop``.

    ``A`` is ``(B or 1, rows, width)``; ``alphas`` maps a ReLU layer index to lower slopes
    ``(B, rows, width)`` (used on unstable neurons only).
    """
    c = A.new_zeros(A.shape[:-1])
    for index in reversed(range(stop)):
        layer = layers[index]
        if isinstance(layer, ReLU):
            relax = relaxations[index]
            # Λ⁺ diag(α) + Λ⁻ diag(s) = Λ diag(s) + Λ⁺ diag(α − s): three passes over Λ
            positive = A.clamp_min(0)
            tu = relax.tu.unsqueeze(-1)
            c = c + (A @ tu).squeeze(-1) - (positive @ tu).squeeze(-1)
            if alphas is not None and index in alphas:
                slope = torch.where(relax.unstable[:, None, :], alphas[index], relax.al[:, None, :])
                gap = slope - relax.su[:, None, :]
            else:
                gap = (relax.al - relax.su)[:, None, :]
            A = torch.addcmul(A * relax.su[:, None, :], positive, gap)
        else:
            c = c + A @ layer.bias
            A = layer.backward(A)
    return A, c


def _concretize(A: Tensor, c: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """Minimum of ``A x + c`` over the box: ``A (u+l)/2 − |A| (u−l)/2 + c``."""
    centre = ((upper + lower) / 2).unsqueeze(-1)
    radius = ((upper - lower) / 2).unsqueeze(-1)
    return (A @ centre).squeeze(-1) - (A.abs() @ radius).squeeze(-1) + c


def _exact_by_intervals(layers: Sequence[Affine | ReLU], stop: int) -> bool:
    """IBP is exact on a prefix with no ReLU and at most one non-diagonal affine map."""
    prefix = layers[:stop]
    if any(isinstance(layer, ReLU) for layer in prefix):
        return False
    return sum(not isinstance(layer, Elementwise) for layer in prefix) <= 1


def _max_width(network: Network, stop: int) -> int:
    width = network.n_inputs
    best = width
    for layer in network.layers[:stop]:
        if isinstance(layer, Affine):
            best = max(best, layer.out_features)
    return best


def _crown_layer(
    network: Network,
    stop: int,
    wanted: Tensor,
    relaxations: dict[int, _Relaxation],
    lower: Tensor,
    upper: Tensor,
    box: Bounds,
) -> Bounds:
    """``box`` (the IBP bounds on the input of layer ``stop``) tightened by CROWN where
    ``wanted`` (``(B, width)`` bool).

    Each box gets rows only for its own wanted neurons (padded to the largest count), so the
    work follows the unstable neurons of each sub-problem, not their union, and a box's
    result does not depend on the others. Rows are processed in chunks so that one ``Λ``
    stays below ``_CHUNK_ELEMENTS`` values.
    """
    box_l, box_u = box
    batch, width = wanted.shape
    counts = wanted.sum(1)
    most = int(counts.max())
    if most == 0:
        return box
    dtype, device = lower.dtype, lower.device
    # the wanted neurons of each box first, in index order
    order = torch.argsort((~wanted).to(torch.int8), dim=1, stable=True)[:, :most]
    valid = torch.arange(most, device=device)[None] < counts[:, None]
    chunk = max(1, _CHUNK_ELEMENTS // (2 * batch * _max_width(network, stop)))
    lows, highs = [], []
    for start in range(0, most, chunk):
        index = order[:, start : start + chunk]
        rows = index.shape[1]
        eye = torch.zeros(batch, rows, width, dtype=dtype, device=device)
        eye.scatter_(2, index[..., None], valid[:, start : start + rows, None].to(dtype))
        A, c = _backsub(network.layers, stop, torch.cat([eye, -eye], 1), relaxations)
        bound = _concretize(A, c, lower, upper)
        lows.append(bound[:, :rows])
        highs.append(-bound[:, rows:])
    crown_l, crown_u = torch.cat(lows, 1), torch.cat(highs, 1)
    old_l, old_u = box_l.gather(1, order), box_u.gather(1, order)
    new_l = torch.where(valid, torch.maximum(old_l, crown_l), old_l)
    new_u = torch.where(valid, torch.minimum(old_u, crown_u), old_u)
    # bounds that cross by rounding (a neuron of nearly constant value)
    new_l, new_u = torch.minimum(new_l, new_u), torch.maximum(new_l, new_u)
    return box_l.scatter(1, order, new_l), box_u.scatter(1, order, new_u)


# ----------------------------------------------------------------------------- entry point


def bounds(
    network: Network,
    lower: Tensor,
    upper: Tensor,
    C: Tensor | None = None,
    *,
    method: str = "crown",
    splits: Sequence[Tensor] | None = None,
    alpha_steps: int = 20,
    alpha_lr: float = 0.1,
    return_intermediate: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
    r"""Lower and upper bounds on ``C f(x)`` over each of ``B`` input boxes.

    The relaxation of an unstable ReLU (``l < 0 < u``) is ``α z ≤ ReLU(z) ≤ u(z − l)/(u − l)``
    (Zhang et al. 2018); α-CROWN optimises ``α ∈ [0, 1]`` (Xu et al. 2021). See the module
    docstring for the equations.

    Args:
        network: the network in the internal form; the computation runs in its dtype.
        lower, upper: ``(B, n_inputs)`` input boxes (``(n_inputs,)`` is one box). A box with
            ``lower > upper`` somewhere is empty and gets ``+inf``/``−inf``.
        C: ``(B, m, n_outputs)``, ``(m, n_outputs)`` (shared by every box) or ``None``
            (the identity: bounds on the outputs themselves).
        method: ``"ibp"``, ``"crown"`` or ``"alpha-crown"``.
        splits: one ``(B, width_k)`` integer tensor per ReLU layer: ``+1`` constrains the
            neuron active (pre-activation ``≥ 0``), ``−1`` inactive (``≤ 0``), ``0`` free.
            Sub-problems whose constraints are infeasible get ``lower = +inf``,
            ``upper = −inf``.
        alpha_steps, alpha_lr: Adam steps and learning rate of α-CROWN.
        return_intermediate: also return the pre-activation bounds of every ReLU layer, a
            list of ``(l, u)`` of shape ``(B, width_k)`` in ReLU order (after the splits'
            clamping; meaningless for infeasible rows).

    Returns:
        ``(lower, upper)`` of shape ``(B, m)``, and the intermediate bounds if asked.
    """
    if method not in METHODS:
        raise UserError(f"bounds: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if alpha_steps < 0 or alpha_lr <= 0:
        raise UserError(
            f"bounds: alpha_steps must be >= 0 and alpha_lr > 0 (got {alpha_steps}, {alpha_lr})"
        )
    lower, upper = _boxes(network, lower, upper)
    batch = lower.shape[0]
    spec = _spec(network, C, batch)
    split_list = _splits(network, splits, batch)
    layers = network.layers

    with torch.no_grad():
        infeasible = (lower > upper).any(1)
        upper = torch.maximum(lower, upper)  # empty boxes: any finite values will do

        relaxations: dict[int, _Relaxation] = {}
        intermediate: list[Bounds] = []
        box_l, box_u = lower, upper  # IBP box of the value entering the current layer
        post_index = 0  # layer index just after the last ReLU (0: the input)
        post_box = (lower, upper)  # IBP box there
        k = 0
        for index, layer in enumerate(layers):
            if not isinstance(layer, ReLU):
                box_l, box_u = _affine_interval(layer, box_l, box_u)
                continue
            if method != "ibp" and not _exact_by_intervals(layers, index):
                # CROWN on the neurons that IBP leaves unstable, or that are split
                wanted = (box_l < 0) & (box_u > 0)
                if split_list[k] is not None:
                    wanted |= split_list[k] != 0
                box_l, box_u = _crown_layer(
                    network, index, wanted, relaxations, lower, upper, (box_l, box_u)
                )
            box_l, box_u = _clamp_split(box_l, box_u, split_list[k])
            empty = box_l > box_u
            infeasible |= empty.any(1)
            box_u = torch.where(empty, box_l, box_u)
            relaxations[index] = _Relaxation.of(box_l, box_u)
            intermediate.append((box_l, box_u))
            box_l, box_u = box_l.clamp_min(0), box_u.clamp_min(0)
            post_index, post_box = index + 1, (box_l, box_u)
            k += 1

        stacked = torch.cat([spec, -spec], 1)  # rows of −C give the upper bounds
        m = spec.shape[1]
        # IBP with the affine layers after the last ReLU folded into C (elision)
        A, c = _backsub(layers[post_index:], len(layers) - post_index, stacked, {})
        best = _concretize(A, c, *post_box)
        if method != "ibp":
            A, c = _backsub(layers, len(layers), stacked, relaxations)
            best = torch.maximum(best, _concretize(A, c, lower, upper))

    if method == "alpha-crown" and alpha_steps > 0:
        best = _optimise_alpha(
            layers, stacked, relaxations, lower, upper, best, infeasible, alpha_steps, alpha_lr
        )

    low, high = best[:, :m], -best[:, m:]
    # a nearly constant output: bounds that cross by rounding enclose it once swapped
    low, high = torch.minimum(low, high), torch.maximum(low, high)
    inf = torch.tensor(float("inf"), dtype=low.dtype, device=low.device)
    low = torch.where(infeasible[:, None], inf, low)
    high = torch.where(infeasible[:, None], -inf, high)
    if return_intermediate:
        return low, high, intermediate
    return low, high


def _optimise_alpha(
    layers: Sequence[Affine | ReLU],
    stacked: Tensor,
    relaxations: dict[int, _Relaxation],
    lower: Tensor,
    upper: Tensor,
    best: Tensor,
    infeasible: Tensor,
    steps: int,
    lr: float,
) -> Tensor:
    """α-CROWN on the final bound: Adam ascent on the slopes, best bound over iterates."""
    rows = stacked.shape[1]
    alphas = {
        index: relax.al[:, None, :].expand(-1, rows, -1).clone().requires_grad_(True)
        for index, relax in relaxations.items()
        if bool(relax.unstable.any())
    }
    if not alphas:
        return best
    params = list(alphas.values())
    optimiser = torch.optim.Adam(params, lr=lr)
    weight = (~infeasible).to(stacked.dtype)[:, None]
    for step in range(steps + 1):
        with torch.enable_grad():
            A, c = _backsub(layers, len(layers), stacked, relaxations, alphas)
            bound = _concretize(A, c, lower, upper)
            if step < steps:
                objective = -(bound * weight).sum()
                grads = torch.autograd.grad(objective, params)
        best = torch.maximum(best, bound.detach())
        if step < steps:
            optimiser.zero_grad()
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad
            optimiser.step()
            with torch.no_grad():
                for param in params:
                    param.clamp_(0.0, 1.0)
    return best
