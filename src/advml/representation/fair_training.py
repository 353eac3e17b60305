"""Train and measure adversarially fair representations; sweep the adversary weight.

:func:`train_fair` trains one :class:`~advml.representation.fairness.FairNet` with the ``fair``
recipe of the one trainer and reports, on the test split, task accuracy, ΔDP, ΔEO
(:mod:`~advml.representation.fairness_metrics`) and the accuracy of a *fresh* adversary trained
on the frozen training codes to predict the sensitive attribute
(:mod:`~advml.representation.probe`). :func:`sweep` repeats this over adversary weights
(same seed, same initial weights) to draw the accuracy–fairness trade-off.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from advml.data.adult import TabularData
from advml.errors import UserError
from advml.representation.fairness import FairNet, FairRecipe, pack_labels
from advml.representation.fairness_metrics import fairness_report
from advml.representation.probe import probe_accuracy
from advml.training import TrainConfig, Trainer


@dataclass
class FairConfig:
    """Settings of one fair-representation run."""

    adversary_weight: float = 1.0
    objective: str = "dp"
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    code: int = 16
    hidden: int = 64
    seed: int = 0
    device: str = "cpu"
    progress: bool = False
    probe_epochs: int = 20


@torch.no_grad()
def encode(model: FairNet, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Frozen codes :math:`z = f(x)` in batches."""
    model.eval()
    return torch.cat([model.encode(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def predict(model: FairNet, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Predicted labels (argmax of the task logits)."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def evaluate_fair(
    model: FairNet, train: TabularData, test: TabularData, *, probe_epochs: int = 20, seed: int = 0
) -> dict[str, float | None]:
    """Accuracy, ΔDP, ΔEO on ``test`` and a fresh adversary's accuracy on the frozen codes."""
    report = fairness_report(predict(model, test.x), test.y, test.s)
    probe = probe_accuracy(
        encode(model, train.x),
        train.s,
        encode(model, test.x),
        test.s,
        epochs=probe_epochs,
        seed=seed,
    )
    result = report.as_dict()
    result.update(
        adversary_accuracy=probe.accuracy,
        adversary_balanced_accuracy=probe.balanced_accuracy,
        sensitive_majority=probe.majority,
    )
    return result


def train_fair(
    train: TabularData,
    test: TabularData,
    config: FairConfig | None = None,
    *,
    out_dir: str | Path | None = None,
) -> tuple[FairNet, dict[str, Any]]:
    """Train one model with ``config`` and evaluate it; returns ``(model, result row)``."""
    config = config or FairConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = FairNet(
            train.x.shape[1], code=config.code, hidden=config.hidden, objective=config.objective
        )
    recipe = FairRecipe(config.adversary_weight, config.objective)
    train_config = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        device=config.device,
        progress=config.progress,
    )
    started = time.perf_counter()
    Trainer(model, recipe, train_config, out_dir=out_dir).fit(
        (train.x, pack_labels(train.y, train.s)), (test.x, test.y), val_name="test"
    )
    seconds = time.perf_counter() - started
    model = model.to("cpu").eval()
    row: dict[str, Any] = {
        "adversary_weight": config.adversary_weight,
        "objective": config.objective,
        **evaluate_fair(model, train, test, probe_epochs=config.probe_epochs, seed=config.seed),
        "train_seconds": round(seconds, 1),
    }
    return model, row


def parse_weights(text: str) -> list[float]:
    """``"0,0.1,1"`` -> ``[0.0, 0.1, 1.0]`` (distinct, ascending, each >= 0)."""
    try:
        weights = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(
            f"adversary weights must be comma-separated numbers, got {text!r}"
        ) from None
    if not weights or weights[0] < 0:
        raise UserError(f"adversary weights must be numbers >= 0, got {text!r}")
    return weights


def sweep(
    train: TabularData,
    test: TabularData,
    weights: Sequence[float],
    config: FairConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """One :func:`train_fair` row per adversary weight (everything else as in ``config``)."""
    base = config or FairConfig()
    rows = []
    for weight in weights:
        settings = {**asdict(base), "adversary_weight": float(weight)}
        folder = Path(out_dir) / f"w{weight:g}" if out_dir is not None else None
        _, row = train_fair(train, test, FairConfig(**settings), out_dir=folder)
        log(
            f"w={weight:g}: accuracy {row['accuracy']:.4f}, ΔDP {row['delta_dp']:.4f}, "
            f"ΔEO {row['delta_eo']:.4f}, fresh adversary {row['adversary_balanced_accuracy']:.4f}"
        )
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of :func:`sweep` as a Markdown table."""
    lines = [
        "| objective | adversary weight | accuracy | ΔDP | ΔEO | fresh adversary acc "
        "(balanced) | majority |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['objective']} | {row['adversary_weight']:g} | {row['accuracy']:.4f} | "
            f"{row['delta_dp']:.4f} | {row['delta_eo']:.4f} | {row['adversary_accuracy']:.4f} "
            f"({row['adversary_balanced_accuracy']:.4f}) | {row['sensitive_majority']:.4f} |"
        )
    return "\n".join(lines)
