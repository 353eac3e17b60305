r"""Specifications: an input box and the unsafe output region, as VNN-LIB states them.

A :class:`Property` asks whether some input ``x`` in the box ``lower ≤ x ≤ upper`` has an
output ``y = f(x)`` in the *unsafe* region, a disjunction of linear conjunctions

.. math::  \bigvee_k \; C_k\, y \le d_k \qquad (C_k \in \mathbb{R}^{m_k \times n_{out}}).

The answer is ``falsified`` (VNN-COMP's ``sat``) when such an ``x`` exists and ``verified``
(``unsat``) when none does. A VNN-LIB file can hold several input boxes; it becomes a list of
properties, and the specification holds only when every one is verified.

:func:`robustness_property` builds the local-robustness specification of a classifier: in
the L∞ ball of radius ``ε`` around ``x`` (∩ the input domain) no class ``j ≠ label`` scores at
least as high as ``label``: the unsafe region is ``⋁_j  y_label − y_j ≤ 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advml.errors import UserError


@dataclass(frozen=True, eq=False)
class Conjunction:
    """``C y ≤ d``: every row must hold."""

    C: torch.Tensor  # (m, n_outputs)
    d: torch.Tensor  # (m,)

    def __post_init__(self) -> None:
        if self.C.ndim != 2 or self.d.shape != (self.C.shape[0],):
            raise UserError(
                f"output constraint: C {tuple(self.C.shape)} and d {tuple(self.d.shape)} "
                "do not form m rows of C y <= d"
            )

    def holds(self, y: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
        """Bool ``(B,)``: ``C y ≤ d + tol`` row by row for outputs ``y`` ``(B, n_outputs)``."""
        C = self.C.to(y.dtype)
        return ((y @ C.T) <= self.d.to(y.dtype) + tol).all(dim=1)


@dataclass(frozen=True, eq=False)
class Property:
    """An input box and an unsafe output region ``⋁_k C_k y ≤ d_k`` (see module docstring)."""

    lower: torch.Tensor  # (n_inputs,)
    upper: torch.Tensor  # (n_inputs,)
    unsafe: tuple[Conjunction, ...]

    def __post_init__(self) -> None:
        if self.lower.ndim != 1 or self.lower.shape != self.upper.shape:
            raise UserError(
                f"property: input bounds {tuple(self.lower.shape)} and "
                f"{tuple(self.upper.shape)} must be vectors of one length"
            )
        if bool((self.lower > self.upper).any()):
            index = int((self.lower > self.upper).nonzero()[0])
            raise UserError(
                f"property: input {index} has lower bound {float(self.lower[index])} above "
                f"its upper bound {float(self.upper[index])}"
            )
        if not self.unsafe:
            raise UserError("property: the unsafe output region is empty")
        widths = {c.C.shape[1] for c in self.unsafe}
        if len(widths) != 1:
            raise UserError(f"property: output constraints disagree on the output size {widths}")

    @property
    def n_inputs(self) -> int:
        return self.lower.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.unsafe[0].C.shape[1]

    def violated_by(self, x: torch.Tensor, y: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
        """Bool ``(B,)``: ``x`` lies in the box (to ``tol``) and ``y`` in the unsafe region."""
        x = x.reshape(x.shape[0], -1)
        inside = (x >= self.lower.to(x.dtype) - tol).all(1) & (
            x <= self.upper.to(x.dtype) + tol
        ).all(1)
        unsafe = torch.zeros_like(inside)
        for conjunction in self.unsafe:
            unsafe |= conjunction.holds(y, tol)
        return inside & unsafe


def robustness_property(
    x: torch.Tensor,
    eps: float,
    label: int,
    n_classes: int,
    low: float = 0.0,
    high: float = 1.0,
) -> Property:
    """Local robustness of a classifier at one input ``x`` (any shape) in the L∞ ball of ``eps``."""
    if eps < 0:
        raise UserError(f"robustness property: eps must be >= 0, got {eps}")
    if not 0 <= label < n_classes:
        raise UserError(f"robustness property: label {label} not in [0, {n_classes})")
    flat = x.reshape(-1).to(torch.get_default_dtype() if not x.is_floating_point() else x.dtype)
    lower = (flat - eps).clamp(low, high)
    upper = (flat + eps).clamp(low, high)
    unsafe = []
    for j in range(n_classes):
        if j == label:
            continue
        row = torch.zeros(1, n_classes, dtype=flat.dtype)
        row[0, label], row[0, j] = 1.0, -1.0
        unsafe.append(Conjunction(row, torch.zeros(1, dtype=flat.dtype)))
    return Property(lower, upper, tuple(unsafe))
