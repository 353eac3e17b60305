"""Worst-case robust accuracy over an ensemble of attacks and several budgets.

Robust accuracy at budget ε is the fraction of samples ``(x, y)`` for which no attack in the
ensemble finds ``x'`` in the threat ball B_ε(x) ∩ [0, 1]^d with ``argmax f(x') != y``
(Carlini et al. 2019, "On evaluating adversarial robustness"; Croce & Hein 2020's cascade).

- A sample counts as robust only if *every* attack failed on it; later attacks run only on the
  samples still robust (the AutoAttack cascade), so the result equals the per-sample minimum over
  the attacks run one by one.
- Budgets are processed in increasing order: an adversarial example inside B_ε is inside every
  larger ball, so a sample broken at ε is broken at every larger ε without new work; only samples
  still robust are attacked at the next budget. Robust accuracy is therefore monotone in ε.
- Every adversarial example an attack reports is re-checked here by a forward pass and a
  threat-model membership test before it counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from advml.errors import AdvmlError, UserError
from advml.evaluation.clean import predict
from advml.progress import progress_bar
from advml.runtime import derive_seed
from advml.threats import make as make_threat

AttackSpec = str | Callable[..., Any]


@dataclass
class RobustnessReport:
    """Result of :func:`evaluate`. ``robust[eps]`` is a per-sample bool mask."""

    threat: str
    eps: list[float]
    attacks: list[str]
    clean_correct: torch.Tensor
    robust: dict[float, torch.Tensor] = field(default_factory=dict)
    broken_by: dict[float, dict[str, int]] = field(default_factory=dict)
    x_adv: dict[float, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return int(self.clean_correct.numel())

    @property
    def clean_accuracy(self) -> float:
        return self.clean_correct.float().mean().item()

    @property
    def robust_accuracy(self) -> dict[float, float]:
        return {eps: mask.float().mean().item() for eps, mask in self.robust.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "threat": self.threat,
            "n": self.n,
            "attacks": self.attacks,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": {str(k): v for k, v in self.robust_accuracy.items()},
            "broken_by": {str(k): v for k, v in self.broken_by.items()},
            "seconds": self.seconds,
        }


def _attack(spec: AttackSpec) -> tuple[str, Callable[..., Any]]:
    from advml import attacks

    if isinstance(spec, str):
        return spec, attacks.get(spec)
    name = getattr(spec, "__name__", None) or getattr(getattr(spec, "func", None), "__name__", "")
    return name or repr(spec), spec


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    threat: str = "linf",
    eps: Sequence[float] = (0.1,),
    attacks: Sequence[AttackSpec] = ("fgsm", "pgd"),
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = True,
) -> RobustnessReport:
    """Worst-case robust accuracy of ``model`` on ``(x, y)`` at each budget in ``eps``."""
    if x.shape[0] != y.shape[0]:
        raise UserError(f"evaluate: {x.shape[0]} inputs but {y.shape[0]} labels")
    if not eps or any(not e >= 0 for e in eps):
        raise UserError(f"evaluate: eps must be a non-empty list of numbers >= 0, got {eps}")
    ensemble = [_attack(spec) for spec in attacks]
    started = time.perf_counter()
    clean_correct = predict(model, x, batch_size=batch_size).argmax(1) == y
    report = RobustnessReport(
        threat=threat,
        eps=sorted(float(e) for e in eps),
        attacks=[name for name, _ in ensemble],
        clean_correct=clean_correct,
    )
    robust = clean_correct.clone()
    x_adv = x.clone()
    for eps_value in report.eps:
        threat_model = make_threat(threat, eps_value)
        counts: dict[str, int] = {}
        for name, attack in ensemble:
            index = robust.nonzero().flatten()
            counts[name] = 0
            if index.numel() == 0 or eps_value == 0:
                continue
            bar = progress_bar(index.numel(), f"{name} eps={eps_value:g}", enabled=progress)
            for start in range(0, index.numel(), batch_size):
                chunk = index[start : start + batch_size]
                result = attack(
                    model,
                    x[chunk],
                    y[chunk],
                    threat_model,
                    seed=derive_seed(seed, name, eps_value, start),
                )
                fooled = predict(model, result.x_adv, batch_size=batch_size).argmax(1) != y[chunk]
                inside = threat_model.contains(result.x_adv, x[chunk])
                if bool((result.success & ~inside).any()):
                    raise AdvmlError(f"attack {name} returned points outside {threat_model}")
                broken = fooled & inside
                x_adv[chunk[broken]] = result.x_adv[broken]
                robust[chunk[broken]] = False
                counts[name] += int(broken.sum())
                bar.update(chunk.numel())
            bar.close()
        report.robust[eps_value] = robust.clone()
        report.broken_by[eps_value] = counts
        report.x_adv[eps_value] = x_adv.clone()
    report.seconds = time.perf_counter() - started
    return report
