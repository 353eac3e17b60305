"""Train a small model on the embedded digits, attack it three ways, and look at the result.

Run: python examples/attack_a_model.py   (about a minute on two CPU cores; writes runs/example/)
"""

from pathlib import Path

import torch

from advml import attacks
from advml.data import info, load
from advml.evaluation.figures import adversarial_examples_figure
from advml.models import build
from advml.threats import L2, Linf
from advml.training import TrainConfig, Trainer


def main() -> None:
    out = Path("runs/example")
    train, (x, y) = load("digits", "train"), load("digits", "test")
    meta = info("digits")
    model = build("cnn-small", meta.input_shape, meta.num_classes, mean=meta.mean, std=meta.std)
    Trainer(model, config=TrainConfig(epochs=10, device="cpu", progress=False)).fit(train)
    model.eval()

    results = {
        "PGD, L∞ ε=0.1": attacks.pgd(model, x, y, Linf(0.1)),
        "APGD-CE, L∞ ε=0.1": attacks.apgd_ce(model, x, y, Linf(0.1)),
        "CW-L2, minimum norm": attacks.cw(model, x, y, L2(float("inf"))),
    }
    for name, result in results.items():
        norms = result.norm[result.success]
        print(f"{name:<22} success {result.success_rate:6.1%}   median norm {norms.median():.3f}")

    pgd = results["PGD, L∞ ε=0.1"]
    shown = pgd.success.nonzero().flatten()[:3]
    out.mkdir(parents=True, exist_ok=True)
    path = adversarial_examples_figure(model, x[shown], pgd.x_adv[shown], out / "pgd.png")
    print(f"figure: {path}")
    assert torch.all((pgd.x_adv - x).abs() <= 0.1 + 1e-6)


if __name__ == "__main__":
    main()
