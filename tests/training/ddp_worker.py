"""Trains a small MLP on fixed synthetic data; run under torchrun by test_trainer_ddp.py.

Usage: ddp_worker.py OUT_DIR [RECIPE]
Writes OUT_DIR/weights.safetensors (rank 0) after 2 epochs of SGD on a global batch of 32, with
RECIPE ``standard`` (default) or ``pgd`` (PGD adversarial training, eps 0.1, 3 steps).
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from advml.runtime import dist_info
from advml.training import TrainConfig, Trainer, get_recipe


def make_problem():
    gen = torch.Generator().manual_seed(123)
    x = torch.rand(256, 1, 4, 4, generator=gen)
    y = (x.flatten(1).sum(1) > 8).long() + (x[:, 0, 0, 0] > 0.5).long()
    torch.manual_seed(7)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))
    return model, (x, y)


def recipe_for(name: str):
    return get_recipe("pgd", eps=0.1, steps=3) if name == "pgd" else get_recipe(name)


def train(out_dir: Path | None, recipe: str = "standard") -> nn.Module:
    model, data = make_problem()
    config = TrainConfig(
        epochs=2,
        batch_size=32,
        optimizer="sgd",
        lr=0.1,
        schedule="cosine",
        device="cpu",
        progress=False,
    )
    Trainer(model, recipe_for(recipe), config=config, out_dir=out_dir).fit(data, data)
    return model


if __name__ == "__main__":
    out = Path(sys.argv[1])
    trained = train(out / "run", sys.argv[2] if len(sys.argv) > 2 else "standard")
    if dist_info().is_main:
        save_file(
            {k: v.contiguous() for k, v in trained.state_dict().items()},
            str(out / "weights.safetensors"),
        )
