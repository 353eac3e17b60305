r"""Group-fairness metrics of binary predictions (Madras, Creager, Pitassi & Zemel 2018,
"Learning Adversarially Fair and Transferable Representations", ICML, §2 and §6).

With prediction :math:`\hat Y`, label :math:`Y` and sensitive attribute :math:`A \in \{0, 1\}`:

* demographic parity gap
  :math:`\Delta_{DP} = |P(\hat Y{=}1 \mid A{=}0) - P(\hat Y{=}1 \mid A{=}1)|`;
* equalized odds gap :math:`\Delta_{EO} = \sum_{y \in \{0,1\}} |P(\hat Y{=}1 \mid A{=}0, Y{=}y)
  - P(\hat Y{=}1 \mid A{=}1, Y{=}y)|` -- the sum of the false-positive-rate and
  true-positive-rate gaps (LAFTR, §6).

Both are 0 for a fair classifier and at most 1 (ΔDP) or 2 (ΔEO).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from advml.errors import UserError


def _binary(name: str, values: torch.Tensor) -> torch.Tensor:
    values = torch.as_tensor(values).reshape(-1)
    if values.numel() and not bool(((values == 0) | (values == 1)).all()):
        raise UserError(f"{name} must contain only 0 and 1")
    return values.long()


def _check(prediction: torch.Tensor, *others: tuple[str, torch.Tensor]) -> list[torch.Tensor]:
    out = [_binary("prediction", prediction)]
    for name, value in others:
        value = _binary(name, value)
        if value.numel() != out[0].numel():
            raise UserError(
                f"{name} has {value.numel()} entries but prediction has {out[0].numel()}"
            )
        out.append(value)
    if out[0].numel() == 0:
        raise UserError("fairness metrics need at least one prediction")
    return out


def _positive_rate(prediction: torch.Tensor, mask: torch.Tensor, group: str) -> torch.Tensor:
    if not bool(mask.any()):
        raise UserError(f"no samples in group {group}; the fairness gap is undefined")
    return prediction[mask].float().mean()


def demographic_parity_gap(prediction: torch.Tensor, sensitive: torch.Tensor) -> float:
    """:math:`\\Delta_{DP}` of binary ``prediction`` across binary ``sensitive`` groups."""
    prediction, sensitive = _check(prediction, ("sensitive", sensitive))
    rates = [_positive_rate(prediction, sensitive == a, f"A={a}") for a in (0, 1)]
    return float((rates[0] - rates[1]).abs())


def equalized_odds_gap(
    prediction: torch.Tensor, label: torch.Tensor, sensitive: torch.Tensor
) -> float:
    """:math:`\\Delta_{EO}`: |FPR gap| + |TPR gap| across binary ``sensitive`` groups."""
    prediction, label, sensitive = _check(prediction, ("label", label), ("sensitive", sensitive))
    total = torch.zeros(())
    for y in (0, 1):
        rates = [
            _positive_rate(prediction, (sensitive == a) & (label == y), f"A={a}, Y={y}")
            for a in (0, 1)
        ]
        total = total + (rates[0] - rates[1]).abs()
    return float(total)


def accuracy(prediction: torch.Tensor, label: torch.Tensor) -> float:
    """Fraction of ``prediction == label``."""
    prediction, label = _check(prediction, ("label", label))
    return float((prediction == label).float().mean())


@dataclass(frozen=True)
class FairnessReport:
    """Task accuracy, both gaps, and what a fresh adversary recovers from the frozen codes:
    its accuracy, balanced accuracy, and the majority-class rate of the attribute (chance)."""

    accuracy: float
    delta_dp: float
    delta_eo: float
    adversary_accuracy: float | None = None
    adversary_balanced_accuracy: float | None = None
    sensitive_majority: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def fairness_report(
    prediction: torch.Tensor, label: torch.Tensor, sensitive: torch.Tensor
) -> FairnessReport:
    """Accuracy, ΔDP and ΔEO of ``prediction`` (adversary fields left empty)."""
    return FairnessReport(
        accuracy=accuracy(prediction, label),
        delta_dp=demographic_parity_gap(prediction, sensitive),
        delta_eo=equalized_odds_gap(prediction, label, sensitive),
    )
