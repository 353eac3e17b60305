"""The answer of a verifier: verified, falsified (with a checked counterexample) or unknown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

Status = Literal["verified", "falsified", "unknown"]

#: VNN-COMP's words for each status (``run_instance`` prints these).
VNNCOMP_WORDS: dict[str, str] = {"verified": "unsat", "falsified": "sat", "unknown": "unknown"}


@dataclass
class VerificationResult:
    """What a verifier concluded about a specification.

    ``counterexample`` is ``(x, y)`` for ``falsified``: an input inside the property's box
    and the network's output on it, which a forward pass has confirmed to lie in the unsafe
    region. ``reason`` says why the answer is ``unknown`` (``"timeout"``, ``"unsupported
    operator Foo"``, ``"incomplete method"``) and is empty otherwise. ``stats`` holds
    counts such as the number of branches and bound evaluations.
    """

    status: Status
    counterexample: tuple[torch.Tensor, torch.Tensor] | None = None
    reason: str = ""
    time_s: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in VNNCOMP_WORDS:
            raise ValueError(f"unknown verification status {self.status!r}")
        if (self.status == "falsified") != (self.counterexample is not None):
            raise ValueError("a counterexample comes with 'falsified' and only with it")

    @property
    def vnncomp(self) -> str:
        """``unsat`` / ``sat`` / ``timeout`` / ``unknown`` as VNN-COMP's scripts print them."""
        if self.status == "unknown" and self.reason == "timeout":
            return "timeout"
        return VNNCOMP_WORDS[self.status]
