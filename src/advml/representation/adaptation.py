"""One domain-adaptation experiment: source-only, DANN and target-oracle models side by side.

All three use the same architecture (:class:`~advml.representation.dann.DANNNet`), the same
initial weights (``seed``), optimizer and learning-rate schedule (SGD with momentum 0.9 and the
annealing :math:`\\mu_p = \\mu_0 / (1 + 10 p)^{0.75}` of Ganin & Lempitsky 2015, §5) and the same
number of optimizer steps:

* ``source-only``: the ``standard`` recipe on labeled source data (lower bound);
* ``dann``: the ``dann`` recipe on labeled source data and the unlabeled target training part;
* ``oracle``: the ``standard`` recipe on the *labeled* target training part (upper bound).

Reported per model: target accuracy (on the target evaluation part), source accuracy (source
test), and for DANN the accuracy of its own domain classifier on a balanced held-out set
(source test vs target evaluation images; 50 % is chance). ``probe_domain_acc`` is a fresh
domain classifier trained on each model's frozen features (:mod:`advml.representation.probe`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from advml.errors import UserError
from advml.evaluation.clean import accuracy
from advml.models import build
from advml.representation.dann import DANN, DANNNet
from advml.representation.domains import DomainPair
from advml.representation.grl import SCHEDULE_NAME
from advml.representation.probe import probe_accuracy
from advml.training import StandardRecipe, TrainConfig, Trainer

METHODS: tuple[str, ...] = ("source-only", "dann", "oracle")


@dataclass
class AdaptationConfig:
    """Settings shared by the three models of :func:`run_adaptation`."""

    epochs: int = 10  # passes over the source training data (DANN, source-only)
    batch_size: int = 64  # source images per step; DANN adds as many target images
    lr: float = 0.01  # mu_0 of the paper
    momentum: float = 0.9
    gamma: float = 10.0
    domain_weight: float = 1.0
    lambda_max: float = 1.0
    seed: int = 0
    device: str = "cpu"
    progress: bool = False
    probe_samples: int = 4000  # per domain, for the fresh domain probe (0 disables)

    def train_config(self, epochs: int) -> TrainConfig:
        return TrainConfig(
            epochs=epochs,
            batch_size=self.batch_size,
            optimizer="sgd",
            lr=self.lr,
            momentum=self.momentum,
            schedule=SCHEDULE_NAME,
            seed=self.seed,
            device=self.device,
            progress=self.progress,
        )


@torch.no_grad()
def features(model: DANNNet, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Frozen features :math:`G_f(x)` in batches."""
    model.eval()
    return torch.cat([model.embed(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def domain_accuracy(
    model: DANNNet, x_source: torch.Tensor, x_target: torch.Tensor, batch_size: int = 1000
) -> float:
    """Accuracy of the model's domain classifier on equally many source and target images."""
    n = min(len(x_source), len(x_target))
    model.eval()
    correct = 0
    for x, label in ((x_source[:n], False), (x_target[:n], True)):
        for i in range(0, n, batch_size):
            correct += int(((model.domain_logits(x[i : i + batch_size]) > 0) == label).sum())
    return correct / (2 * n)


def probe_domain(model: DANNNet, pair: DomainPair, samples: int, seed: int) -> float:
    """Balanced accuracy of a fresh domain classifier on the frozen features of ``model``:
    trained on source/target training images, tested on source/target evaluation images."""
    n_train = min(samples, len(pair.source_train[0]), len(pair.target_train[0]))
    n_test = min(samples, len(pair.source_test[0]), len(pair.target_test[0]))

    def codes(xs: torch.Tensor, xt: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.cat([features(model, xs[:n]), features(model, xt[:n])])
        return z, torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])

    z_train, d_train = codes(pair.source_train[0], pair.target_train[0], n_train)
    z_test, d_test = codes(pair.source_test[0], pair.target_test[0], n_test)
    return probe_accuracy(z_train, d_train, z_test, d_test, seed=seed).balanced_accuracy


def _train(
    method: str,
    pair: DomainPair,
    config: AdaptationConfig,
    out_dir: Path | None,
    source_steps: int,
) -> tuple[DANNNet, dict[str, Any]]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # same initial weights for every method
        model = build("dann-digits", pair.input_shape, 10)
    if method == "oracle":
        train = pair.target_train
        steps_per_epoch = max(1, len(train[0]) // config.batch_size)
        epochs = max(1, math.ceil(source_steps / steps_per_epoch))
        recipe = StandardRecipe()
        val = None  # many short epochs: measured once at the end
    else:
        train, epochs, val = pair.source_train, config.epochs, pair.target_test
        recipe = (
            DANN(
                pair.target_train[0],
                domain_weight=config.domain_weight,
                gamma=config.gamma,
                lambda_max=config.lambda_max,
            )
            if method == "dann"
            else StandardRecipe()
        )
    folder = out_dir / method if out_dir is not None else None
    started = time.perf_counter()
    result = Trainer(model, recipe, config.train_config(epochs), out_dir=folder).fit(
        train,
        val,
        val_name="target",
        card={"pair": pair.name, "method": method},
    )
    seconds = time.perf_counter() - started
    steps = epochs * max(1, len(train[0]) // min(config.batch_size, len(train[0])))
    row: dict[str, Any] = {
        "epochs": epochs,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "final_train": {k: v for k, v in result.final.items() if k.startswith("train_")},
    }
    return model, row


def run_adaptation(
    pair: DomainPair,
    config: AdaptationConfig | None = None,
    *,
    methods: tuple[str, ...] = METHODS,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate ``methods`` on ``pair``; returns a JSON-ready result dictionary with
    one row per method and the fraction of the source-only → oracle gap that DANN closes."""
    config = config or AdaptationConfig()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    out = Path(out_dir) if out_dir is not None else None
    source_steps = config.epochs * max(1, len(pair.source_train[0]) // config.batch_size)
    device = torch.device("cpu")  # trained models are measured on the CPU
    rows: dict[str, dict[str, Any]] = {}
    for method in methods:
        log(f"[{pair.name}] training {method} ...")
        model, row = _train(method, pair, config, out, source_steps)
        model = model.to("cpu").eval()
        row["target_acc"] = accuracy(model, *pair.target_test, device=device)
        row["source_acc"] = accuracy(model, *pair.source_test, device=device)
        row["domain_acc"] = (
            domain_accuracy(model, pair.source_test[0], pair.target_test[0])
            if method == "dann"
            else None
        )
        if config.probe_samples:
            row["probe_domain_acc"] = probe_domain(model, pair, config.probe_samples, config.seed)
        rows[method] = row
        log(
            f"[{pair.name}] {method}: target {row['target_acc']:.2%}, source "
            f"{row['source_acc']:.2%} ({row['train_seconds']:.0f} s)"
        )
    result: dict[str, Any] = {
        "pair": pair.name,
        "sizes": {
            "source_train": len(pair.source_train[0]),
            "source_test": len(pair.source_test[0]),
            "target_train": len(pair.target_train[0]),
            "target_test": len(pair.target_test[0]),
        },
        "config": asdict(config),
        "methods": rows,
    }
    if all(m in rows for m in METHODS):
        low, high = rows["source-only"]["target_acc"], rows["oracle"]["target_acc"]
        gap = high - low
        result["gap_closed"] = (rows["dann"]["target_acc"] - low) / gap if gap > 0 else None
    return result


def format_table(result: dict[str, Any]) -> str:
    """The result of :func:`run_adaptation` as a Markdown table."""
    lines = [
        f"{result['pair']}: target accuracy on {result['sizes']['target_test']:,} images",
        "",
        "| model | target acc | source acc | domain-classifier acc | fresh domain probe |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, row in result["methods"].items():
        domain = "—" if row.get("domain_acc") is None else f"{row['domain_acc']:.2%}"
        probe = row.get("probe_domain_acc")
        lines.append(
            f"| {method} | {row['target_acc']:.2%} | {row['source_acc']:.2%} | {domain} | "
            f"{'—' if probe is None else f'{probe:.2%}'} |"
        )
    if result.get("gap_closed") is not None:
        lines.append("")
        lines.append(f"DANN closes {result['gap_closed']:.1%} of the source-only → oracle gap.")
    return "\n".join(lines)
